"""The interface every structure source implements, and the Candidate it yields."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Union

from screening.query import Query, parse_query

# Known DFT properties a source may carry along for reference (same names as the MP API).
KNOWN_PROPERTIES = ("formation_energy_per_atom", "band_gap", "efermi")


class Candidate:
    """One crystal to screen.

    `structure` is parsed on first use when the source handed over CIF text
    instead (cheap to ship to a worker, parsed where it is featurized); a bad
    CIF then raises ScreenError naming the candidate id.
    """

    __slots__ = ("source", "id", "formula", "known", "cif", "_structure")

    def __init__(self, source: str, id: str, formula: str, structure=None, *,
                 cif: Optional[str] = None, known: Optional[Dict[str, float]] = None):
        if structure is None and cif is None:
            raise ValueError(f"candidate {id}: needs a structure or CIF text")
        self.source = source
        self.id = id
        self.formula = formula  # pymatgen reduced formula
        self.known = dict(known or {})
        self.cif = cif
        self._structure = structure

    @property
    def structure(self):
        if self._structure is None:
            from screening.structures import structure_from_cif_text

            self._structure = structure_from_cif_text(self.cif, f"{self.source} {self.id}")
        return self._structure

    def __repr__(self) -> str:
        return f"Candidate({self.source!r}, {self.id!r}, {self.formula!r})"

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        for k, v in state.items():
            setattr(self, k, v)


def known_properties(values: Dict[str, Any]) -> Dict[str, float]:
    """The known DFT properties present in `values`, as floats; missing or NaN ones left out."""
    out = {}
    for name in KNOWN_PROPERTIES:
        v = values.get(name)
        if v is None:
            continue
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if not math.isnan(v):
            out[name] = v
    return out


class Source(ABC):
    """Where candidates come from. `name` is what Candidate.source says."""

    name: str = ""

    @abstractmethod
    def fetch(self, query: Union[Query, str]) -> List[Candidate]:
        """Every candidate matching the query, each once."""

    @abstractmethod
    def describe(self) -> str:
        """Stable one-line text naming the source and the version of its data (a cache key)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def as_query(query: Union[Query, str]) -> Query:
    return query if isinstance(query, Query) else parse_query(query)
