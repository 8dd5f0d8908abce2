"""`source` substitution: hypothetical crystals made by swapping elements into
known structure types.

Templates are the AFLOW prototypes pymatgen ships and optionally the known
crystals of another source (see below); screening/sources/prototypes.py holds
them and the valence and geometry rules a candidate must pass.

For every explicit chemical system the query covers (wildcards range over
CANDIDATE_ELEMENTS), each template with that many elements is tried with every
assignment of the system's elements to the template's elements. A try is kept
when the new composition is charge-balanced with whole, common oxidation states
and with cations where the template has cations and anions where it has anions
(so O does not land on a metal site just because some exotic valence balances
the sum). Structures with the same reduced formula are then grouped with
pymatgen's StructureMatcher and only the first of each group is kept, so no two
candidates are the same crystal. Each kept structure gets a volume from data
(predict_volume) and is rejected when two atoms sit too close (too_short). What
was rejected, and why, is in the source's `rejected` after each fetch
(rejection_notes() words it).

With `min_probability` (a run's `min_substitution_probability`), a candidate
whose data-mined substitution probability (screening/sources/plausibility.py)
is below it is rejected too; equivalent structures from several templates
count with the best of their scores. Off (None) by default.

With a base source (`substitution:local:PATH`, `substitution:mp`), known crystals
serve as templates too, through single data-mined substitutions: for a target
system S, a known crystal of S with one element e replaced by one of e's SIMILAR
most substitutable elements e' is taken with e' put back to e. Candidates that
match a known crystal of the base source are dropped: they are not new.

Candidate ids are "sub-<template>-<formula>-<n>", n counting the assignments of
that template that give that formula; they do not depend on the query.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import math
import warnings
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple, Union

from screening.errors import ScreenError
from screening.query import ALL, IDS, Query, is_element
from screening.sources.base import Candidate, Source, as_query
from screening.sources.plausibility import check_threshold, substitution_probability
from screening.sources.prototypes import (GEOMETRY_FILE, Template, composition_volume, oxidation_guesses, plain_formula,
                                          predict_volume, prototype_templates, sign_of, similar_elements, state_range,
                                          state_signs, too_short, whole_and_common)

VERSION = "2"

# Elements a wildcard ranges over: the common cations and anions of inorganic
# crystals. Left out on purpose: noble gases, radioactive elements (Tc, Pm,
# Po..., actinides), and most lanthanides (their f-electrons are poorly
# described by the GGA data the model learned from).
CANDIDATE_ELEMENTS: Tuple[str, ...] = (
    # alkali and alkaline-earth metals
    "Li", "Na", "K", "Rb", "Cs", "Be", "Mg", "Ca", "Sr", "Ba",
    # transition metals
    "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Y", "Zr", "Nb", "Mo", "Ru", "Rh", "Pd", "Ag", "Cd",
    "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg",
    # lanthanum and the common rare earths
    "La", "Ce", "Nd", "Sm", "Gd",
    # p-block metals and metalloids
    "B", "Al", "Ga", "In", "Tl", "Si", "Ge", "Sn", "Pb", "As", "Sb", "Bi",
    # non-metals / anions
    "H", "C", "N", "O", "F", "P", "S", "Cl", "Se", "Br", "Te", "I",
)

# why a candidate was rejected (SubstitutionSource.rejected)
VALENCE, DISTANCE, IMPROBABLE = "valence", "distance", "improbable"

SIMILAR = 4            # substitutes per element when known crystals are templates
MAX_TRIES = 2_000_000  # template x assignment x system tries before we ask for a narrower query


# -- the source -------------------------------------------------------------------------

class SubstitutionSource(Source):
    name = "substitution"
    hypothetical = True

    def __init__(self, base: Optional[Source] = None, elements: Sequence[str] = CANDIDATE_ELEMENTS,
                 similar: int = SIMILAR, min_probability: Optional[float] = None):
        bad = [e for e in elements if not is_element(e)]
        if bad:
            raise ScreenError(f"substitution candidate elements: unknown element {bad[0]!r}")
        self.base = base
        self.elements = tuple(sorted(set(elements)))
        self.similar = similar
        self.min_probability = check_threshold(min_probability)
        if base is not None:
            self.name = f"substitution:{base.name}"
        # What the last fetch rejected: VALENCE, the formulas charge-balanced only through rare or
        # fractional oxidation states; DISTANCE, {"Br-O": candidates with a too-short Br-O distance};
        # IMPROBABLE, candidates below min_probability.
        self.rejected: dict = _no_rejections()
        self.probabilities: Dict[str, Optional[float]] = {}  # candidate id -> score, when min_probability is set

    def rejection_notes(self) -> List[str]:
        """The last fetch's rejections in words, most common first (for a run's summary)."""
        out = [f"{n} prototype{'s' * (n != 1)} rejected: too-short {pair} distance"
               for pair, n in sorted(self.rejected[DISTANCE].items(), key=lambda kv: (-kv[1], kv[0]))]
        n = len(self.rejected[VALENCE])
        if n:
            out.append(f"{n} formula{'s' * (n != 1)} rejected: only rare or fractional oxidation states balance them")
        n = self.rejected[IMPROBABLE]
        if n:
            out.append(f"{n} prototype{'s' * (n != 1)} rejected: substitution probability below "
                       f"{self.min_probability:g}")
        return out

    def rejection_counts(self) -> dict:
        """The same as plain numbers: {"valence": formulas, "distance": {"Br-O": candidates}, "improbable": candidates}."""
        return {VALENCE: len(self.rejected[VALENCE]), DISTANCE: dict(sorted(self.rejected[DISTANCE].items())),
                IMPROBABLE: self.rejected[IMPROBABLE]}

    def settings(self) -> dict:
        return {} if self.base is None else {"templates": self.base.settings()}

    def describe(self) -> str:
        import pymatgen.core

        els = hashlib.sha256(",".join(self.elements).encode()).hexdigest()[:12]
        with open(GEOMETRY_FILE, "rb") as fh:  # a rebuilt table sizes and rejects cells differently
            geo = hashlib.sha256(fh.read()).hexdigest()[:12]
        text = (f"substitution v{VERSION} aflow-prototypes pymatgen={pymatgen.core.__version__} "
                f"elements={els} geometry={geo}")
        if self.base is not None:
            text += f" similar={self.similar} templates=[{self.base.describe()}]"
        if self.min_probability is not None:
            text += f" min_probability={self.min_probability!r}"
        return text

    def fetch(self, query: Union[Query, str]) -> List[Candidate]:
        query = as_query(query)
        if query.kind == IDS:
            raise ScreenError(f"`source` {self.name}: material ids name known crystals; "
                              f"use `source` local:PATH or `source` mp for {query}")
        if query.kind == ALL:
            raise ScreenError(f"`source` {self.name}: hypothetical crystals have no whole set to screen; "
                              f"name the chemical systems (Li-*-O, *-*-O)")
        self.rejected, self.probabilities = _no_rejections(), {}
        templates = defaultdict(list)
        for t in prototype_templates():
            templates[len(t.elements)].append(t)
        n = query.n_elements
        systems = self.systems(query) if templates[n] or self.base is not None else []
        tries = len(systems) * len(templates[n]) * math.factorial(n or 1)
        if tries > MAX_TRIES:
            raise ScreenError(f"query {query}: {len(systems)} chemical systems x {len(templates[n])} prototypes "
                              f"is too many substitutions; name more elements or use `exclude`")
        made: List[_Made] = []  # in a fixed order: the first of equivalent structures is kept
        for system in systems:
            for t in templates[n]:
                made.extend(self._substitute_all(t, system))
        if self.base is not None:
            made.extend(self._from_known(systems))
        made = [m for m in made if query.matches(m.elements(), m.formula)]
        return self._unique(made, query)

    def systems(self, query: Query) -> List[Tuple[str, ...]]:
        """Explicit systems (sorted element tuples) the query covers."""
        return [tuple(s.split("-")) for s in query.chemical_systems(self.elements)]

    # -- substitution ----------------------------------------------------------------
    def _substitute_all(self, t: Template, system: Tuple[str, ...]):
        counts: Dict[str, int] = defaultdict(int)
        for perm in itertools.permutations(system):
            made = _substitute(t, dict(zip(t.elements, perm)), self.rejected)
            if made is not None:
                counts[made.formula] += 1
                made.name = f"{t.name}-{made.id_formula}-{counts[made.formula]}"
                yield made

    def _from_known(self, systems: List[Tuple[str, ...]]):
        """Known crystals one data-mined substitution away from each target system."""
        similar = similar_elements(self.similar)
        neighbours: Dict[frozenset, List[Tuple[str, str]]] = defaultdict(list)
        for system in systems:
            for el in system:
                for sub in similar.get(el, ()):
                    if sub not in system:
                        neighbours[frozenset(system) - {el} | {sub}].append((sub, el))
        if not neighbours:
            return
        for c in self.base.fetch_systems(["-".join(sorted(k)) for k in neighbours]):
            s = c.structure
            guesses = oxidation_guesses(c.formula)
            if not guesses or not s.is_ordered:
                continue
            t = Template(c.id, s, guesses[0])
            counts: Dict[str, int] = defaultdict(int)
            for sub, el in neighbours.get(frozenset(t.elements), ()):
                made = _substitute(t, {x: (el if x == sub else x) for x in t.elements}, self.rejected)
                if made is not None:
                    counts[made.formula] += 1
                    made.name = f"{c.id}-{made.id_formula}-{counts[made.formula]}"
                    yield made

    def _unique(self, made: List["_Made"], query: Query) -> List[Candidate]:
        """One candidate per StructureMatcher group within each formula; none that is known."""
        by_formula: Dict[str, List[_Made]] = defaultdict(list)
        for m in made:
            by_formula[m.formula].append(m)
        known: Dict[str, list] = defaultdict(list)
        if self.base is not None and made:
            for c in self.base.fetch(query):
                known[c.formula].append(c.structure)
        out, fits = [], {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for formula, items in by_formula.items():
                kept: List[_Made] = []
                for m in items:
                    m.score = self._score(m)
                    twin = next((k for k in kept if _same(m, k, fits)), None)
                    if twin is not None:  # the same structure: plausible when either decoration makes it so
                        twin.score = _better(twin.score, m.score)
                        continue
                    if not any(_matcher().fit(m.structure, k) for k in known[formula]):
                        kept.append(m)
                for m in kept:  # equivalent structures get the same volume, so checking the first is enough
                    if self.min_probability is not None and m.score is not None and m.score < self.min_probability:
                        self.rejected[IMPROBABLE] += 1
                        continue
                    m.structure.scale_lattice(predict_volume(m.structure))
                    short = too_short(m.structure)
                    if short is not None:
                        self.rejected[DISTANCE][short[0]] += 1
                        continue
                    out.append(Candidate(self.name, f"sub-{m.name}", formula, m.structure))
                    if self.min_probability is not None:
                        self.probabilities[out[-1].id] = m.score
        return out

    def _score(self, m: "_Made") -> Optional[float]:
        """The made structure's substitution probability; not worked out while the filter is off."""
        if self.min_probability is None:
            return None
        return substitution_probability(m.template.states, m.mapping, m.guesses)


