"""The interface every structure source implements, and the Candidate it yields."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Protocol, Tuple, Union

from screening.properties import TASKS
from screening.query import Query, parse_query

# Known DFT properties a source may carry along for reference (same names as the MP API);
# results columns dft_<name>.
KNOWN_PROPERTIES = TASKS  # the DFT values a source may know, as the model's tasks name them
# What a source may also know of a crystal, under its results column's own name (the MP
# source: MP's E_hull and hull membership, experimental provenance, GNoME origin).
KNOWN_STATUS = ("dft_e_above_hull", "dft_is_stable", "experimental", "gnome")


def known_column(name: str) -> str:
    """The results column of a Candidate.known entry."""
    return name if name in KNOWN_STATUS else f"dft_{name}"


class Candidate:
    """One crystal to screen.

    `structure` is parsed on first use when the source handed over CIF text
    instead (cheap to ship to a worker, parsed where it is featurized); a bad
    CIF then raises ScreenError naming the candidate id. A source that could
    not read an entry at all hands it over as `Candidate.unreadable`: its
    `.structure` raises that problem, so a run lists it among the unusable
    candidates instead of stopping.
    """

    __slots__ = ("source", "id", "formula", "known", "cif", "_structure", "problem")

    def __init__(self, source: str, id: str, formula: str, structure=None, *,
                 cif: Optional[str] = None, known: Optional[Dict[str, Any]] = None, problem: Optional[str] = None):
        if structure is None and cif is None and problem is None:
            raise ValueError(f"candidate {id}: needs a structure or CIF text")
        self.source = source
        self.id = id
        self.formula = formula  # pymatgen reduced formula
        self.known = dict(known or {})  # KNOWN_PROPERTIES as floats, KNOWN_STATUS entries
        self.cif = cif
        self._structure = structure
        self.problem = problem  # why it could not be read (one line), or None

    @classmethod
    def unreadable(cls, source: str, id: str, problem: str) -> "Candidate":
        """An entry the source could not read; `.structure` raises ScreenError(problem)."""
        return cls(source, id, "", problem=problem)

    @property
    def structure(self):
        if self.problem is not None:
            from screening.errors import ScreenError

            raise ScreenError(self.problem)
        if self._structure is None:
            from screening.structures import structure_from_cif_text

            self._structure = structure_from_cif_text(self.cif, f"{self.source} {self.id}")
        return self._structure

    def structure_parsed(self) -> Optional[bool]:
        """False while only CIF text is held (the next `.structure` parses it), True once parsed;
        None for an unreadable entry (nothing to parse)."""
        return None if self.problem is not None else self._structure is not None

    def __repr__(self) -> str:
        return f"Candidate({self.source!r}, {self.id!r}, {self.formula!r})"

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        for k, v in state.items():
            setattr(self, k, v)


def as_float(v) -> Optional[float]:
    """v as a float; None when missing, not a number, or NaN."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def known_properties(values: Dict[str, Any]) -> Dict[str, float]:
    """The known DFT properties present in `values`, as floats; missing or NaN ones left out."""
    out = {}
    for name in KNOWN_PROPERTIES:
        v = as_float(values.get(name))
        if v is not None:
            out[name] = v
    return out


@dataclass(frozen=True)
class Partition:
    """A part of a query's candidates that a worker fetches by itself, so no structure passes
    through the client. `label` names it stably (with the query and the source's description,
    it keys the structure cache); `rows` are a CSV's row numbers (LocalSource); `entries` are
    (id, version, known values) of a database's entries, from its listing (MPSource: material_id,
    last_updated and what MP says of the material). A partition with neither is a slice of a
    whole fetch."""

    label: str
    rows: Tuple[int, ...] = ()
    entries: Tuple[Tuple[str, Optional[str], Dict[str, Any]], ...] = ()

    def fetchable(self) -> bool:
        """Whether a worker can fetch it alone (not a slice of a whole fetch)."""
        return bool(self.rows or self.entries)

    def to_json(self) -> dict:
        return {"label": self.label, "rows": list(self.rows), "entries": [list(e) for e in self.entries]}

    @classmethod
    def from_json(cls, doc: dict) -> "Partition":
        return cls(doc["label"], tuple(doc["rows"]), tuple(tuple(e) for e in doc.get("entries", ())))


