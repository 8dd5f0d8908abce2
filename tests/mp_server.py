"""A local stand-in for the Materials Project API, answering from mp_dev.csv.gz.

It speaks the part of the API that the real mp-api client (0.46.5) uses for
`MPRester(...).materials.summary.search(...)` and `.materials.thermo.search(...)`:

    GET /heartbeat                 on MPRester init: {"version", "db_version",
                                   "access_controlled_batch_ids"}
    GET /materials/summary/?...    the search: chemsys, formula, material_ids,
                                   elements, exclude_elements, deprecated,
                                   batch_id, batch_id_not_eq, _fields,
                                   _all_fields, _limit, _skip
                                   -> {"data": [docs], "meta": {"total_doc", ...}}
    GET /materials/thermo/?...     chemsys, formula, material_ids, thermo_types,
                                   _fields, _limit, _skip: one GGA_GGA+U_R2SCAN
                                   thermo document per material

Besides one document per row of the CSV, the server holds documents a real
Materials Project database holds too, so a client has to ask for what it means:
a deprecated (superseded) twin of every 40th row, 0.05 eV/atom above it, and a
GNoME twin (batch "gnome_r2scan_statics", r2SCAN, hypothetical) of every 40th
row, 0.01 eV/atom above it, each with its lattice scaled. Without `deprecated`
or `batch_id_not_eq` the summary search returns them all (the worst default a
server could have); the thermo search has no such filters, so its documents
carry `deprecated` and `builder_meta.batch_id` for the client to read.

Each document also says what MP says of a material: `energy_above_hull` and
`is_stable` against the server's own hull (the CSV rows' formation energies,
deprecated and GNoME entries left out, pure elements at 0), `theoretical` and
`database_IDs` (material number divisible by 3: known experimentally, with
ICSD ids when it is also even, else a Pauling File id; the rest theoretical).

Query semantics follow the MP API: a chemsys with wildcards (only one system
per request) means "nelements == number of parts and all named elements
present"; a list of explicit systems means "chemsys in the list"; one formula
means the same reduced composition, a list of formulas means formula_pretty in
the list. Documents carry `structure` as pymatgen Structure.as_dict() built
from the row's CIF, plus the property columns.

Every summary document carries `last_updated` (a fixed date per entry). A test can
change the database like a new release does: `server.data.db_version = ...` (what
/heartbeat says), `server.data.add_entries(chemsys, n)` (n new current entries of a
system: copies of its first ones with the lattice stretched, new ids) and
`server.data.touch(material_id, scale=..., **fields)` (a new last_updated, and the
structure stretched or fields changed). Both leave the other entries' last_updated
as they were, as MP does, while their energy_above_hull may move with the hull.

Every request is recorded in `server.requests` (path, query dict) so tests
can check what the client really sent. `server.fail(path, mode, times=...)`
makes the next `times` requests to a path (None: all of them) misbehave:
an HTTP status (429, 401, 500, 503 ...), "hang" (no answer for 60 s),
"truncated" (a 200 whose JSON is cut in half), "short" (half the page's
documents, while meta.total_doc still counts them all) or "omit" (the search's last
document left out, and meta.total_doc counting one fewer: a consistent, incomplete
answer). `server.rate_limit = N` answers
429 (Retry-After: seconds until a slot frees) to a key's request when N of its
requests were answered within the last second; `server.log` holds (time,
path, status) of every answer; `server.ignore_filters = True` makes the summary
search ignore `deprecated` and `batch_id_not_eq` (a server that leaks what the
client left out). A missing or non-32-character
x-api-key answers 403, like the real service. Anything unsupported answers
400 with a `detail`, which the client turns into an MPRestError.
"""
from __future__ import annotations

import functools
import json
import math
import threading
from itertools import combinations
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd

DB_VERSION = "2025_01_01_fake"
GNOME_BATCH = "gnome_r2scan_statics"
THERMO_TYPE = "GGA_GGA+U_R2SCAN"
_PROPERTY_COLUMNS = ("formation_energy_per_atom", "band_gap", "efermi", "volume", "total_magnetization")
# Parameters the client sends that change nothing here.
_IGNORED = {"_all_fields", "_per_page", "_page"}
_SEARCH = {"chemsys", "formula", "material_ids", "elements", "exclude_elements", "_fields", "_limit", "_skip"}
_PARAMETERS = {"/materials/summary": _SEARCH | {"deprecated", "batch_id", "batch_id_not_eq"},
               "/materials/thermo": _SEARCH | {"thermo_types"}}