def _no_rejections() -> dict:
    return {VALENCE: set(), DISTANCE: defaultdict(int), IMPROBABLE: 0}


def _better(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """The higher score; None (no ion the data knows) only where both are."""
    return b if a is None else a if b is None else max(a, b)


class _Made:
    """A substituted structure and how it was made (template + element mapping)."""

    __slots__ = ("template", "mapping", "formula", "id_formula", "structure", "guesses", "name", "score")

    def __init__(self, template, mapping, formula, id_formula, structure, guesses=()):
        self.template, self.mapping = template, mapping
        self.formula, self.id_formula, self.structure = formula, id_formula, structure
        self.guesses = guesses  # the charge-balanced oxidation states it was made with (whole, common)
        self.name, self.score = "", None

    def elements(self) -> set:
        return set(self.mapping.values())


def _substitute(t: Template, mapping: Dict[str, str], rejected: Optional[dict] = None) -> Optional[_Made]:
    """Template with elements renamed by `mapping`, or None if not a sensible ionic crystal
    (formulas charge-balanced only through rare or fractional states go to rejected[VALENCE])."""
    # Cheap necessary checks first: each new element can take its site's sign, and
    # the charges can sum to zero.
    lo = hi = 0.0
    for old, new in mapping.items():
        sign = t.signs[old]
        if sign:
            if sign not in state_signs(new):
                return None
            a, b = state_range(new, sign)
            lo += a * t.amounts[old]
            hi += b * t.amounts[old]
    if not lo <= 0 <= hi:
        return None
    from pymatgen.core import Composition, Element

    comp = Composition({mapping[el]: n for el, n in t.amounts.items()})
    formula = comp.reduced_formula
    fitting = [g for g in oxidation_guesses(formula)
               if all(t.signs[el] == 0 or sign_of(g.get(mapping[el], 0.0)) == t.signs[el] for el in t.elements)]
    guesses = tuple(g for g in fitting if whole_and_common(g))
    if not guesses:
        if fitting and rejected is not None:
            rejected[VALENCE].add(formula)
        return None
    s = t.structure.copy()
    s.replace_species({Element(old): Element(new) for old, new in mapping.items() if old != new})
    s.scale_lattice(composition_volume(comp) * len(s) / comp.num_atoms)  # predict_volume once kept
    return _Made(t, mapping, formula, plain_formula(comp), s, guesses)


@functools.lru_cache(maxsize=1)
def _matcher():
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher()  # pymatgen defaults: ltol 0.2, stol 0.3, angle_tol 5, scaled volumes


_PROTOTYPE_FITS: Dict[tuple, bool] = {}  # kept for the process: prototypes never change


def _same(a: _Made, b: _Made, fits: Dict[tuple, bool]) -> bool:
    """StructureMatcher.fit(a, b) for two substitutions with the same formula.

    The matcher rescales volumes and compares species only for equality, so
    the answer depends on the two templates and on how a's elements line up
    with b's, not on which elements they are. *-O asks the same question for
    AgO, BaO, ... so it is answered once per template pair: for the lifetime of
    the process between prototypes, in `fits` (one fetch) for known crystals."""
    back = {new: old for old, new in b.mapping.items()}
    line_up = tuple(sorted((old, back[new]) for old, new in a.mapping.items()))
    key = (a.template.name, b.template.name, line_up)
    cache = _PROTOTYPE_FITS if a.template.shared and b.template.shared else fits
    if key not in cache:
        from pymatgen.core import Element

        s = a.template.structure.copy()
        s.replace_species({Element(x): Element(y) for x, y in line_up if x != y})
        cache[key] = _matcher().fit(s, b.template.structure)
    return cache[key]

