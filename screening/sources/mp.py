"""`--source mp`: the Materials Project through the official mp-api client.

One summary search per query: `chemsys` (wildcards passed as they are; the MP
API reads `Li-*-O` as "three elements, Li and O among them", our meaning),
`formula`, or `material_ids`, with `exclude_elements` for --exclude. Results
are checked against the query again on our side, so a server that filters
more loosely cannot leak other systems in.

Incremental fetching (partitions(), what `screen run` uses): the client lists the
query's entries with every FIELD but the structure, plus `last_updated` (a page of
this listing is a small fraction of one with structures), and splits the list into
partitions. A worker fetches a partition's structures by `material_ids`, in requests
of IDS_PER_REQUEST, only for entries the entry cache it is given (workflows pass
cache/entry_cache.py's) does not hold at that last_updated; the rest come from there.
The cache key (entry_key) is the endpoint, the material_id and last_updated, not
db_version: a new release re-fetches only new and changed entries. What MP says of a
material (E_hull, stability, provenance...) comes from the listing every time, as it
can change in a release while the material's last_updated does not. fetch() stays one
search for everything.

Which entries: every search asks for `deprecated=False` (superseded entries are
never screened, whatever the server's default) and leaves out the GNoME r2SCAN
entries (batch "gnome_r2scan_statics": hypothetical structures computed with
another functional, which mp-api includes by default) unless `gnome=True`
(`--gnome`). Both are checked again on our side and stated by describe() (the
cache key) and settings() (the run summary).

What MP says of each material comes along in Candidate.known: formation
energy, band gap and Fermi energy, MP's own energy above its hull and whether
the material is on it (`dft_e_above_hull`, `dft_is_stable`, computed by MP with
its compatibility scheme), whether it is known experimentally (`experimental`:
not theoretical, or with ICSD ids) and whether it is a GNoME entry (`gnome`).

fetch_thermo() gives the reference phases for MP runs: MP's own thermo data
(thermo type GGA_GGA+U_R2SCAN) of the same database, a list of chemical
systems per request, with the same choice of entries.

The key comes from MP_API_KEY; the endpoint from the `endpoint` argument,
else MP_API_ENDPOINT, else mp-api's default (https://api.materialsproject.org/).
mp_api is imported only when a search runs: it takes ~3 s to import.

What the client does not do for us, done here:
  - the heartbeat mp-api sends on start has no timeout, so we ask it first
    with one (a server that never answers is a one-line error, not a hang);
  - a request budget (screening/sources/budget.py): every try of every
    request takes a lease, so all the workers fetching with one key stay
    within `rate` requests per second together;
  - retries: 429 as often as RATE_LIMITED_TRIES, waiting what Retry-After
    says; 500, 502, 503, 504 and dropped connections with exponential backoff
    (0.5 s doubling, at most 8 s a wait, 6 tries); then the server's own
    message in one line;
  - completeness: the first page of every search says how many documents
    match (meta.total_doc); fewer received is an error, so a short answer is
    never cached as if it were the whole system.
"""
from __future__ import annotations

import hashlib
import os
import time
import warnings
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

from screening.errors import ScreenError
from screening.formula import formula_info, structure_info
from screening.query import ALL, CHEMSYS, FORMULA, IDS, Query
from screening.sources.base import (KNOWN_PROPERTIES, Candidate, Partition, Source, as_float, as_query,
                                    known_properties)
from screening.sources.budget import RequestBudget

FIELDS = ["material_id", "formula_pretty", "structure", *KNOWN_PROPERTIES,
          "energy_above_hull", "is_stable", "theoretical", "database_IDs", "deprecated", "builder_meta"]
LIST_FIELDS = [f for f in FIELDS if f != "structure"] + ["last_updated"]  # partitions(): all but the structure
ENTRY_FIELDS = ["material_id", "structure", "last_updated"]  # fetch_partition(): what the listing lacks
IDS_PER_REQUEST = 100  # material_ids per request of fetch_partition (keeps the URL short)
DEFAULT_ENDPOINT = "https://api.materialsproject.org/"
TIMEOUT_S = 30  # per HTTP request
RETRY_STATUS = (429, 500, 502, 503, 504)
TRIES = 6  # of a request that meets a server fault (5xx, dropped connection)
RATE_LIMITED_TRIES = 12  # of a request answered 429: slowing down is expected, so more patience
MAX_WAIT_S = 60  # the longest Retry-After we follow
DEFAULT_RATE = 10  # requests per second per key, all workers together (--mp-rate)
GNOME_BATCH = "gnome_r2scan_statics"
THERMO_TYPE = "GGA_GGA+U_R2SCAN"
THERMO_FIELDS = ["material_id", "formula_pretty", "chemsys", "formation_energy_per_atom", "thermo_type",
                 "deprecated", "builder_meta"]