# Extra documents: (kind, every 40th row from this offset, material number offset, eV/atom above, volume factor)
_TWINS = (("deprecated", 7, 3_000_000, 0.05, 0.97), ("gnome", 27, 3_100_000, 0.01, 1.04))


class BadRequest(Exception):
    pass


class MPData:
    """mp_dev.csv.gz rows, indexed for the searches the server answers."""

    def __init__(self, path):
        from pymatgen.core import Composition

        self.df = pd.read_csv(path, dtype={"material_id": str, "formula": str})
        self.comps = comps = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for f in self.df["formula"].unique():
                c = Composition(f)
                comps[f] = (tuple(sorted(el.symbol for el in c.elements)), c.reduced_formula)
        n = len(self.df)
        self.base = list(range(n))  # the CSV row a document comes from
        self.kind = ["mp"] * n  # mp | deprecated | gnome
        self.ids = self.df["material_id"].tolist()
        for kind, offset, number, _, _ in _TWINS:
            for r in range(offset, n, 40):
                self.base.append(r)
                self.kind.append(kind)
                self.ids.append(f"mp-{number + r}")
        self.db_version = DB_VERSION
        self.scale = {}  # document -> volume factor of a stretched copy (add_entries, touch)
        self.changed = {}  # document -> (last_updated, fields) after touch()
        self._index()

    def _index(self):
        self.elements = [self.comps[self.df["formula"].iat[b]][0] for b in self.base]
        self.formula_pretty = [self.comps[self.df["formula"].iat[b]][1] for b in self.base]
        self.chemsys = ["-".join(e) for e in self.elements]
        self.by_id = {m: i for i, m in enumerate(self.ids)}
        self.by_chemsys = {}
        for r, c in enumerate(self.chemsys):
            self.by_chemsys.setdefault(c, []).append(r)
        for cached in (MPData._diagram, MPData.hull, MPData.document):
            cached.cache_clear()  # the hull (and so every document's energy_above_hull) may have moved

    def add_entries(self, chemsys: str, n: int, factor: float = 1.03) -> list:
        """n new current entries of a system (copies of its first n entries, lattice stretched by factor)."""
        firsts = [r for r in self.by_chemsys[chemsys] if self.kind[r] == "mp"][:n]
        assert len(firsts) == n, f"{chemsys} has only {len(firsts)} entries to copy"
        new = []
        for r in firsts:
            self.scale[len(self.ids)] = factor
            self.base.append(self.base[r])
            self.kind.append("mp")
            new.append(f"mp-{2_900_000 + len(self.ids)}")  # below 3347529: mp-api sends larger ones in letters
            self.ids.append(new[-1])
        self._index()
        return new

    def touch(self, material_id: str, scale=None, **fields) -> None:
        """A new last_updated for an entry: its structure stretched by `scale`, its `fields` changed."""
        r = self.by_id[material_id]
        if scale:
            self.scale[r] = scale
        self.changed[r] = (f"2025-03-{1 + len(self.changed):02d}T00:00:00", fields)
        self._index()

    def last_updated(self, r: int) -> str:
        return self.changed[r][0] if r in self.changed else f"2024-{1 + r % 12:02d}-15T12:00:00"

    def current(self, r: int) -> dict:
        """Summary document r as served now."""
        return {**self.document(r), "last_updated": self.last_updated(r), **self.changed.get(r, ("", {}))[1]}

    def search(self, params: dict) -> list:
        rows = range(len(self.ids))
        if "material_ids" in params:
            wanted = _split(params["material_ids"])
            rows = sorted(self.by_id[m] for m in set(wanted) if m in self.by_id)
        if "chemsys" in params:
            systems = _split(params["chemsys"])
            if any("*" in s for s in systems):
                if len(systems) > 1:
                    raise BadRequest("Wild cards only supported for single chemsys queries.")
                parts = systems[0].split("-")
                named = {p for p in parts if p != "*"}
                rows = [r for r in rows if len(self.elements[r]) == len(parts) and named <= set(self.elements[r])]
            else:
                wanted = {"-".join(sorted(s.split("-"))) for s in systems}
                rows = [r for r in rows if self.chemsys[r] in wanted]
        if "formula" in params:
            formulas = _split(params["formula"])
            if any("*" in f for f in formulas):
                raise BadRequest("this test server does not support wildcard formulas")
            from pymatgen.core import Composition

            try:
                wanted = {Composition(f).reduced_formula for f in formulas}
            except Exception:
                raise BadRequest("Problem processing one or more provided formulas.") from None
            rows = [r for r in rows if self.formula_pretty[r] in wanted]
        if "elements" in params:
            need = set(_split(params["elements"]))
            rows = [r for r in rows if need <= set(self.elements[r])]
        if "exclude_elements" in params:
            drop = set(_split(params["exclude_elements"]))
            rows = [r for r in rows if drop.isdisjoint(self.elements[r])]
        if "deprecated" in params:
            wanted = params["deprecated"].lower() in ("true", "1")
            rows = [r for r in rows if (self.kind[r] == "deprecated") == wanted]
        if "batch_id" in params:
            rows = [r for r in rows if self.batch_id(r) == params["batch_id"]]
        if "batch_id_not_eq" in params:
            rows = [r for r in rows if self.batch_id(r) != params["batch_id_not_eq"]]
        if "thermo_types" in params and THERMO_TYPE not in _split(params["thermo_types"]):
            rows = []
        return list(rows)

    def batch_id(self, r: int) -> str:
        return GNOME_BATCH if self.kind[r] == "gnome" else "mp_2025_01"

    def formation_energy(self, r: int):
        v = self.df["formation_energy_per_atom"].iat[self.base[r]]
        if v is None or math.isnan(v):
            return None
        above = {kind: e for kind, _, _, e, _ in _TWINS}.get(self.kind[r], 0.0)
        return float(v) + above

    def experimental(self, r: int):
        """(theoretical, database_IDs): what MP would say of the material's provenance."""
        number = int(self.ids[r].split("-")[1])
        if self.kind[r] == "gnome" or number % 3:
            return True, {}
        return False, ({"icsd": [f"icsd-{number}"]} if number % 2 == 0 else {"pf": [f"pf-{number}"]})

    @functools.lru_cache(maxsize=None)
    def _diagram(self, chemsys: str):
        """The server's hull of a chemical system: CSV rows of it and its sub-systems, elements at 0."""
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        els = chemsys.split("-")
        entries = [PDEntry(Composition(el), 0.0) for el in els]
        for k in range(1, len(els) + 1):
            for sub in combinations(els, k):
                for r in self.by_chemsys.get("-".join(sub), []):
                    e = self.formation_energy(r)
                    if self.kind[r] == "mp" and e is not None:
                        comp = Composition(self.formula_pretty[r])
                        entries.append(PDEntry(comp, e * comp.num_atoms))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return PhaseDiagram(entries)

    @functools.lru_cache(maxsize=None)
    def hull(self, r: int):
        """(energy_above_hull, is_stable) of document r on the server's hull."""
        from pymatgen.analysis.phase_diagram import PDEntry
        from pymatgen.core import Composition

        e = self.formation_energy(r)
        if e is None:
            return None, None
        comp = Composition(self.formula_pretty[r])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, e_hull = self._diagram(self.chemsys[r]).get_decomp_and_e_above_hull(
                PDEntry(comp, e * comp.num_atoms), allow_negative=True)
        e_hull = round(float(e_hull), 6)
        return e_hull, bool(e_hull <= 0.0)

    def _common(self, r: int) -> dict:
        e_hull, stable = self.hull(r)
        return {
            "material_id": self.ids[r],
            "formula_pretty": self.formula_pretty[r],
            "elements": list(self.elements[r]),
            "nelements": len(self.elements[r]),
            "chemsys": self.chemsys[r],
            "deprecated": self.kind[r] == "deprecated",
            "builder_meta": {"batch_id": self.batch_id(r), "database_version": DB_VERSION},
            "formation_energy_per_atom": self.formation_energy(r),
            "energy_above_hull": e_hull,
            "is_stable": stable,
        }

    @functools.lru_cache(maxsize=None)
    def document(self, r: int) -> dict:
        from pymatgen.core import Structure

        row = self.df.iloc[self.base[r]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(row["cif"], fmt="cif")
        factor = {kind: f for kind, _, _, _, f in _TWINS}.get(self.kind[r]) or self.scale.get(r)
        if factor:
            structure.scale_lattice(structure.volume * factor)
        doc = {"nsites": len(structure), "structure": structure.as_dict()}
        for c in _PROPERTY_COLUMNS:
            v = row.get(c)
            doc[c] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        doc.update(self._common(r))
        doc["theoretical"], doc["database_IDs"] = self.experimental(r)
        return doc

    def thermo_document(self, r: int) -> dict:
        return {**self._common(r), "thermo_type": THERMO_TYPE, "thermo_id": f"{self.ids[r]}_{THERMO_TYPE}"}


def _split(value: str) -> list:
    return [v.strip() for v in value.split(",") if v.strip()]


def _emmet_version() -> str:
    from importlib.metadata import version

    return version("emmet-core")


class _Handler(BaseHTTPRequestHandler):
    server: "MPTestServer"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: dict, headers=None, truncate: bool = False):
        with self.server.lock:
            self.server.log.append((time.monotonic(), urlsplit(self.path).path.rstrip("/"), status))
        data = json.dumps(body).encode()
        if truncate:
            data = data[:len(data) // 2]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path.rstrip("/")
        with self.server.lock:
            self.server.requests.append((path, params))
        fault = self.server.take_fault(path, params)
        if fault in ("hang",):
            time.sleep(60)
            return
        if isinstance(fault, int):
            detail = "Invalid API key: it does not match any account" if fault == 401 else f"server trouble {fault}"
            return self._send(fault, {"detail": detail}, headers={"Retry-After": "0"} if fault == 429 else None)
        if path == "/heartbeat":
            return self._send(200, {"version": _emmet_version(), "db_version": self.server.data.db_version,
                                    "access_controlled_batch_ids": []})
        key = self.headers.get("x-api-key") or ""
        if len(key) != 32:
            return self._send(403, {"detail": "Invalid or missing API key"})
        if path not in _PARAMETERS:
            return self._send(404, {"detail": "Not Found"})
        wait = self.server.over_limit(key)
        if wait:
            return self._send(429, {"detail": f"rate limit: {self.server.rate_limit} requests per second per key"},
                              headers={"Retry-After": str(wait)})
        unknown = set(params) - _IGNORED - _PARAMETERS[path]
        if unknown:
            return self._send(400, {"detail": f"unsupported parameter(s): {', '.join(sorted(unknown))}"})
        if self.server.ignore_filters:
            params = {k: v for k, v in params.items() if k not in ("deprecated", "batch_id_not_eq")}
        try:
            rows = self.server.data.search(params)
            if fault == "omit":  # one document fewer, and a total_doc that agrees: only the ids asked tell
                rows = rows[:-1]
            skip = int(params.get("_skip", 0))
            limit = int(params.get("_limit", 1000))
        except (BadRequest, ValueError) as e:
            return self._send(400, {"detail": str(e)})
        fields = _split(params["_fields"]) if params.get("_fields") else None
        page = []
        for r in rows[skip:skip + limit]:
            doc = self.server.data.current(r) if path == "/materials/summary" else self.server.data.thermo_document(r)
            page.append({k: doc[k] for k in fields if k in doc} if fields else dict(doc))
        if fault == "short":
            page = page[:len(page) // 2]
        body = {"data": page, "meta": {"total_doc": len(rows), "max_limit": 1000, "default_fields": ["material_id"]}}
        self._send(200, body, truncate=fault == "truncated")


class MPTestServer(ThreadingHTTPServer):
    """`with MPTestServer(csv) as srv:` serves on srv.endpoint from a background thread."""

    daemon_threads = True

    def __init__(self, csv_path, host: str = "127.0.0.1"):
        super().__init__((host, 0), _Handler)  # port 0: a free one
        self.data = MPData(Path(csv_path))
        self.requests: list = []
        self.log: list = []  # (time.monotonic(), path, status) of every answer
        self.faults: list = []  # [path, mode, times left (None: forever), query parameter it needs or None]
        self.rate_limit = None  # answered requests per key per second; None: no limit
        self.ignore_filters = False
        self._answered: dict = {}  # key -> times of its requests let through
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name="mp-test-server", daemon=True)

    def fail(self, path: str, mode, times=1, with_param: str = None) -> None:
        """Answer requests of `path` with `mode` (an HTTP status, or "hang"); with `with_param`, only
        the requests that carry that query parameter (e.g. material_ids: the workers' MP fetches)."""
        with self.lock:
            self.faults.append([path, mode, times, with_param])

    def take_fault(self, path: str, params: dict = None):
        with self.lock:
            for f in self.faults:
                if f[0] == path and (f[2] is None or f[2] > 0) and (f[3] is None or f[3] in (params or {})):
                    if f[2] is not None:
                        f[2] -= 1
                    return f[1]
        return None

    def over_limit(self, key: str) -> int:
        """0 when the key may have this request (and it is counted), else the seconds to wait."""
        if not self.rate_limit:
            return 0
        now = time.monotonic()
        with self.lock:
            times = [t for t in self._answered.get(key, []) if t > now - 1.0]
            if len(times) >= self.rate_limit:
                self._answered[key] = times
                return max(1, math.ceil(times[0] + 1.0 - now))
            self._answered[key] = times + [now]
        return 0

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> "MPTestServer":
        self._thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
