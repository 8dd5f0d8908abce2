import numpy as np
import pandas as pd
import pytest

from screening.errors import ScreenError
from screening.rank import HullTable, RankSettings, ReferencePhases, energy_above_hull, rank, reference_name, system_hull
from screening.formula import element_set
from screening.hull import composition
from tests.helpers import DATA


@pytest.fixture
def refs():
    # Li2O (-2.0 eV/atom) and the elements: the Li-O hull
    return ReferencePhases(["Li2O", "LiO8"], [-2.0, float("nan")])  # NaN rows are ignored


def test_energy_above_hull_matches_hand_computation(refs):
    # LiO (50% O): hull between Li2O (33% O, -2.0) and O (100%, 0): at x_O=0.5 the hull is
    # -2.0 * (1 - 0.5) / (1 - 1/3) = -1.5 eV/atom
    e = energy_above_hull(["LiO", "Li2O", "LiO"], np.array([-1.2, -2.1, -1.6]), refs)
    np.testing.assert_allclose(e, [0.3, -0.1, -0.1], atol=1e-9)
    # a system with no known phases: the elements alone, so E_hull = dEf where dEf > 0
    np.testing.assert_allclose(energy_above_hull(["NaCl"], np.array([0.2]), refs), [0.2])


def table():
    return pd.DataFrame({
        "id": ["a", "b", "c", "d"], "formula": ["LiO", "Li2O", "LiO2", "Li3O"],
        "pred_formation_energy_per_atom": [-1.2, -2.1, -0.9, -1.0],
        "pred_band_gap": [0.0, 4.0, 1.0, 0.02],
    })


def test_rank_sorts_classifies_and_filters(refs):
    t = rank(table(), refs)
    assert t.id.tolist()[0] == "b" and t["rank"].tolist() == [1, 2, 3, 4]
    assert np.all(np.diff(t.pred_e_above_hull) >= 0)
    assert dict(zip(t.id, t.pred_class)) == {"a": "metal", "b": "non-metal", "c": "non-metal", "d": "metal"}
    assert set(rank(table(), refs, RankSettings(nonmetal=True)).id) == {"b", "c"}
    assert set(rank(table(), refs, RankSettings(gap_min=0.5, gap_max=2.0)).id) == {"c"}
    assert set(rank(table(), refs, RankSettings(gap_threshold=0.01)).query("pred_class == 'metal'").id) == {"a"}
    assert rank(table(), refs, RankSettings(ehull_max=0.0)).id.tolist() == ["b"]
    assert rank(table(), refs, RankSettings(top=2)).id.tolist() == t.id.tolist()[:2]


def test_contradictory_gap_filters_are_an_error(refs):
    with pytest.raises(ScreenError, match="`gap_min` 2.0 is above `gap_max` 1.0"):
        rank(table(), refs, RankSettings(gap_min=2.0, gap_max=1.0))


def test_p_stable_matches_the_normal_cdf_by_hand():
    from screening.rank import p_stable

    # mean -0.05, std 0.05: z = 1, Phi(1) = 0.841345; mean 0.1, std 0.05: z = -2, Phi(-2) = 0.022750
    np.testing.assert_allclose(p_stable([-0.05, 0.1], [0.05, 0.05], 0.0), [0.841345, 0.022750], atol=1e-6)
    np.testing.assert_allclose(p_stable([0.1], [0.05], within=0.05), [0.158655], atol=1e-6)  # z = -1
    # no error bar: a step at the line
    assert p_stable([-0.01, 0.0, 0.01, np.nan], [0, 0, 0, 0]).tolist()[:3] == [1.0, 0.5, 0.0]


