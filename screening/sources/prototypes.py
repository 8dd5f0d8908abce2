"""The rules and templates of `source` substitution (screening/sources/substitution.py).

Templates: the 288 prototypes of the AFLOW Library of Crystallographic Prototypes
that pymatgen ships (pymatgen/analysis/prototypes/aflow_prototypes.json.gz; NaCl,
CsCl, zincblende, perovskite, spinel, rutile, ...), each with the sign of its
elements' oxidation states, and the data-mined substitutions (Hautier et al.,
Inorg. Chem. 2011; pymatgen's lambda.json) that make known crystals templates too.

Valence: a substituted composition must be charge-balanced by pymatgen's
oxidation-state guesses (Composition.oxi_state_guesses, ICSD-common states) with
cations where the template has cations and anions where it has anions, and the
states of that solution must be whole numbers and common ones
(COMMON_STATE_SHARE of the element's ICSD occurrences), so LiNd3O4 (Nd 2.33) is not made.

Geometry: a kept structure gets a volume from data (predict_volume: the mean of
per-element atomic volumes fitted on the training crystals, screening/data/geometry.json,
and pymatgen's data-mined bond-length scaling, DLSVolumePredictor), and is rejected
when two atoms sit closer than MIN_DISTANCE_FRACTION of the shortest distance of
that element pair in the training crystals (too_short).
"""
from __future__ import annotations

import functools
import gzip
import json
import os
import re
import warnings
from collections import defaultdict
from typing import Dict, Optional, Tuple

from screening.query import is_element


def _pymatgen_dir() -> str:
    import pymatgen.core  # pymatgen itself is a namespace package, with no __file__

    return os.path.dirname(os.path.dirname(pymatgen.core.__file__))


PROTOTYPE_FILE = os.path.join("analysis", "prototypes", "aflow_prototypes.json.gz")
LAMBDA_FILE = os.path.join("core", "structure_prediction", "data", "lambda.json")


# -- chemistry helpers (cached: the same formulas come up again and again) ----------

@functools.lru_cache(maxsize=None)
def state_signs(el: str) -> frozenset:
    """Signs (+1, -1) of the oxidation states pymatgen's guesser may give `el`."""
    from pymatgen.core import Element

    e = Element(el)
    states = e.icsd_oxidation_states or e.common_oxidation_states
    return frozenset((s > 0) - (s < 0) for s in states if s)


@functools.lru_cache(maxsize=None)
def state_range(el: str, sign: int) -> Tuple[int, int]:
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


def sign_of(x: float) -> int:
    return (x > 1e-8) - (x < -1e-8)


def plain_formula(comp) -> str:
    """Reduced formula without brackets or spaces (LiAg2O2, not Li(AgO)2), for ids."""
    text = comp.reduced_composition.formula.replace(" ", "")
    return re.sub(r"(?<=[A-Za-z])1(?![0-9])", "", text)


# -- templates ------------------------------------------------------------------------

class Template:
    """A structure to substitute into, with the sign of each element's oxidation state."""

    __slots__ = ("name", "structure", "elements", "amounts", "signs", "states", "shared")

    def __init__(self, name: str, structure, guess: Dict[str, float], shared: bool = False):
        self.name = name
        self.structure = structure
        comp = structure.composition.reduced_composition
        self.amounts = {el.symbol: float(n) for el, n in comp.items()}
        self.elements = tuple(sorted(self.amounts))
        self.signs = {el: sign_of(guess.get(el, 0.0)) for el in self.elements}
        self.states = {el: float(guess.get(el, 0.0)) for el in self.elements}  # the parent's oxidation states
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
                name += "." + plain_formula(s.composition)
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
def similar_elements(k: int) -> Dict[str, Tuple[str, ...]]:
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

