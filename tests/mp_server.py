"""A local stand-in for the Materials Project API, answering from mp_dev.csv.gz.

It speaks the part of the API that the real mp-api client (0.46.5) uses for
`MPRester(...).materials.summary.search(chemsys=/formula=/material_ids=, fields=[...])`:

    GET /heartbeat                 on MPRester init: {"version", "db_version",
                                   "access_controlled_batch_ids"}
    GET /materials/summary/?...    the search: chemsys, formula, material_ids,
                                   elements, exclude_elements, _fields,
                                   _all_fields, _limit, _skip (and the client's
                                   batch_id_not_eq / deprecated filters)
                                   -> {"data": [docs], "meta": {"total_doc", ...}}

Query semantics follow the MP API: a chemsys with wildcards (only one system
per request) means "nelements == number of parts and all named elements
present"; a list of explicit systems means "chemsys in the list"; one formula
means the same reduced composition, a list of formulas means formula_pretty in
the list. Documents carry `structure` as pymatgen Structure.as_dict() built
from the row's CIF, plus the property columns.

Every request is recorded in `server.requests` (path, query dict) so tests
can check what the client really sent. `server.fail(path, mode, times=...)`
makes the next `times` requests to a path (None: all of them) misbehave:
an HTTP status (429, 401, 500, 503 ...), "hang" (no answer for 60 s),
"truncated" (a 200 whose JSON is cut in half) or "short" (half the page's
documents, while meta.total_doc still counts them all). A missing or non-32-character
x-api-key answers 403, like the real service. Anything unsupported answers
400 with a `detail`, which the client turns into an MPRestError.
"""
from __future__ import annotations

import functools
import json
import math
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd

DB_VERSION = "2025_01_01_fake"
_PROPERTY_COLUMNS = ("formation_energy_per_atom", "band_gap", "efermi", "volume", "total_magnetization")
# Filters the client adds on its own that this data has nothing to filter on.
_IGNORED = {"batch_id_not_eq", "deprecated", "_all_fields", "_per_page", "_page"}


class BadRequest(Exception):
    pass


class MPData:
    """mp_dev.csv.gz rows, indexed for the searches the server answers."""

    def __init__(self, path):
        from pymatgen.core import Composition

        self.df = pd.read_csv(path, dtype={"material_id": str, "formula": str})
        comps = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for f in self.df["formula"].unique():
                c = Composition(f)
                comps[f] = (tuple(sorted(el.symbol for el in c.elements)), c.reduced_formula)
        self.elements = [comps[f][0] for f in self.df["formula"]]
        self.formula_pretty = [comps[f][1] for f in self.df["formula"]]
        self.chemsys = ["-".join(e) for e in self.elements]
        self.by_id = {m: i for i, m in enumerate(self.df["material_id"])}

    def search(self, params: dict) -> list:
        rows = range(len(self.df))
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
        return list(rows)

    @functools.lru_cache(maxsize=None)
    def document(self, r: int) -> dict:
        from pymatgen.core import Structure

        row = self.df.iloc[r]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(row["cif"], fmt="cif")
        doc = {
            "material_id": row["material_id"],
            "formula_pretty": self.formula_pretty[r],
            "elements": list(self.elements[r]),
            "nelements": len(self.elements[r]),
            "chemsys": self.chemsys[r],
            "nsites": len(structure),
            "structure": structure.as_dict(),
            "deprecated": False,
        }
        for c in _PROPERTY_COLUMNS:
            v = row.get(c)
            doc[c] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        return doc


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
        fault = self.server.take_fault(path)
        if fault in ("hang",):
            time.sleep(60)
            return
        if isinstance(fault, int):
            detail = "Invalid API key: it does not match any account" if fault == 401 else f"server trouble {fault}"
            return self._send(fault, {"detail": detail}, headers={"Retry-After": "0"} if fault == 429 else None)
        if path == "/heartbeat":
            return self._send(200, {"version": _emmet_version(), "db_version": DB_VERSION,
                                    "access_controlled_batch_ids": []})
        key = self.headers.get("x-api-key") or ""
        if len(key) != 32:
            return self._send(403, {"detail": "Invalid or missing API key"})
        if path != "/materials/summary":
            return self._send(404, {"detail": "Not Found"})
        unknown = set(params) - _IGNORED - {"chemsys", "formula", "material_ids", "elements",
                                            "exclude_elements", "_fields", "_limit", "_skip"}
        if unknown:
            return self._send(400, {"detail": f"unsupported parameter(s): {', '.join(sorted(unknown))}"})
        try:
            rows = self.server.data.search(params)
            skip = int(params.get("_skip", 0))
            limit = int(params.get("_limit", 1000))
        except (BadRequest, ValueError) as e:
            return self._send(400, {"detail": str(e)})
        fields = _split(params["_fields"]) if params.get("_fields") else None
        page = []
        for r in rows[skip:skip + limit]:
            doc = self.server.data.document(r)
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
        self.faults: list = []  # [path, mode, times left (None: forever)]
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name="mp-test-server", daemon=True)

    def fail(self, path: str, mode, times=1) -> None:
        with self.lock:
            self.faults.append([path, mode, times])

    def take_fault(self, path: str):
        with self.lock:
            for f in self.faults:
                if f[0] == path and (f[2] is None or f[2] > 0):
                    if f[2] is not None:
                        f[2] -= 1
                    return f[1]
        return None

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
