"""`source` mp: the Materials Project through the official mp-api client (screening/sources/mp_client.py
holds the HTTP side: retries, the request budget, completeness checks).

One summary search per query: `chemsys` (wildcards passed as they are; the MP
API reads `Li-*-O` as "three elements, Li and O among them", our meaning),
`formula`, or `material_ids`, with `exclude_elements` for the query's exclusions. Results
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
another functional, which mp-api includes by default) unless `gnome=True`.
Both are checked again on our side and stated by describe() (the
cache key) and settings() (the run summary).

What MP says of each material comes along in Candidate.known: formation
energy, band gap and Fermi energy, MP's own energy above its hull and whether
the material is on it (`dft_e_above_hull`, `dft_is_stable`, computed by MP with
its compatibility scheme), whether it is known experimentally (`experimental`:
not theoretical, or with ICSD ids) and whether it is a GNoME entry (`gnome`).

thermo() (MPThermo, fetch_thermo()) gives the reference phases for MP runs: MP's own thermo data
(thermo type GGA_GGA+U_R2SCAN) of the same database, a list of chemical
systems per request, with the same choice of entries.

The key comes from MP_API_KEY; the endpoint from the `endpoint` argument,
else MP_API_ENDPOINT, else mp-api's default (https://api.materialsproject.org/).
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, List, Optional, Tuple, Union

from screening.errors import ScreenError
from screening.formula import formula_info, structure_info
from screening.query import ALL, CHEMSYS, FORMULA, IDS, Query
from screening.sources.base import (KNOWN_PROPERTIES, Candidate, EntryStore, Partition, Source, Thermo, ThermoRows,
                                    as_float, as_query, known_properties)
from screening.sources.mp_client import DEFAULT_RATE, TIMEOUT_S, MPClient

FIELDS = ["material_id", "formula_pretty", "structure", *KNOWN_PROPERTIES,
          "energy_above_hull", "is_stable", "theoretical", "database_IDs", "deprecated", "builder_meta"]
LIST_FIELDS = [f for f in FIELDS if f != "structure"] + ["last_updated"]  # partitions(): all but the structure
ENTRY_FIELDS = ["material_id", "structure", "last_updated"]  # fetch_partition(): what the listing lacks
IDS_PER_REQUEST = 100  # material_ids per request of fetch_partition (keeps the URL short)
GNOME_BATCH = "gnome_r2scan_statics"
THERMO_TYPE = "GGA_GGA+U_R2SCAN"
THERMO_FIELDS = ["material_id", "formula_pretty", "chemsys", "formation_energy_per_atom", "thermo_type",
                 "deprecated", "builder_meta"]
FUNCTIONALS = (f"GGA/GGA+U energies mixed with r2SCAN ones where MP has them, by MP's compatibility scheme "
               f"(thermo type {THERMO_TYPE})")


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


class MPSource(Source):
    name = "mp"
    knows_stability = True  # dft_is_stable and experimental, in every candidate's known values

    def __init__(self, api_key: Optional[str] = None, endpoint: Optional[str] = None, chunk_size: int = 1000,
                 timeout: float = TIMEOUT_S, backoff: float = 0.5, gnome: bool = False, rate: int = DEFAULT_RATE):
        api_key = api_key or os.environ.get("MP_API_KEY") or None
        if not api_key:
            raise ScreenError("`source` mp: MP_API_KEY is not set; set MP_API_KEY to your Materials Project "
                              "API key (https://materialsproject.org/api) or use `source` local:PATH")
        self.client = MPClient(api_key, endpoint or os.environ.get("MP_API_ENDPOINT") or None, chunk_size,
                               timeout, backoff, rate)
        self.gnome = gnome  # include GNoME r2SCAN entries

    @property
    def budget(self):
        """The request budget every request of this source draws from (workflows swap in a cluster-wide one)."""
        return self.client.budget

    @budget.setter
    def budget(self, budget) -> None:
        self.client.budget = budget

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
        endpoint = self.client.url().rstrip("/")
        return f"mp:{endpoint} {material_id} last_updated={last_updated} fields={','.join(ENTRY_FIELDS)}"

    def fetch_partition(self, query: Query, part: Partition, entries: Optional[EntryStore] = None, *,
                        store: Optional[EntryStore] = None) -> List[Candidate]:
        """The candidates of one of partitions()'s parts. Structures come from `entries` (get(entry_key)
        -> {"structure": ...} or None, put(entry_key, doc)) where it holds the entry at its listed
        last_updated; the others are fetched by material_ids and kept there. Known values are the
        listing's. (`store`: the earlier name of `entries`.)"""
        from mp_api.client.core.utils import validate_ids
        from pymatgen.core import Structure

        query = as_query(query)
        store = entries if entries is not None else store
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
            raise ScreenError(f"`source` mp: the server's answers lacked {len(missing)} of the entries of {query} "
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

    def thermo(self) -> "MPThermo":
        """MP's thermo data of the same database, with the same choice of entries."""
        return MPThermo(self)

    def fetch_thermo(self, systems: Iterable[str], per_request: int = 200) -> ThermoRows:
        """MP's thermo entries of each explicit chemical system ("Li-O"): {system: [(id, formula,
        formation energy per atom)]}, every system asked for a key (empty when MP has none).
        Thermo type THERMO_TYPE; deprecated entries left out, GNoME ones unless self.gnome
        (the thermo search has no such filters, so the documents are read for them)."""
        systems = sorted({"-".join(sorted(s.split("-"))) for s in systems})
        out: ThermoRows = {s: [] for s in systems}
        for i in range(0, len(systems), per_request):
            batch = systems[i:i + per_request]
            docs = self.client.documents(f"thermo data of {len(batch)} chemical systems",
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

    def _summary(self, what: str, fields: List[str], **kw) -> List[dict]:
        """Summary documents with `fields`: every search asks for no deprecated entries and for GNoME's
        only with `gnome`, and drops what a server that ignored those filters sent anyway."""
        docs = self.client.documents(what, lambda mpr: mpr.materials.summary.search, **kw, fields=fields,
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

    def settings(self) -> dict:
        """The choices behind the fetched entries, for the run summary."""
        endpoint, db_version = self.client.database()
        return {"endpoint": endpoint, "db_version": db_version,
                "deprecated": "excluded", "gnome": "included" if self.gnome else "excluded",
                "request_budget": self.budget.describe()}

    def thermo_description(self) -> str:
        """What fetch_thermo() answers from (a cache key): the database and the entries, and the thermo type."""
        return f"{self.describe()} thermo={THERMO_TYPE}"

    def describe(self) -> str:
        endpoint, db_version = self.client.database()
        gnome = "included" if self.gnome else "excluded"
        return f"mp:{endpoint} db_version={db_version} deprecated=excluded gnome={gnome}"


class MPThermo(Thermo):
    """An MP source's thermo data (Source.thermo): fetch_thermo() and thermo_description()."""

    def __init__(self, source: MPSource):
        self.source = source

    def describe(self) -> str:
        return self.source.thermo_description()

    def fetch(self, systems: Iterable[str]) -> ThermoRows:
        return self.source.fetch_thermo(systems)
