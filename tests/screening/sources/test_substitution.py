"""`source` substitution: hypothetical crystals from the AFLOW prototypes and known templates."""
import itertools
from collections import defaultdict

import pytest

from screening.errors import ScreenError
from screening.featurize import check_structure
from screening.query import parse_query
from screening.sources import open_source
from screening.sources.substitution import CANDIDATE_ELEMENTS, SubstitutionSource
from tests.helpers import DATA
from tests.screening.sources.common import assert_same_structure, elements_of


def assert_sensible(cands, query):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    q = parse_query(query)
    assert cands and len({c.id for c in cands}) == len(cands)
    groups = defaultdict(list)
    for c in cands:
        comp = c.structure.composition
        assert q.matches({el.symbol for el in comp.elements}, comp.reduced_formula), c.id
        assert c.formula == comp.reduced_formula and c.source.startswith("substitution") and c.known == {}
        assert c.id.startswith("sub-")
        assert comp.oxi_state_guesses(max_sites=-1), f"{c.id} is not charge-balanced"
        check_structure(c.structure, c.id)
        assert 5 < c.structure.volume / len(c.structure) < 60  # A^3/atom: rescaled, not absurd
        groups[c.formula].append(c)
    return groups, StructureMatcher()


def test_substitution_na_cl_is_charge_balanced_and_unique():
    cands = open_source("substitution").fetch("Na-Cl")
    groups, matcher = assert_sensible(cands, "Na-Cl")
    assert set(groups) == {"NaCl"}
    for a, b in itertools.combinations(cands, 2):
        assert not matcher.fit(a.structure, b.structure), (a.id, b.id)
    rs = next(c.structure for c in cands if c.id == "sub-AB_cF8_225_a_b-NaCl-1")  # rocksalt
    other = [i for i, site in enumerate(rs) if site.specie != rs[0].specie]
    assert min(rs.get_distance(0, i) for i in other) == pytest.approx(2.82, rel=0.05)  # Na-Cl in real NaCl


def test_substitution_li_x_o(monkeypatch):
    src = SubstitutionSource()
    cands = src.fetch("Li-*-O")
    groups, matcher = assert_sensible(cands, "Li-*-O")
    third = {next(iter(elements_of(f) - {"Li", "O"})) for f in groups}
    assert third <= set(CANDIDATE_ELEMENTS) and {"Fe", "Co", "Ti", "Al"} <= third
    assert len(cands) > 500
    for f, group in groups.items():  # every pair with the same formula (~3,600 fits, ~9 s)
        for a, b in itertools.combinations(group, 2):
            assert not matcher.fit(a.structure, b.structure), (a.id, b.id)
    # ids do not depend on the query: the Li-Fe-O ones are a subset, same structures
    fe = {c.id: c for c in src.fetch("Li-Fe-O")}
    sub = {c.id: c for c in cands if elements_of(c.formula) == {"Li", "Fe", "O"}}
    assert fe.keys() == sub.keys() and fe
    for k in fe:
        assert_same_structure(fe[k].structure, sub[k].structure)
    assert [c.id for c in src.fetch(parse_query("Li-*-O", exclude=["Fe"]))] == \
        [c.id for c in cands if "Fe" not in elements_of(c.formula)]


def test_substitution_with_known_templates(mp_dev_source):
    src = SubstitutionSource(base=mp_dev_source)
    cands = src.fetch("Li-Fe-O")
    groups, matcher = assert_sensible(cands, "Li-Fe-O")
    from_known = [c for c in cands if c.id.startswith("sub-mp-")]
    assert from_known and len(cands) > len(SubstitutionSource().fetch("Li-Fe-O"))
    known = defaultdict(list)
    for k in mp_dev_source.fetch("Li-Fe-O"):
        known[k.formula].append(k.structure)
    for c in cands:  # nothing already known comes back as "hypothetical"
        assert not any(matcher.fit(c.structure, k) for k in known[c.formula]), c.id
    assert src.name == f"substitution:local:{DATA.resolve()}"
    assert src.describe().endswith(f"templates=[{mp_dev_source.describe()}]")


def test_substitution_refuses_ids_and_has_stable_describe():
    src = SubstitutionSource()
    with pytest.raises(ScreenError, match="material ids name known crystals"):
        src.fetch("mp-1")
    assert src.describe() == SubstitutionSource().describe()
    assert src.describe() != SubstitutionSource(elements=["Fe", "Co"]).describe()
    assert src.fetch("Li-*-*-*-*-*-O") == []  # no prototype has seven elements
