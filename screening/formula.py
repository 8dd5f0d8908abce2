"""A formula's element set and reduced formula: one parse, cached, for every module that groups by system."""
from __future__ import annotations

import functools
import warnings
from typing import FrozenSet, Optional, Tuple


@functools.lru_cache(maxsize=None)
def formula_info(formula: str) -> Optional[Tuple[FrozenSet[str], str]]:
    """(element set, pymatgen reduced formula) of a formula string; None if it does not parse."""
    from pymatgen.core import Composition

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "no Pauling electronegativity for He" while ordering
            comp = Composition(formula)
            return frozenset(el.symbol for el in comp.elements), comp.reduced_formula
    except Exception:
        return None


def element_set(formula: str) -> FrozenSet[str]:
    """The elements of a formula that must parse (a ValueError otherwise)."""
    info = formula_info(formula)
    if info is None:
        raise ValueError(f"not a formula: {formula!r}")
    return info[0]


def structure_info(structure) -> Tuple[FrozenSet[str], str]:
    """(element set, reduced formula) of a pymatgen Structure."""
    comp = structure.composition
    return frozenset(el.symbol for el in comp.elements), comp.reduced_formula
