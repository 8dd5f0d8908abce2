"""A chemical system's convex hull of formation energies, as pymatgen's PhaseDiagram computes it,
without its Python objects.

Ranking needs, per chemical system, the hull energy at a few compositions. pymatgen's
PhaseDiagram spends most of its time per system on Composition and Entry objects around one
qhull call. Hull repeats what PhaseDiagram does with plain numbers: the same points in the same
order to qhull (so the same facets), the same barycentric test to find a composition's facet,
the same sum over its vertices. So it gives pymatgen's numbers (tests/screening/test_hull.py
holds it to PhaseDiagram on systems of ../shared/data) in a fraction of the time
(docs/run_speed.md).
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np

NUMERICAL_TOL = 1e-8  # PhaseDiagram.numerical_tol: decomposition amounts; a tenth of it: in a facet
FORMATION_TOL = 1e-11  # PhaseDiagram.formation_energy_tol: only phases below the elements go to qhull


@dataclass(frozen=True)
class Phase:
    """A phase as pymatgen's PDEntry(Composition(formula), formation energy per atom x atoms) holds it."""
    name: str  # "<id>|<reduced formula>", or the reduced formula of an unnamed phase
    fractions: Dict[str, float]  # element -> atomic fraction, of the formula as written
    atoms: float
    energy: float  # total: formation energy per atom x atoms
    energy_per_atom: float  # energy / atoms, as the entry computes it (not always the number it was given)
    formula: str  # Composition.formula: a hull entry of the very same formula is a tie (HullTable)
    reduced: Dict[str, float]  # element -> amount in the reduced composition: how phases sort and group

    @staticmethod
    def of(formula: str, energy_per_atom: float, name: Optional[str] = None) -> "Phase":
        c = composition(formula)
        energy = energy_per_atom * c.atoms
        return Phase(name or c.reduced_formula, c.fractions, c.atoms, energy, energy / c.atoms, c.formula, c.reduced)


@dataclass(frozen=True)
class Composition:
    """What hulls need of a formula, from one pymatgen parse."""
    fractions: Dict[str, float]
    atoms: float
    formula: str
    reduced: Dict[str, float]
    reduced_formula: str


@functools.lru_cache(maxsize=None)
def composition(formula: str) -> Composition:
    from pymatgen.core import Composition as PymatgenComposition

    c = PymatgenComposition(formula)
    return Composition({el.symbol: c.get_atomic_fraction(el) for el in c.elements}, c.num_atoms, c.formula,
                       {el.symbol: amount for el, amount in c.reduced_composition.items()}, c.reduced_formula)


@functools.lru_cache(maxsize=4096)
def pymatgen_order(system: frozenset) -> tuple:
    """The system's element symbols in the order pymatgen sorts Elements into (electronegativity, then
    symbol): the order of a phase diagram's coordinates, and so of qhull's points."""
    from pymatgen.core import Element

    return tuple(el.symbol for el in sorted(Element(s) for s in system))


class Hull:
    """The lower convex hull of `phases` in the chemical system `system` (pure elements at 0 eV/atom
    are added here, as the zero of formation energy)."""

    def __init__(self, system: frozenset, phases: Sequence[Phase]):
        order = pymatgen_order(system)
        entries = [((tuple(p.reduced.get(el, 0.0) for el in order), p.energy_per_atom, p.name), p)
                   for p in [Phase.of(el, 0.0) for el in order] + list(phases)]
        entries.sort(key=lambda pair: pair[0])  # PhaseDiagram's order: reduced composition, energy, name
        self._build(order, entries)

    def without(self, name: str) -> "Hull":
        """The hull of the same phases but the one named `name` (leave-one-out), without sorting them again."""
        hull = Hull.__new__(Hull)
        hull._build(self.order, [pair for pair in self._entries if pair[1].name != name])
        return hull

    def _build(self, order: tuple, entries: list) -> None:
        from scipy.spatial import ConvexHull

        self.order, self._entries = order, entries
        # the lowest phase of each reduced composition (the first, as sorted), as PhaseDiagram._compute keeps it
        lowest = [next(group)[1] for _, group in itertools.groupby(entries, key=lambda pair: pair[0][0])]
        element_refs = {next(iter(p.reduced)): i for i, p in enumerate(lowest) if len(p.reduced) == 1}
        data = np.array([[p.fractions.get(el, 0.0) for el in order] + [p.energy_per_atom] for p in lowest])
        formation = -np.dot(data, [lowest[element_refs[el]].energy_per_atom for el in order] + [-1])
        kept = np.flatnonzero(formation < -FORMATION_TOL).tolist() + list(element_refs.values())
        self.phases = [lowest[i] for i in kept]
        points = data[kept][:, 1:]
        # a point above everything, in every upper facet: what is left are the lower facets
        top = np.zeros(len(order)) + 1 / len(order)
        top[-1] = np.max(points) + 1
        points = np.concatenate([points, [top]])
        if len(order) == 1:
            facets = points.argmin(axis=0)[None, :]
        else:
            facets = ConvexHull(points, qhull_options="Qt i").simplices
            facets = facets[facets.max(axis=1) < len(points) - 1]
            flat = points[facets]
            flat[:, :, -1] = 1
            facets = facets[np.abs(np.linalg.det(flat)) > 1e-14]  # no vertical facets
        self.facets = facets
        corners = points[facets][:, :, :-1]
        self._inverse = np.linalg.inv(np.concatenate([corners, np.ones(corners.shape[:2] + (1,))], axis=-1))
        self.stable = [self.phases[i] for i in sorted(set(facets.ravel().tolist()))]

    def energy_per_atom(self, formula: str) -> float:
        """The hull's energy per atom at the formula's composition (PhaseDiagram.get_hull_energy_per_atom)."""
        fractions = composition(formula).fractions
        point = np.array([fractions.get(el, 0.0) for el in self.order[1:]] + [1.0])
        # every facet's barycentric coordinates at once, to find the candidates; then the first of them
        # that holds the point by PhaseDiagram's own arithmetic (a product per facet), as it picks one
        near = np.flatnonzero((np.matmul(point, self._inverse) >= -NUMERICAL_TOL / 10 - 1e-12).all(axis=1))
        for f in near:
            amounts = np.dot(point, self._inverse[f])
            if (amounts >= -NUMERICAL_TOL / 10).all():
                return sum(self.phases[i].energy_per_atom * a
                           for i, a in zip(self.facets[f], amounts) if abs(a) > NUMERICAL_TOL)
        raise ValueError(f"{formula} is in no facet of the {'-'.join(self.order)} hull")

    def ties(self, formula: str) -> list:
        """Total energies of hull phases of exactly this formula: pymatgen says 0 for an entry equal to one."""
        written = composition(formula).formula
        return [p.energy for p in self.stable if p.formula == written]
