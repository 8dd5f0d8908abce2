"""Known polymorphs as anchors (screening/anchors.py) and thin reference systems (ReferencePhases.thin)."""
import numpy as np
import pandas as pd
import pytest

from screening.anchors import anchors_from_table, attach, shipped_anchors
from screening.rank import BELOW_KNOWN, HullTable, RankSettings, ReferencePhases, rank, system_hull
from screening.references import SHIPPED

# Li-O: Li2O on the hull at -2.0, Li2O2 on it at -1.5, LiO2 above it (-0.9 vs the hull's -1.0 there)
REFS = pd.DataFrame({"material_id": ["mp-1", "mp-2", "mp-3", "mp-4", "mp-5", "mp-6"],
                     "formula": ["Li", "O2", "Li2O", "Li2O2", "LiO2", "Li4O2"],
                     "formation_energy_per_atom": [0.0, 0.0, -2.0, -1.5, -0.9, -1.8],
                     "pred_formation_energy_per_atom": [np.nan, np.nan, -2.1, -1.45, -1.0, -1.6]})


def candidates():
    return pd.DataFrame({"id": ["c1", "c2", "c3", "c4"], "formula": ["Li2O", "Li2O", "LiO2", "Li2O"],
                         "pred_formation_energy_per_atom": [-2.3, -2.12, -1.2, -2.6],
                         "pred_formation_energy_per_atom_std": [0.05, 0.05, 0.05, 0.05],
                         "stage": ["unrelaxed", "relaxed", "unrelaxed", "known"], "flags": ["unrelaxed", "", "", ""]})


def test_the_lowest_energy_known_crystal_of_a_composition_is_the_anchor():
    anchors = anchors_from_table(REFS, ["Li2O", "LiO2", "Li3O"], on_hull=True)
    assert {f: a.id for f, a in anchors.items()} == {"Li2O": "mp-3", "LiO2": "mp-5"}  # Li4O2 is Li2O, higher


def test_anchored_e_hull_equals_the_hand_computed_value():
    refs = ReferencePhases(REFS.formula, REFS.formation_energy_per_atom, REFS.material_id)
    anchors = anchors_from_table(REFS, ["Li2O", "LiO2"], on_hull=True)
    anchors["LiO2"].on_hull = False  # (as it is in REFS)
    t = attach(candidates(), anchors)
    out = rank(t, refs, RankSettings(anchor=True, stage_std={"anchored": {"scale": 1.0, "add": 0.0}})).set_index("id")
    # c1: DFT(Li2O) + [pred(c1) - pred(Li2O)] = -2.0 + (-2.3 + 2.1) = -2.2; the hull at Li2O is -2.0
    assert out.pred_e_above_hull["c1"] == pytest.approx(-0.2)
    assert out.pred_de_vs_known["c1"] == pytest.approx(-0.2) and out.anchored["c1"]
    # c2: -2.0 + (-2.12 + 2.1) = -2.02 -> -0.02
    assert out.pred_e_above_hull["c2"] == pytest.approx(-0.02)
    # c3: DFT(LiO2) + [-1.2 + 1.0] = -1.1; the hull at LiO2 (x_O = 2/3, between Li2O2 at -1.5 and O2) is -1.0
    assert out.pred_e_above_hull["c3"] == pytest.approx(-0.1) and out.pred_de_vs_known["c3"] == pytest.approx(-0.2)
    # a known crystal is never anchored: its own prediction against the hull, -2.6 - (-2.0)
    assert out.pred_e_above_hull["c4"] == pytest.approx(-0.6) and not out.anchored["c4"]
    assert np.isnan(out.pred_de_vs_known["c4"])
    # more than 2σ (2 x 0.05) below an on-hull ground state: c1 only (c3's known crystal is above the hull)
    assert [i for i in out.index if BELOW_KNOWN in out["flags"][i]] == ["c1"]
    # without anchoring: the model's ΔEf alone, -2.3 - (-2.0); still flagged (-0.3 below the known crystal)
    plain = rank(t, refs, RankSettings(anchor=False)).set_index("id")
    assert plain.pred_e_above_hull["c1"] == pytest.approx(-0.3) and not plain.anchored.any()
    assert plain.pred_de_vs_known["c1"] == pytest.approx(-0.2)


def test_the_shipped_table_anchors_the_bundled_model():
    """The shipped predictions are the bundled model's (a retrained model must rebuild the table)."""
    from screening.ensemble import load_model
    from screening.model_info import default_model_path

    model_hash = load_model(default_model_path()).hash
    anchors, why = shipped_anchors(SHIPPED, model_hash, ["LiTlO2", "Li2O", "NotAFormula"])
    assert why == "shipped" and set(anchors) == {"LiTlO2", "Li2O"}
    assert all(np.isfinite(a.pred) and abs(a.pred - a.dft) < 0.5 for a in anchors.values())
    assert shipped_anchors(SHIPPED, "another model", ["Li2O"])[0] == {}


def test_sub_systems_without_reference_phases_are_named_thin():
    refs = ReferencePhases(["Li", "Tl", "O", "Li2O", "Tl2O3", "LiTlO2"], [0, 0, 0, -2.0, -1.2, -1.6],
                           ["a", "b", "c", "d", "e", "f"])
    assert refs.thin(frozenset({"Li", "Tl", "O"})) == ["Li-Tl"]  # its own system (LiTlO2) is not a sub-system
    assert refs.thin(frozenset({"Li", "O"})) == []
    answer = system_hull(refs, frozenset({"Li", "Tl", "O"}), ["LiTlO2"])
    assert HullTable({"Li-O-Tl": answer}).thin == {"Li-O-Tl": ["Li-Tl"]}


def test_the_funnel_shift_moves_only_the_unrelaxed_candidates():
    from workflows.run.funnel import unrelaxed_shift

    refs = ReferencePhases(REFS.formula, REFS.formation_energy_per_atom, REFS.material_id)
    t = candidates()
    base = rank(t, refs, RankSettings(anchor=False)).set_index("id")
    moved = rank(t, refs, RankSettings(anchor=False, unrelaxed_shift=0.15)).set_index("id")
    assert (moved.pred_e_above_hull - base.pred_e_above_hull).to_dict() == pytest.approx(
        {"c1": 0.15, "c2": 0.0, "c3": 0.15, "c4": 0.0})
    # the shift is the median of what relaxing did to the relaxed candidates, once there are five
    table = pd.DataFrame({"stage": ["relaxed"] * 5 + ["unrelaxed"],
                          "pred_formation_energy_per_atom": [-1.0, -1.1, -0.5, -2.0, -0.7, -3.0],
                          "pred_formation_energy_per_atom_unrelaxed": [-1.2, -1.2, -0.9, -2.1, -0.8, None]})
    assert unrelaxed_shift(table) == pytest.approx(0.1)
    assert unrelaxed_shift(table.iloc[1:]) is None
    lower = table.assign(pred_formation_energy_per_atom=table.pred_formation_energy_per_atom - 0.5)
    assert unrelaxed_shift(lower) == 0.0  # relaxing lowered them: the others are not moved down
