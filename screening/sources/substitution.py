"""`--source substitution`: hypothetical crystals made by swapping elements into
known structure types.

Templates are the 288 prototypes of the AFLOW Library of Crystallographic
Prototypes that pymatgen ships (pymatgen/analysis/prototypes/
aflow_prototypes.json.gz; NaCl, CsCl, zincblende, perovskite, spinel, rutile,
...), and optionally the known crystals of another source (see below).

For every explicit chemical system the query covers (wildcards range over
CANDIDATE_ELEMENTS), each template with that many elements is tried with every
assignment of the system's elements to the template's elements. A try is kept
when

  * the new composition is charge-balanced: pymatgen's oxidation-state guesses
    (Composition.oxi_state_guesses, ICSD-common states) find a solution, and
  * that solution puts cations where the template has cations and anions where
    it has anions (template signs from the template's own guess), so O does not
    land on a metal site just because some exotic valence balances the sum.

The oxidation states of that solution must also be whole numbers and common ones
(COMMON_STATE_SHARE of the element's ICSD occurrences), so LiNd3O4 (Nd 2.33) is not
made. Structures with the same reduced formula are then grouped with pymatgen's
StructureMatcher and only the first of each group is kept, so no two candidates are
the same crystal.

Each kept structure gets a volume from data (predict_volume: the mean of per-element
atomic volumes fitted on the training crystals, screening/data/geometry.json, and
pymatgen's data-mined bond-length scaling, DLSVolumePredictor), and is rejected when
two atoms sit closer than MIN_DISTANCE_FRACTION of the shortest distance of that
element pair in the training crystals (too_short). What was rejected, and why, is in
the source's `rejected` after each fetch (rejection_notes() words it).

With a base source (`substitution:local:PATH`, `substitution:mp`), known crystals
serve as templates too, through single data-mined substitutions (Hautier et al.,
Inorg. Chem. 2011; pymatgen's lambda.json): for a target system S, a known
crystal of S with one element e replaced by one of e's SIMILAR most
substitutable elements e' is taken with e' put back to e. Candidates that
match a known crystal of the base source are dropped: they are not new.

Candidate ids are "sub-<template>-<formula>-<n>", n counting the assignments of
that template that give that formula; they do not depend on the query.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import itertools
import json
import math
import os
import re
import warnings
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from screening.errors import ScreenError
from screening.query import ALL, IDS, Query, is_element
from screening.sources.base import Candidate, Source, as_query

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

VALENCE, DISTANCE = "valence", "distance"  # why a candidate was rejected (SubstitutionSource.rejected)

SIMILAR = 4            # substitutes per element when known crystals are templates
MAX_TRIES = 2_000_000  # template x assignment x system tries before we ask for a narrower query


def _pymatgen_dir() -> str:
    import pymatgen.core  # pymatgen itself is a namespace package, with no __file__

    return os.path.dirname(os.path.dirname(pymatgen.core.__file__))


PROTOTYPE_FILE = os.path.join("analysis", "prototypes", "aflow_prototypes.json.gz")
LAMBDA_FILE = os.path.join("core", "structure_prediction", "data", "lambda.json")


# -- chemistry helpers (cached: the same formulas come up again and again) ----------

@functools.lru_cache(maxsize=None)
def _state_signs(el: str) -> frozenset:
    """Signs (+1, -1) of the oxidation states pymatgen's guesser may give `el`."""
    from pymatgen.core import Element

    e = Element(el)
    states = e.icsd_oxidation_states or e.common_oxidation_states
    return frozenset((s > 0) - (s < 0) for s in states if s)


@functools.lru_cache(maxsize=None)
def _state_range(el: str, sign: int) -> Tuple[int, int]:
    from pymatgen.core import Element

    e = Element(el)
    states = [s for s in (e.icsd_oxidation_states or e.common_oxidation_states) if (s > 0) - (s < 0) == sign]
    return (min(states), max(states)) if states else (0, 0)


@functools.lru_cache(maxsize=200_000)
def oxidation_guesses(formula: str) -> Tuple[Dict[str, float], ...]:
    """pymatgen's charge-balanced oxidation-state guesses for a reduced formula, best first."""
    from pymatgen.core import Composition

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return tuple(Composition(formula).oxi_state_guesses(max_sites=-1))
        except ValueError:
            return ()


# A state is common when it makes at least this share of the element's non-zero states in
# pymatgen's ICSD occurrence counts (core/icsd_bv.yaml): Nd 3 (97 %) but not Nd 2 (3 %), Cu 1 and
# 2 (50 % and 47 %), Bi 3 and 5 (91 %, 5.3 %).
COMMON_STATE_SHARE = 0.05


