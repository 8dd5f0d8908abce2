"""What the run's tasks hand each other: typed records, each with a JSON round trip where a cache keeps it.

    Fetched   a fetch's candidates and its counts (FetchCounts), from a fetch task to the tasks after it
    Row       one keyed candidate: what the table needs of it, without its structure (the structure
              cache keeps a partition's rows, as JSON lists)
    Keyed     a partition's rows, its unusable candidates, and what it cost
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional


@dataclass
class FetchCounts:
    """What fetching did: MP entries fetched in full and served by the entry cache; formulas and
    prototypes the substitution source rejected (only rare or fractional oxidation states balance
    them; a too-short distance, by element pair "Br-O"; a substitution probability below the run's
    `min_substitution_probability`)."""
    mp_fetched: int = 0
    mp_cached: int = 0
    rejected_valence: int = 0
    rejected_distance: Dict[str, int] = field(default_factory=dict)
    rejected_improbable: int = 0

    def __add__(self, other: "FetchCounts") -> "FetchCounts":
        distance = dict(self.rejected_distance)
        for pair, n in other.rejected_distance.items():
            distance[pair] = distance.get(pair, 0) + n
        return FetchCounts(self.mp_fetched + other.mp_fetched, self.mp_cached + other.mp_cached,
                           self.rejected_valence + other.rejected_valence, dict(sorted(distance.items())),
                           self.rejected_improbable + other.rejected_improbable)

    def to_json(self) -> dict:
        return {"mp_fetched": self.mp_fetched, "mp_cached": self.mp_cached,
                "rejected_valence": self.rejected_valence, "rejected_distance": self.rejected_distance,
                "rejected_improbable": self.rejected_improbable}

    @classmethod
    def from_json(cls, doc: dict) -> "FetchCounts":
        return cls(doc.get("mp_fetched", 0), doc.get("mp_cached", 0), doc.get("rejected_valence", 0),
                   dict(doc.get("rejected_distance", {})), doc.get("rejected_improbable", 0))


def total(counts) -> FetchCounts:
    out = FetchCounts()
    for c in counts:
        out = out + c
    return out


@dataclass
class Fetched:
    """A fetch's candidates (screening.sources.base.Candidate) and its counts. Candidates hold
    structures, so no cache keeps a Fetched whole; its counts go to summary.json as JSON."""
    candidates: list
    counts: FetchCounts = field(default_factory=FetchCounts)

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, rows: slice) -> "Fetched":
        """A slice of the candidates (a partition of a whole fetch); the counts stay with the whole."""
        return Fetched(self.candidates[rows])

    def size(self) -> tuple:
        """(how many candidates, counts): all the client needs of a fetch to plan the tasks after it."""
        return len(self.candidates), self.counts

    def to_json(self) -> dict:
        return {"candidates": [_candidate_json(c) for c in self.candidates], "counts": self.counts.to_json()}

    @classmethod
    def from_json(cls, doc: dict) -> "Fetched":
        return cls([_candidate_of(c) for c in doc["candidates"]], FetchCounts.from_json(doc["counts"]))


def _candidate_json(c) -> dict:
    return {"source": c.source, "id": c.id, "formula": c.formula, "known": c.known,
            "structure": c.structure.as_dict()}


def _candidate_of(doc: dict):
    from pymatgen.core import Structure

    from screening.sources.base import Candidate

    return Candidate(doc["source"], doc["id"], doc["formula"], Structure.from_dict(doc["structure"]),
                     known=doc["known"])


class Row(NamedTuple):
    """A keyed candidate: its position in its partition, source, id, formula, known values, graph key,
    atoms without neighbours, density (g/cm3) and element set ("Fe-Li-O")."""
    i: Optional[int]
    source: str
    id: str
    formula: str
    known: Dict[str, Any]
    key: str
    isolated: int
    density: float
    system: str

    def to_json(self) -> list:
        return list(self)

    @classmethod
    def from_json(cls, doc: list) -> "Row":
        return cls(*doc)


@dataclass
class Keyed:
    """A partition's keyed rows, one line per candidate that could not be featurized, how many were
    featurized and parsed now, whether the structure cache had it all, the task's seconds and the
    fetch's counts (when this task fetched)."""
    rows: List[Row] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    featurized: int = 0
    parsed: int = 0
    cached: bool = False
    seconds: float = 0.0
    counts: FetchCounts = field(default_factory=FetchCounts)

    @property
    def keys(self) -> List[str]:
        return [r.key for r in self.rows]

    def to_json(self) -> dict:
        """What the structure cache keeps of a partition."""
        return {"rows": [r.to_json() for r in self.rows], "errors": list(self.errors)}

    @classmethod
    def from_json(cls, doc: dict) -> "Keyed":
        return cls([Row.from_json(r) for r in doc["rows"]], list(doc["errors"]))