def test_ranking_by_p_stable_prefers_a_confident_candidate(refs):
    t = table()
    # b is far below the hull but the members disagree wildly; a is just above it, confidently
    t["pred_formation_energy_per_atom"] = [-1.55, -2.3, -0.9, -1.0]  # E_hull: a -0.05, b -0.3
    t["pred_formation_energy_per_atom_std"] = [0.01, 2.0, 0.01, 0.01]
    by_p = rank(t, refs)
    assert by_p.id.tolist()[:2] == ["a", "b"]
    np.testing.assert_allclose(by_p.pred_e_above_hull_std, by_p.pred_formation_energy_per_atom_std)
    assert by_p.pred_p_stable.iloc[0] == pytest.approx(1.0, abs=1e-6)  # z = 5
    assert by_p.pred_p_stable.iloc[1] == pytest.approx(0.5596, abs=1e-3)  # z = 0.15
    by_mean = rank(t, refs, RankSettings(rank_by="e_above_hull"))
    assert by_mean.id.tolist()[:2] == ["b", "a"]
    with pytest.raises(ScreenError, match="`rank_by` luck"):
        rank(t, refs, RankSettings(rank_by="luck"))


def test_unrelaxed_candidates_get_the_structure_error_added_to_their_std(refs):
    t = table()
    t["pred_formation_energy_per_atom"] = [-1.55, -1.55, -0.9, -1.0]  # a and b: E_hull -0.05
    t["formula"] = ["LiO", "LiO", "LiO2", "Li3O"]
    t["pred_formation_energy_per_atom_std"] = [0.03, 0.03, 0.01, 0.01]
    t["flags"] = ["", "Xe in 3 training crystals; unrelaxed", "", ""]
    plain = rank(t, refs).set_index("id")
    assert plain.pred_e_above_hull_std["b"] == pytest.approx(0.03)  # off: nothing added
    ranked = rank(t, refs, RankSettings(unrelaxed_std=0.04)).set_index("id")
    assert ranked.pred_e_above_hull_std["a"] == pytest.approx(0.03)
    assert ranked.pred_e_above_hull_std["b"] == pytest.approx(0.05)  # hypot(0.03, 0.04)
    # same mean, wider error bar: b is less probably stable, and ranks below a
    assert ranked.pred_p_stable["a"] == pytest.approx(0.952210, abs=1e-5)  # Phi(0.05 / 0.03)
    assert ranked.pred_p_stable["b"] == pytest.approx(0.841345, abs=1e-5)  # Phi(0.05 / 0.05)
    assert ranked.index.tolist()[:2] == ["a", "b"]