@functools.lru_cache(maxsize=None)
def common_states(el: str) -> frozenset:
    """The whole-number oxidation states candidates may give `el` (see COMMON_STATE_SHARE);
    pymatgen's common_oxidation_states where the ICSD counts have none (Au, Pt, Os)."""
    from pymatgen.core import Element

    counts = _icsd_occurrence().get(el, {})
    total = sum(n for state, n in counts.items() if state)
    if total:
        return frozenset(state for state, n in counts.items() if state and n >= COMMON_STATE_SHARE * total)
    return frozenset(Element(el).common_oxidation_states)


@functools.lru_cache(maxsize=1)
def _icsd_occurrence() -> Dict[str, Dict[int, float]]:
    from monty.serialization import loadfn

    rows = loadfn(os.path.join(_pymatgen_dir(), "core", "icsd_bv.yaml"))["occurrence"]
    out: Dict[str, Dict[int, float]] = defaultdict(dict)
    for ion, n in rows.items():  # "Fe3+", "O2-", "Na+", "Fe0+"
        m = re.match(r"^([A-Z][a-z]?)(\d*)([+-])$", ion)
        if m:
            out[m.group(1)][int(m.group(2) or 1) * (1 if m.group(3) == "+" else -1)] = float(n)
    return dict(out)


def whole_and_common(guess: Dict[str, float]) -> bool:
    """Every element's (average) state is a whole number and one of its common states."""
    return all(abs(v - round(v)) < 1e-6 and round(v) in common_states(el) for el, v in guess.items())


# -- geometry learned from the training crystals (screening/data/geometry.json) -------

MIN_DISTANCE_FRACTION = 0.85  # of the shortest distance of that pair in the training crystals
MIN_SEEN = 5  # crystals with the pair needed to trust its shortest distance
# Pairs seen in fewer crystals: this fraction of the sum of atomic radii. Over pairs seen in
# 20+ training crystals the shortest distance is >= 0.82 of that sum in 95 % of them, so
# 0.65 rejects only what is shorter than (about) MIN_DISTANCE_FRACTION of the rare extremes.
RADII_FRACTION = 0.65
GEOMETRY_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "geometry.json")


@functools.lru_cache(maxsize=1)
def geometry() -> dict:
    with open(GEOMETRY_FILE) as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=None)
def shortest_allowed(a: str, b: str) -> float:
    """The shortest a-b distance (A) a candidate may have."""
    from pymatgen.core import Element

    a, b = sorted((a, b))
    seen = geometry()["shortest"].get(f"{a}-{b}")
    if seen and seen[1] >= MIN_SEEN:
        return MIN_DISTANCE_FRACTION * seen[0]
    ra, rb = (Element(x).atomic_radius or Element(x).atomic_radius_calculated or 1.5 for x in (a, b))
    return RADII_FRACTION * (float(ra) + float(rb))


def too_short(structure) -> Optional[Tuple[str, float]]:
    """("A-B", distance) of the pair furthest below its shortest allowed distance, or None."""
    import numpy as np

    els = sorted({site.specie.symbol for site in structure})
    reach = max(shortest_allowed(a, b) for a in els for b in els)
    centre, neighbour, _, dist = structure.get_neighbor_list(reach + 1e-6, exclude_self=True)
    if not len(dist):
        return None
    symbols = np.array([site.specie.symbol for site in structure])
    worst, ratio = None, 1.0
    for c, n, d in zip(centre, neighbour, dist):
        r = d / shortest_allowed(symbols[c], symbols[n])
        if r < ratio:
            worst, ratio = ("-".join(sorted((symbols[c], symbols[n]))), float(d)), r
    return worst


def composition_volume(comp) -> float:
    """Sum of the fitted per-element atomic volumes (A^3) over the composition's atoms."""
    from pymatgen.core import Element

    table = geometry()["atom_volumes"]
    total = 0.0
    for el, n in comp.items():
        el = el.symbol
        if el in table:
            v = table[el][0]
        else:  # an element no training crystal has: its elemental solid's atomic volume
            e = Element(el)
            v = float(e.molar_volume) / 6.02214076e23 * 1e24 if e.molar_volume else 20.0
        total += n * v
    return total


