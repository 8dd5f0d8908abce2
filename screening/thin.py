"""Thin reference systems: sub-systems of a candidate's chemical system without any reference phase.

Where the reference phases lack a sub-system (no Li-Mo phase among them), the hull there is made
of the phases around it. Had that sub-system a stable phase the references miss, the hull would
lie lower and the candidate would be less stable than it looks. Whether that matters depends on
the candidate, not only on its system: a Li-Mo intermetallic barely moves the hull at Li2MoO4,
which oxides two eV/atom deep hold up, but it can move it at the metal-rich LiMoO2.

So each thin sub-system is probed with phases at its simple compositions (1-3 atoms of each
element) as stable as the most stable known systems of its kind (PROBE_ENERGY), and a candidate's
hull drop is how far its hull energy falls with them: an upper bound on how much too low its
E_hull may be. A run flags the candidates whose drop is over DROP_TOLERANCE.
"""
from __future__ import annotations

from itertools import product
from math import gcd
from typing import Callable, Dict, Iterable, List, Sequence

import numpy as np

from screening.hull import Hull, Phase, composition

NONMETALS = frozenset("H B C N O F Si P S Cl Ge As Se Br Sb Te I".split())
# eV/atom, per atom of the probe phase: the 5th percentile, over the chemical systems of two
# elements in the shipped reference table, of each system's lowest formation energy; metals alone
# (Li-Mo) -0.91, with a nonmetal (Au-O) -3.57. Systems of three elements give the same figures.
PROBE_ENERGY = {"metals": -0.9, "nonmetal": -3.5}
# eV/atom: a drop below this is small beside a candidate's E_hull σ: the unrelaxed stage's add alone, and
# below the σ of 97 % of the relaxed prototypes of benchmarks/rediscovery.py (their median: 0.058)
DROP_TOLERANCE = 0.025
# elements: up to this many, qhull builds a probed hull quicker than a linear program per formula
QHULL_UP_TO = 5


def probes(sub: Sequence[str]) -> List[Phase]:
    """Phases of a thin sub-system ("Li", "Mo") standing for one at every composition of 1-3 atoms per
    element. All are at one energy per atom, so a composition between others adds nothing to the hull
    (LiMo2 lies between LiMo and LiMo3), and every such composition lies between those of 1 or 3 atoms
    per element: only these are made, 2^k - 1 of them for k elements rather than about 3^k."""
    energy = PROBE_ENERGY["nonmetal" if set(sub) & NONMETALS else "metals"]
    out = []
    for counts in product((1, 3), repeat=len(sub)):
        if gcd(*counts) == 1:
            formula = "".join(f"{el}{n}" for el, n in zip(sub, counts))
            out.append(Phase.of(formula, energy, f"probe|{formula}"))
    return out


def hull_drops(hull: Hull, thin: Iterable[str], formulas: Iterable[str]) -> Dict[str, float]:
    """{formula: how far its hull energy (eV/atom) falls with the thin sub-systems probed}, for the
    formulas whose hull falls at all. `hull`: the system's hull of reference phases; `thin`: its
    sub-systems without any ("Li-Mo")."""
    thin = list(thin)
    if not thin:
        return {}
    probed = probed_energy(hull.order, list(hull.phases) + [p for sub in thin for p in probes(sub.split("-"))])
    drops = {f: hull.energy_per_atom(f) - probed(f) for f in formulas}
    return {f: round(float(d), 4) for f, d in drops.items() if d > 1e-9}


def probed_energy(order: Sequence[str], phases: List[Phase]) -> Callable[[str], float]:
    """The hull energy per atom at a formula of these phases (and the elements at 0): another Hull up to
    QHULL_UP_TO elements; beyond, qhull's facets multiply (minutes for one system of eight elements), and
    a linear program, the cheapest mix of the phases at that composition, answers in milliseconds."""
    if len(order) <= QHULL_UP_TO:
        return Hull(frozenset(order), phases).energy_per_atom
    from scipy.optimize import linprog

    phases = [Phase.of(el, 0.0) for el in order] + list(phases)  # as Hull adds them
    fractions = np.array([[p.fractions.get(el, 0.0) for p in phases] for el in order])
    energies = np.array([p.energy_per_atom for p in phases])

    def cheapest(formula: str) -> float:
        x = composition(formula).fractions
        mix = linprog(energies, A_eq=fractions, b_eq=[x.get(el, 0.0) for el in order], bounds=(0, None),
                      method="highs")
        if not mix.success:  # (the elements make every composition: it cannot fail)
            raise ValueError(f"{formula}: no mix of the {'-'.join(order)} phases ({mix.message})")
        return float(mix.fun)
    return cheapest