class EntryStore(Protocol):
    """Where a source keeps the database entries it fetched in full, by a text key that names the
    entry and its version (workflows pass cache/entry_cache.py's EntryCache)."""

    def get(self, key: str) -> Optional[dict]:
        """The entry kept under `key`, or None."""

    def put(self, key: str, doc: dict) -> None:
        """Keep `doc` under `key`."""


# A source's own reference phases, per explicit chemical system ("Li-O"): [(id, reduced formula,
# DFT formation energy per atom)] (Thermo.fetch's answer).
ThermoRows = Dict[str, List[Tuple[str, str, float]]]


class Thermo(ABC):
    """The DFT formation energies a source holds of every entry of a chemical system, fetched
    system by system (the Materials Project's thermo data): reference phases from the source itself."""

    @abstractmethod
    def describe(self) -> str:
        """Stable one-line text naming the data the answers come from (a cache key)."""

    @abstractmethod
    def fetch(self, systems: Iterable[str]) -> ThermoRows:
        """The entries of each explicit system, every system asked for a key (empty where none)."""


class Source(ABC):
    """Where candidates come from. `name` is what Candidate.source says.

    What a source can do beyond fetch() and describe() is declared here with a default, so a
    caller asks a source instead of probing it."""

    name: str = ""
    # whether its candidates' known values say which crystals are on the source's own hull and
    # which are known experimentally (dft_is_stable, experimental): what `new_only` reads
    knows_stability: bool = False
    # whether it makes its candidates (hypothetical crystals) rather than holding known ones
    hypothetical: bool = False
    # the source it draws known crystals from (substitution:mp's mp), or None
    base: Optional["Source"] = None

    def rejection_counts(self) -> dict:
        """What the last fetch rejected, by reason: {"valence": formulas, "distance": {"Br-O": n},
        "improbable": n} (none here)."""
        return {"valence": 0, "distance": {}, "improbable": 0}

    @abstractmethod
    def fetch(self, query: Union[Query, str]) -> List[Candidate]:
        """Every candidate matching the query, each once."""

    @abstractmethod
    def describe(self) -> str:
        """Stable one-line text naming the source and the version of its data (a cache key)."""

    def fetch_systems(self, systems: Iterable[str]) -> List[Candidate]:
        """Every crystal of the explicit chemical systems ("Fe-Li-O"); one fetch per system here,
        in fewer look-ups where the source can (a CSV in one pass, MP a list of systems a request)."""
        return [c for system in systems for c in self.fetch(parse_query(system))]

    def thermo(self) -> Optional[Thermo]:
        """The source's own reference phases, where it has them apart from its candidates; None here."""
        return None

    def partitions(self, query: Query, size: int) -> Optional[List[Partition]]:
        """The query's candidates in parts of at most `size`, each matching crystal in exactly one,
        decided without fetching structures; None where the source cannot tell before it fetches
        (then one worker fetches everything and the list is split there)."""
        return None

    def fetch_partition(self, query: Query, part: Partition, entries: Optional[EntryStore] = None) -> List[Candidate]:
        """The candidates of one of partitions(query, ...)'s parts. `entries`: where a source that
        lists database entries (MP) keeps and finds the ones it fetched in full; others ignore it."""
        raise NotImplementedError(f"{self.name} has no partitions")

    def settings(self) -> Dict[str, Any]:
        """The choices behind the fetched entries (database version, entries left out), for the run summary."""
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def as_query(query: Union[Query, str]) -> Query:
    return query if isinstance(query, Query) else parse_query(query)