def test_known_crystals_are_ranked_against_the_hull_without_their_own_entry():
    """A (barely stable) is under-estimated by 0.2; B (deeply stable) is predicted exactly.

    Against a hull that holds their own DFT energies, A would come out at -0.2 and B at 0.0,
    so A would rank first on its own error alone. Leave-one-out measures each against its
    competitors: A at -0.05 - 0.2 = -0.25, B at -0.5, and B ranks first.
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    # Li-O: LiO2 (A) just below the line from Li2O to O; Li-Cl: LiCl (B) far below the elements
    hull_at_lio2 = -2.0 * (1 - 2 / 3) / (1 - 1 / 3)  # on the Li2O-O line at x_O = 2/3: -1.0
    dft_a = hull_at_lio2 - 0.05
    refs = ReferencePhases(["Li2O", "LiO2", "LiCl"], [-2.0, dft_a, -0.5], ids=["mp-li2o", "A", "B"])
    t = pd.DataFrame({"id": ["A", "B"], "formula": ["LiO2", "LiCl"],
                      "pred_formation_energy_per_atom": [dft_a - 0.2, -0.5], "pred_band_gap": [1.0, 5.0],
                      "dft_formation_energy_per_atom": [dft_a, -0.5]})
    ranked = rank(t, refs, RankSettings(rank_by="e_above_hull"))
    assert ranked.id.tolist() == ["B", "A"]
    got = dict(zip(ranked.id, ranked.pred_e_above_hull))
    assert got["A"] == pytest.approx(-0.25, abs=1e-9) and got["B"] == pytest.approx(-0.5, abs=1e-9)
    # DFT E_hull: pymatgen's, from the same entries (own entry included): both on the hull
    entries = [PDEntry(Composition(el), 0.0) for el in ("Li", "O")] + [
        PDEntry(Composition("Li2O"), -2.0 * 3), PDEntry(Composition("LiO2"), dft_a * 3)]
    expected = PhaseDiagram(entries).get_e_above_hull(entries[-1])
    assert dict(zip(ranked.id, ranked.dft_e_above_hull))["A"] == pytest.approx(expected, abs=1e-9) == 0.0
    # a candidate that is not a reference (hypothetical) is measured against the full hull
    hypo = energy_above_hull(["LiO2"], np.array([dft_a - 0.2]), refs, ids=["new-1"])
    assert hypo[0] == pytest.approx(-0.2, abs=1e-9)
    # an id that names another formula among the references is not the candidate's own entry
    other = energy_above_hull(["LiO2"], np.array([dft_a - 0.2]), refs, ids=["mp-li2o"])
    assert other[0] == pytest.approx(-0.2, abs=1e-9)


def test_new_only_keeps_what_the_source_calls_neither_stable_nor_known_and_its_e_hull_stands(refs):
    t = table().assign(dft_formation_energy_per_atom=[-1.0, -2.0, -0.8, -0.9],
                       dft_e_above_hull=[0.123, 0.0, 0.456, float("nan")],  # the source's (MP's) own values
                       dft_is_stable=[False, True, False, False],
                       experimental=[False, True, True, None])  # d: the source does not say
    everything = rank(t, refs)
    assert dict(zip(everything.id, everything.dft_e_above_hull.fillna(-1))) == \
        {"a": 0.123, "b": 0.0, "c": 0.456, "d": -1}  # not recomputed from the formation energies
    assert rank(t, refs, RankSettings(new_only=True)).id.tolist() == ["a"]
    with pytest.raises(ScreenError, match="`new_only`: this source does not say"):
        rank(table(), refs, RankSettings(new_only=True))



def test_rank_gives_the_same_table_from_reference_phases_and_from_their_hull_table():
    """rank() asks both for e_above_hull: the phases build hulls now, the table reads system_hull's
    answers (as a run caches them); the ranked tables are the same, number for number."""
    import re

    df = pd.read_csv(DATA, usecols=["material_id", "formula", "formation_energy_per_atom"])
    within = df.formula.map(lambda f: set(re.findall(r"[A-Z][a-z]?", f)) <= {"Li", "Fe", "Mn", "O"})
    df = df[within].reset_index(drop=True)
    refs = ReferencePhases(df.formula, df.formation_energy_per_atom, df.material_id)
    rng = np.random.default_rng(0)
    known = df[df.formula.map(lambda f: len(set(re.findall(r"[A-Z][a-z]?", f))) == 3)].head(40)
    t = pd.DataFrame({"id": list(known.material_id) + ["new-1", "new-2"],
                      "formula": list(known.formula) + ["Li2FeO3", "LiMnO2"],
                      "dft_formation_energy_per_atom": list(known.formation_energy_per_atom) + [np.nan, np.nan]})
    t["pred_formation_energy_per_atom"] = t.dft_formation_energy_per_atom.fillna(-1.8) + rng.normal(0, 0.05, len(t))
    t["pred_formation_energy_per_atom_std"] = rng.uniform(0.01, 0.1, len(t))
    t["pred_band_gap"] = rng.uniform(0, 3, len(t))
    systems = {}  # as a run asks for them: per chemical system, its formulas and the names of its references
    for f, i in zip(t.formula, t.id):
        formulas, names = systems.setdefault(element_set(f), ([], []))
        formulas.append(f)
        names.append(reference_name(i, composition(f).reduced_formula))
    table = HullTable({"-".join(sorted(s)): system_hull(refs, s, fs, names) for s, (fs, names) in systems.items()})
    assert table.loo  # known crystals on the hull: the leave-one-out answers are read too
    from_phases, from_table = rank(t, refs), rank(t, table)
    assert len(from_phases) == len(t) and np.isfinite(from_phases.pred_e_above_hull).all()
    pd.testing.assert_frame_equal(from_phases, from_table, check_exact=True)