FUNCTIONALS = (f"GGA/GGA+U energies mixed with r2SCAN ones where MP has them, by MP's compatibility scheme "
               f"(thermo type {THERMO_TYPE})")


def _one_line(e: Exception) -> str:
    """The error in one line, the server's own message first (mp-api puts it after the URL)."""
    text = str(e)
    if "with message:" in text:
        head, message = text.split("with message:", 1)
        code = head.split("status code", 1)[-1].split()[0] if "status code" in head else ""
        text = f"HTTP {code}: {message}" if code else message
    return " ".join(text.split())[:300] or type(e).__name__


def is_experimental(theoretical, database_ids) -> Optional[bool]:
    """Known experimentally: ICSD ids, or MP's `theoretical` is False; None when MP says neither."""
    if (database_ids or {}).get("icsd"):
        return True
    return None if theoretical is None else not theoretical


def is_gnome(doc: dict) -> bool:
    return ((doc.get("builder_meta") or {}).get("batch_id") or "") == GNOME_BATCH


def _known(doc: dict) -> dict:
    """Candidate.known of a summary document: the DFT numbers, then what MP says of the material."""
    known = known_properties(doc)
    if as_float(doc.get("energy_above_hull")) is not None:
        known["dft_e_above_hull"] = as_float(doc["energy_above_hull"])
    if doc.get("is_stable") is not None:
        known["dft_is_stable"] = bool(doc["is_stable"])
    experimental = is_experimental(doc.get("theoretical"), doc.get("database_IDs"))
    if experimental is not None:
        known["experimental"] = experimental
    known["gnome"] = is_gnome(doc)
    return known


def _in_asked_order(query: Query, items: list, id_of: Callable) -> list:
    """An ids query's results in the order its ids were given (others: as the server sent them)."""
    if query.kind != IDS:
        return items
    order = {m: i for i, m in enumerate(query.ids)}
    return sorted(items, key=lambda x: order.get(id_of(x), len(order)))


def _structure_dict(s) -> dict:
    return s if isinstance(s, dict) else s.as_dict()


def _budgeted_adapter(source: "MPSource"):
    """An HTTPAdapter whose every try takes a lease from the source's budget (read at each try, so a
    budget swapped in later counts) and which retries itself (urllib3's retries would escape the budget)."""
    import requests
    from requests.adapters import HTTPAdapter

    class BudgetedAdapter(HTTPAdapter):
        def send(self, request, **kwargs):
            faults = limited = 0
            while True:
                with source.budget.lease():
                    try:
                        response = super().send(request, **kwargs)
                    except (requests.ConnectionError, requests.Timeout):
                        faults += 1
                        if request.method != "GET" or faults >= TRIES:
                            raise
                        response = None
                wait = None
                if response is not None:
                    if response.status_code not in RETRY_STATUS or request.method != "GET":
                        return response
                    if response.status_code == 429:
                        limited += 1
                        wait = _retry_after(response)
                    else:
                        faults += 1
                    if faults >= TRIES or limited >= RATE_LIMITED_TRIES:
                        return response  # mp-api reports the server's message
                    response.close()
                time.sleep(wait if wait is not None else min(source.backoff * 2 ** (faults + limited - 1), 8.0))

    return BudgetedAdapter()


def _retry_after(response) -> Optional[float]:
    try:
        return min(max(float(response.headers.get("Retry-After", "")), 0.0), MAX_WAIT_S)
    except ValueError:
        return None  # absent, or a date: back off as for a fault


