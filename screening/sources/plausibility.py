"""How plausible a substitution candidate is, from pymatgen's data-mined ion substitution
probabilities (Hautier et al., Inorg. Chem. 2011; core/structure_prediction/data/lambda.json,
through SubstitutionProbability).

A candidate is a template (a prototype's parent compound, or a known crystal) with its elements
renamed. For each of the template's elements, SubstitutionProbability.cond_prob(candidate ion,
parent ion) says how often, in known crystals, the candidate's ion sits where the parent's ion sat
(an unchanged O2- 0.84, Sr2+ for Ca2+ 0.10, Li+ for Na+ 0.04, Li+ for Ca2+ 0.01). The score is the
least of these: a decoration is as plausible as its least plausible substitution, since one ion
on a site it never takes is enough to make the structure wrong. The parent is the only known
decoration a prototype comes with (pymatgen's AFLOW prototypes list one compound each); where
several templates give the same structure, the source keeps the best of their scores, so the score
is the best over the decorations it knows.

Why the least rather than pymatgen's product (cond_prob_list) or a mean: a product falls with the
number of elements, so one threshold would mean "plausible" for a binary and "never" for a
quaternary; a mean lets a likely substitution hide an impossible one. Ions the table does not know
(C4-, As3-, Te2-, H-, metals at state 0: the data mines ionic oxides, halides and chalcogenides)
say nothing either way and are left out; a candidate none of whose ions the table knows has no
score (None) and is not judged. A parent's fractional average state (Fe 2.67 in Fe3O4) mixes the
two whole states around it, and the likelier of them counts. The candidate's oxidation states are
its charge-balanced ones; where several balance it, the best counts.
"""
from __future__ import annotations

import functools
import math
from typing import Dict, Iterable, Mapping, Optional, Tuple


@functools.lru_cache(maxsize=1)
def _table():
    from pymatgen.core.structure_prediction.substitution_probability import SubstitutionProbability

    table = SubstitutionProbability()
    return table, {(s.symbol, int(s.oxi_state)) for s in table.species}


@functools.lru_cache(maxsize=None)
def _ions(el: str, state: float) -> Tuple[Tuple[str, int], ...]:
    """The table's ions of `el` that an average state `state` is made of (one if whole, else the
    two whole states around it); none at state 0 (an element, or a metal in an alloy)."""
    if abs(state) < 1e-8:
        return ()
    lo, hi = math.floor(state + 1e-6), math.ceil(state - 1e-6)
    known = _table()[1]
    return tuple(ion for ion in {(el, lo), (el, hi)} if ion in known)


@functools.lru_cache(maxsize=None)
def site_probability(new: str, new_state: float, old: str, old_state: float) -> Optional[float]:
    """cond_prob(new ion | old ion): the likelier of the parent's ions; None where the table
    knows the candidate's ion or the parent's not."""
    from pymatgen.core import Species

    new_ions, old_ions = _ions(new, new_state), _ions(old, old_state)
    if len(new_ions) != 1 or not old_ions:  # the candidate's states are whole: one ion or none
        return None
    table = _table()[0]
    return max(table.cond_prob(Species(*new_ions[0]), Species(*ion)) for ion in old_ions)


def substitution_probability(parent: Mapping[str, float], mapping: Mapping[str, str],
                             guesses: Iterable[Dict[str, float]]) -> Optional[float]:
    """The score of a candidate (see the module docstring): `parent`, the template's oxidation
    states by element; `mapping`, template element -> candidate element; `guesses`, the candidate's
    charge-balanced oxidation states (the best of them counts). None: no ion the table knows."""
    best = None
    for guess in guesses:
        sites = [p for old, new in mapping.items()
                 if (p := site_probability(new, guess.get(new, 0.0), old, parent.get(old, 0.0))) is not None]
        if sites:
            best = min(sites) if best is None else max(best, min(sites))
    return best


def check_threshold(value) -> Optional[float]:
    """`min_substitution_probability` as a float between 0 and 1 (None: off), else ScreenError."""
    from screening.errors import ScreenError

    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise ScreenError(f"`min_substitution_probability` {value}: a probability, from 0 to 1")
    return number