def predict_volume(structure) -> float:
    """Cell volume (A^3) for a structure whose own volume means nothing (a renamed prototype).

    The mean of two estimates whose errors largely cancel: per-element atomic volumes (blind to
    the structure type) and DLSVolumePredictor (bond lengths of the structure's closest pair,
    blind to everything else), started from the first. On 600 test-split crystals of
    ../shared/data: median |error| 7.8 % and 7.2 % alone, 4.4 % for the mean
    (python benchmarks/rediscovery.py volumes)."""
    from pymatgen.analysis.structure_prediction.volume_predictor import DLSVolumePredictor

    base = composition_volume(structure.composition)
    s = structure.copy()
    s.scale_lattice(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dls = DLSVolumePredictor().predict(s)
        except (ValueError, TypeError):  # no pair within its cutoff
            dls = base
    return 0.5 * (base + dls)


def _sign(x: float) -> int:
    return (x > 1e-8) - (x < -1e-8)


def _plain_formula(comp) -> str:
    """Reduced formula without brackets or spaces (LiAg2O2, not Li(AgO)2), for ids."""
    text = comp.reduced_composition.formula.replace(" ", "")
    return re.sub(r"(?<=[A-Za-z])1(?![0-9])", "", text)


# -- templates ------------------------------------------------------------------------

class Template:
    """A structure to substitute into, with the sign of each element's oxidation state."""

    __slots__ = ("name", "structure", "elements", "amounts", "signs", "shared")

    def __init__(self, name: str, structure, guess: Dict[str, float], shared: bool = False):
        self.name = name
        self.structure = structure
        comp = structure.composition.reduced_composition
        self.amounts = {el.symbol: float(n) for el, n in comp.items()}
        self.elements = tuple(sorted(self.amounts))
        self.signs = {el: _sign(guess.get(el, 0.0)) for el in self.elements}
        self.shared = shared  # a shipped prototype: its name means the same structure in every process


@functools.lru_cache(maxsize=1)
def prototype_templates() -> Tuple[Template, ...]:
    """The AFLOW prototypes pymatgen ships, those with a charge-balanced guess.

    Named by AFLOW label; a label the library uses for several prototypes
    (AB_oP8_62_c_c: SnS, GeS, MnP, FeB) gets the prototype's formula added."""
    from pymatgen.core import Structure

    with gzip.open(os.path.join(_pymatgen_dir(), PROTOTYPE_FILE), "rt") as fh:
        entries = json.load(fh)
    labels = defaultdict(int)
    for e in entries:
        labels[e["tags"]["aflow"]] += 1
    out, names = [], set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for e in entries:
            s = Structure.from_dict(e["snl"])
            if not s.is_ordered:
                continue
            guesses = oxidation_guesses(s.composition.reduced_formula)
            if not guesses:
                continue
            name = e["tags"]["aflow"]
            if labels[name] > 1:
                name += "." + _plain_formula(s.composition)
            while name in names:
                name += "'"
            names.add(name)
            out.append(Template(name, s, guesses[0], shared=True))
    # Of equivalent substitutions the first is kept: try high-symmetry, small cells
    # first, so NaCl comes out as rocksalt (225) rather than a distorted variant.
    return tuple(sorted(out, key=_symmetry_first))


def _symmetry_first(t: Template):
    """Sort key: space group number (high first), then sites in the Pearson cell."""
    m = re.match(r"^[A-Z0-9]+_[amothrc][PCFIRAB](\d+)_(\d+)_", t.name)  # AB_cF8_225_a_b
    sites, group = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    return (-group, sites, t.name)


@functools.lru_cache(maxsize=1)
def similar_elements(k: int = SIMILAR) -> Dict[str, Tuple[str, ...]]:
    """For each element, the k other elements most often substituted for it (max lambda
    over the element's ions in pymatgen's data-mined substitution table)."""
    with open(os.path.join(_pymatgen_dir(), LAMBDA_FILE)) as fh:
        rows = json.load(fh)
    best: Dict[str, Dict[str, float]] = defaultdict(dict)
    symbol = re.compile(r"^([A-Z][a-z]?)")
    for a, b, lam in rows:
        ma, mb = symbol.match(a), symbol.match(b)
        if not (ma and mb):
            continue
        ea, eb = ma.group(1), mb.group(1)
        if ea == eb or not (is_element(ea) and is_element(eb)):
            continue
        for x, y in ((ea, eb), (eb, ea)):
            best[x][y] = max(best[x].get(y, -1e9), float(lam))
    return {el: tuple(sorted(d, key=lambda y: (-d[y], y))[:k]) for el, d in best.items()}


# -- the source -------------------------------------------------------------------------

class SubstitutionSource(Source):
    name = "substitution"

    def __init__(self, base: Optional[Source] = None, elements: Sequence[str] = CANDIDATE_ELEMENTS,
                 similar: int = SIMILAR):
        bad = [e for e in elements if not is_element(e)]
        if bad:
            raise ScreenError(f"substitution candidate elements: unknown element {bad[0]!r}")
        self.base = base
        self.elements = tuple(sorted(set(elements)))
        self.similar = similar
        if base is not None:
            self.name = f"substitution:{base.name}"
        # What the last fetch rejected: VALENCE, the formulas charge-balanced only through rare or
        # fractional oxidation states; DISTANCE, {"Br-O": candidates with a too-short Br-O distance}.
        self.rejected: dict = {VALENCE: set(), DISTANCE: defaultdict(int)}

    def rejection_notes(self) -> List[str]:
        """The last fetch's rejections in words, most common first (for a run's summary)."""
        out = [f"{n} prototype{'s' * (n != 1)} rejected: too-short {pair} distance"
               for pair, n in sorted(self.rejected[DISTANCE].items(), key=lambda kv: (-kv[1], kv[0]))]
        n = len(self.rejected[VALENCE])
        if n:
            out.append(f"{n} formula{'s' * (n != 1)} rejected: only rare or fractional oxidation states balance them")
        return out

    def rejection_counts(self) -> dict:
        """The same as plain numbers: {"valence": formulas, "distance": {"Br-O": candidates}}."""
        return {VALENCE: len(self.rejected[VALENCE]), DISTANCE: dict(sorted(self.rejected[DISTANCE].items()))}

    def entries_note(self) -> Optional[str]:
        return None if self.base is None else self.base.entries_note()

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
        return text

    def fetch(self, query: Union[Query, str]) -> List[Candidate]:
        query = as_query(query)
        if query.kind == IDS:
            raise ScreenError(f"--source {self.name}: material ids name known crystals; "
                              f"use --source local:PATH or --source mp for {query}")
        if query.kind == ALL:
            raise ScreenError(f"--source {self.name}: hypothetical crystals have no whole set to screen; "
                              f"name the chemical systems (Li-*-O, *-*-O)")
        self.rejected = {VALENCE: set(), DISTANCE: defaultdict(int)}
        templates = defaultdict(list)
        for t in prototype_templates():
            templates[len(t.elements)].append(t)
        n = query.n_elements
        systems = self.systems(query) if templates[n] or self.base is not None else []
        tries = len(systems) * len(templates[n]) * math.factorial(n or 1)
        if tries > MAX_TRIES:
            raise ScreenError(f"query {query}: {len(systems)} chemical systems x {len(templates[n])} prototypes "
                              f"is too many substitutions; name more elements or use --exclude")
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
        for c in fetch_systems(self.base, ["-".join(sorted(k)) for k in neighbours]):
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
                    if any(_same(m, k, fits) for k in kept) or \
                            any(_matcher().fit(m.structure, k) for k in known[formula]):
                        continue
                    kept.append(m)
                for m in kept:  # equivalent structures get the same volume, so checking the first is enough
                    m.structure.scale_lattice(predict_volume(m.structure))
                    short = too_short(m.structure)
                    if short is not None:
                        self.rejected[DISTANCE][short[0]] += 1
                        continue
                    out.append(Candidate(self.name, f"sub-{m.name}", formula, m.structure))
        return out


class _Made:
    """A substituted structure and how it was made (template + element mapping)."""

    __slots__ = ("template", "mapping", "formula", "id_formula", "structure", "name")

    def __init__(self, template, mapping, formula, id_formula, structure):
        self.template, self.mapping = template, mapping
        self.formula, self.id_formula, self.structure = formula, id_formula, structure
        self.name = ""

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
            if sign not in _state_signs(new):
                return None
            a, b = _state_range(new, sign)
            lo += a * t.amounts[old]
            hi += b * t.amounts[old]
    if not lo <= 0 <= hi:
        return None
    from pymatgen.core import Composition, Element

    comp = Composition({mapping[el]: n for el, n in t.amounts.items()})
    formula = comp.reduced_formula
    fitting = [g for g in oxidation_guesses(formula)
               if all(t.signs[el] == 0 or _sign(g.get(mapping[el], 0.0)) == t.signs[el] for el in t.elements)]
    if not any(whole_and_common(g) for g in fitting):
        if fitting and rejected is not None:
            rejected[VALENCE].add(formula)
        return None
    s = t.structure.copy()
    s.replace_species({Element(old): Element(new) for old, new in mapping.items() if old != new})
    s.scale_lattice(composition_volume(comp) * len(s) / comp.num_atoms)  # predict_volume once kept
    return _Made(t, mapping, formula, _plain_formula(comp), s)


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


def fetch_systems(source: Source, systems: Iterable[str]) -> List[Candidate]:
    """Known crystals of several explicit chemical systems, in as few look-ups as the source allows."""
    systems = list(systems)
    batch = getattr(source, "fetch_systems", None)
    if batch is not None:
        return batch(systems)
    from screening.query import parse_query

    out = []
    for s in systems:
        out.extend(source.fetch(parse_query(s)))
    return out