class MPSource(Source):
    name = "mp"

    def __init__(self, api_key: Optional[str] = None, endpoint: Optional[str] = None, chunk_size: int = 1000,
                 timeout: float = TIMEOUT_S, backoff: float = 0.5, gnome: bool = False, rate: int = DEFAULT_RATE):
        self.api_key = api_key or os.environ.get("MP_API_KEY") or None
        if not self.api_key:
            raise ScreenError("--source mp: MP_API_KEY is not set; set MP_API_KEY to your Materials Project "
                              "API key (https://materialsproject.org/api) or use --source local:PATH")
        self.endpoint = endpoint or os.environ.get("MP_API_ENDPOINT") or None
        self.chunk_size = chunk_size  # documents per request; the client pages with _skip
        self.timeout = timeout
        self.backoff = backoff  # seconds before the first retry, doubling
        self.gnome = gnome  # include GNoME r2SCAN entries
        key_hash = hashlib.sha256(f"{self.api_key}|{self.endpoint or DEFAULT_ENDPOINT}".encode()).hexdigest()[:16]
        self.budget = RequestBudget(rate, name=f"mp-{key_hash}")  # workflows may swap in a cluster-wide pool
        self._rester = None
        self._totals: List[int] = []  # meta.total_doc of each first page seen during a search

    def _client(self):
        if self._rester is None:
            from mp_api.client import MPRester
            from mp_api.client.core import MPRestError

            self._probe()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._rester = MPRester(self.api_key, endpoint=self.endpoint, mute_progress_bars=True,
                                            use_document_model=False)
            except (MPRestError, OSError, ValueError) as e:
                raise ScreenError(f"--source mp: cannot reach the Materials Project API at "
                                  f"{self._endpoint_text()} ({_one_line(e)})") from None
            self._harden(self._rester.session)
        return self._rester

    def _probe(self) -> None:
        """GET /heartbeat with a timeout, before mp-api sends its own without one."""
        import requests

        url = (self.endpoint or DEFAULT_ENDPOINT).rstrip("/") + "/heartbeat"
        try:
            requests.get(url, timeout=self.timeout)
        except requests.exceptions.Timeout:
            raise ScreenError(f"--source mp: {self._endpoint_text()} did not answer within "
                              f"{self.timeout:g} s") from None
        except requests.exceptions.RequestException as e:
            raise ScreenError(f"--source mp: cannot reach the Materials Project API at "
                              f"{self._endpoint_text()} ({_one_line(e)})") from None

    def _harden(self, session) -> None:
        adapter = _budgeted_adapter(self)
        for prefix in ("http://", "https://"):
            session.mount(prefix, adapter)
        session.hooks.setdefault("response", []).append(self._record_total)

    def _record_total(self, response, *args, **kwargs):
        """Remember meta.total_doc of a search's first page (the count the search must reach)."""
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(response.url)
        if response.status_code != 200 or "/materials/" not in url.path or \
                int(parse_qs(url.query).get("_skip", ["0"])[0] or 0) != 0:
            return
        try:
            self._totals.append(int(response.json()["meta"]["total_doc"]))
        except (ValueError, KeyError, TypeError):
            pass  # mp-api reads the body itself and reports what is wrong with it

    def __getstate__(self):  # the HTTP session stays behind; a copy opens its own
        return {**self.__dict__, "_rester": None, "_totals": []}

    def _endpoint_text(self) -> str:
        return self.endpoint or "the default endpoint"

    def search_arguments(self, query: Query) -> dict:
        """The keyword arguments for summary.search that answer this query."""
        if query.kind == CHEMSYS:
            kw = {"chemsys": str(query)}
        elif query.kind == FORMULA:
            kw = {"formula": query.formula}
        elif query.kind == ALL:
            kw = {}  # the whole database, page by page
        else:
            kw = {"material_ids": list(query.ids)}
        if query.exclude:
            kw["exclude_elements"] = list(query.exclude)
        return kw

    def fetch(self, query: Union[Query, str]) -> List[Candidate]:
        query = as_query(query)
        return _in_asked_order(query, self._search(str(query), query.matches, **self.search_arguments(query)),
                               lambda c: c.id)

    # -- partitions: the client lists the query's entries, workers fetch what the entry cache lacks --
    def listing(self, query: Union[Query, str]) -> List[Tuple[str, Optional[str], dict]]:
        """(material_id, last_updated, known values) of each entry the query selects, in fetch()'s
        order: one search for LIST_FIELDS (no structure), with fetch()'s filters and checks (the
        element check by formula_pretty here; fetch_partition checks the structure again)."""
        query = as_query(query)
        out, seen = [], set()
        for d in self._summary(str(query), LIST_FIELDS, **self.search_arguments(query)):
            mid = str(d["material_id"])
            info = formula_info(str(d["formula_pretty"])) if d.get("formula_pretty") else None
            if info is not None and not query.matches(*info, mid):
                continue  # the server filtered more loosely than we mean
            if mid in seen:
                continue
            seen.add(mid)
            updated = d.get("last_updated")
            out.append((mid, None if updated is None else str(updated), _known(d)))
        return _in_asked_order(query, out, lambda e: e[0])

    def partitions(self, query: Query, size: int) -> List[Partition]:
        entries = self.listing(query)
        return [Partition(f"ids {chunk[0][0]}..{chunk[-1][0]} #{len(chunk)}", entries=tuple(chunk))
                for chunk in (entries[i:i + size] for i in range(0, len(entries), size))]

    def entry_key(self, material_id: str, last_updated: str) -> str:
        """What an entry's structure is kept under: the server, the material and its version (not
        db_version: an entry a new release left as it was is the same entry)."""
        endpoint = (self.endpoint or DEFAULT_ENDPOINT).rstrip("/")
        return f"mp:{endpoint} {material_id} last_updated={last_updated} fields={','.join(ENTRY_FIELDS)}"

    def fetch_partition(self, query: Query, part: Partition, store=None) -> List[Candidate]:
        """The candidates of one of partitions()'s parts. Structures come from `store` (an entry
        cache: get(entry_key) -> {"structure": ...} or None, put(entry_key, doc)) where it holds the
        entry at its listed last_updated; the others are fetched by material_ids and kept there.
        Known values are the listing's."""
        from mp_api.client.core.utils import validate_ids
        from pymatgen.core import Structure

        query = as_query(query)
        structures = {}
        for mid, updated, _ in part.entries:
            doc = store.get(self.entry_key(mid, updated)) if store is not None and updated else None
            if doc is not None:
                structures[mid] = doc["structure"]
        missing = [mid for mid, _, _ in part.entries if mid not in structures]
        for _ in range(2):  # the ids a first answer lacked are asked for once more
            for i in range(0, len(missing), IDS_PER_REQUEST):
                chunk = missing[i:i + IDS_PER_REQUEST]
                docs = self._summary(f"{len(chunk)} entries of {query}", ENTRY_FIELDS, material_ids=chunk)
                asked = dict(zip(chunk, chunk))
                asked.update(zip(validate_ids(chunk), chunk))  # as mp-api sent them (new ids in letters)
                for d in docs:
                    mid = asked.get(str(d["material_id"]))
                    if mid is None or d.get("structure") is None:
                        continue
                    structures[mid] = _structure_dict(d["structure"])
                    if store is not None and d.get("last_updated") is not None:
                        store.put(self.entry_key(mid, str(d["last_updated"])), {"structure": structures[mid]})
            missing = [mid for mid in missing if mid not in structures]
        if missing:  # an answer that counts what it sends can still leave entries out: never a partial partition
            raise ScreenError(f"--source mp: the server's answers lacked {len(missing)} of the entries of {query} "
                              f"asked for, twice ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                              f"nothing of their partition was kept, try again")
        out = []
        for mid, _, known in part.entries:
            s = Structure.from_dict(structures[mid])
            elements, formula = structure_info(s)
            if query.matches(elements, formula, mid):
                out.append(Candidate(self.name, mid, formula, s, known=dict(known)))
        return out

    def fetch_systems(self, systems: Iterable[str], per_request: int = 100) -> List[Candidate]:
        """Every crystal of the explicit systems ("Fe-Li-O"), a chemsys list per request."""
        systems = sorted({"-".join(sorted(s.split("-"))) for s in systems})
        wanted = {frozenset(s.split("-")) for s in systems}
        out = []
        for i in range(0, len(systems), per_request):
            batch = systems[i:i + per_request]
            out.extend(self._search(f"{len(batch)} chemical systems", lambda e, *_: frozenset(e) in wanted,
                                    chemsys=batch))
        return out

    def fetch_thermo(self, systems: Iterable[str], per_request: int = 200) -> Dict[str, List[Tuple[str, str, float]]]:
        """MP's thermo entries of each explicit chemical system ("Li-O"): {system: [(id, formula,
        formation energy per atom)]}, every system asked for a key (empty when MP has none).
        Thermo type THERMO_TYPE; deprecated entries left out, GNoME ones unless self.gnome
        (the thermo search has no such filters, so the documents are read for them)."""
        systems = sorted({"-".join(sorted(s.split("-"))) for s in systems})
        out: Dict[str, List[Tuple[str, str, float]]] = {s: [] for s in systems}
        for i in range(0, len(systems), per_request):
            batch = systems[i:i + per_request]
            docs = self._documents(f"thermo data of {len(batch)} chemical systems",
                                   lambda mpr: mpr.materials.thermo.search, chemsys=batch,
                                   thermo_types=[THERMO_TYPE], fields=THERMO_FIELDS)
            for d in docs:
                system = "-".join(sorted(str(d.get("chemsys") or "").split("-")))
                e = d.get("formation_energy_per_atom")
                if system not in out or e is None or d.get("deprecated") or (is_gnome(d) and not self.gnome) \
                        or str(d.get("thermo_type") or THERMO_TYPE) != THERMO_TYPE:
                    continue
                out[system].append((str(d["material_id"]), str(d["formula_pretty"]), float(e)))
        return out

    def _documents(self, what: str, endpoint: Callable, **kw) -> List[dict]:
        """Every document of one search (`endpoint(rester)` is the search method), checked complete."""
        from mp_api.client.core import MPRestError

        mpr = self._client()
        self._totals = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                docs = endpoint(mpr)(**kw, chunk_size=self.chunk_size)
        except MPRestError as e:
            raise ScreenError(f"--source mp: search for {what} failed ({_one_line(e)})") from None
        except OSError as e:  # connection refused / reset / timed out after retries
            raise ScreenError(f"--source mp: cannot reach {self._endpoint_text()} ({_one_line(e)})") from None
        except ValueError as e:  # a body that is not the JSON it should be (cut off, say)
            raise ScreenError(f"--source mp: search for {what} got a damaged answer from "
                              f"{self._endpoint_text()} ({type(e).__name__}); try again") from None
        docs = list(docs)
        expected = sum(self._totals)
        if len(docs) < expected:
            raise ScreenError(f"--source mp: search for {what} received {len(docs)} of the {expected} documents "
                              f"the server counted; nothing was kept, try again")
        fields = kw.get("fields") or []
        return [d if isinstance(d, dict) else {f: getattr(d, f, None) for f in fields} for d in docs]

    def _summary(self, what: str, fields: List[str], **kw) -> List[dict]:
        """Summary documents with `fields`: every search asks for no deprecated entries and for GNoME's
        only with --gnome, and drops what a server that ignored those filters sent anyway."""
        docs = self._documents(what, lambda mpr: mpr.materials.summary.search, **kw, fields=fields,
                               deprecated=False, include_gnome=self.gnome)
        return [d for d in docs if not (d.get("deprecated") or (is_gnome(d) and not self.gnome))]

    def _search(self, what: str, matches: Callable, **kw) -> List[Candidate]:
        from pymatgen.core import Structure

        out, seen = [], set()
        for d in self._summary(what, FIELDS, **kw):
            mid = str(d["material_id"])
            s = d["structure"]
            s = s if isinstance(s, Structure) else Structure.from_dict(s)
            elements, formula = structure_info(s)
            if mid in seen or not matches(elements, formula, mid):
                continue  # the server filtered more loosely than we mean
            seen.add(mid)
            out.append(Candidate(self.name, mid, formula, s, known=_known(d)))
        return out

    def entries_note(self) -> str:
        """Which entries a run includes, in one line (no network)."""
        gnome = ("GNoME r2SCAN entries included (--gnome; hypothetical, another functional; see the gnome column)"
                 if self.gnome else "GNoME r2SCAN entries left out (--gnome includes them)")
        return f"Materials Project entries: deprecated ones left out; {gnome}"

    def settings(self) -> dict:
        """The choices behind the fetched entries, for the run summary."""
        return {"endpoint": self._client().endpoint, "db_version": self._client().db_version or "unknown",
                "deprecated": "excluded", "gnome": "included" if self.gnome else "excluded",
                "request_budget": self.budget.describe()}

    def thermo_description(self) -> str:
        """What fetch_thermo() answers from (a cache key): the database and the entries, and the thermo type."""
        return f"{self.describe()} thermo={THERMO_TYPE}"

    def describe(self) -> str:
        db = self._client().db_version or "unknown"
        return (f"mp:{self._client().endpoint} db_version={db} deprecated=excluded "
                f"gnome={'included' if self.gnome else 'excluded'}")
