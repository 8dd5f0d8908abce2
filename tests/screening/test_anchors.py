"""Known polymorphs as anchors (screening/anchors.py) and thin reference systems (ReferencePhases.thin)."""
import numpy as np
import pandas as pd
import pytest

from screening.anchors import anchored_formation_energy, anchors_from_table, attach, shipped_anchors
from screening.rank import ANCHOR_DFT, ANCHOR_PRED, BELOW_KNOWN, HullTable, RankSettings, ReferencePhases, rank, system_hull
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
    """The bias-cancelled estimate that benchmarks/rediscovery.py scores (runs do not use it)."""
    refs = ReferencePhases(REFS.formula, REFS.formation_energy_per_atom, REFS.material_id)
    t = attach(candidates(), anchors_from_table(REFS, ["Li2O", "LiO2"], on_hull=True))
    ef = anchored_formation_energy(t[ANCHOR_DFT], t[ANCHOR_PRED], t.pred_formation_energy_per_atom)
    e_hull, _ = refs.e_above_hull(t.formula.tolist(), ef)
    # c1: DFT(Li2O) + [pred(c1) - pred(Li2O)] = -2.0 + (-2.3 + 2.1) = -2.2; the hull at Li2O is -2.0
    # c2: -2.0 + (-2.12 + 2.1) = -2.02; c3: DFT(LiO2) + [-1.2 + 1.0] = -1.1, and the hull at LiO2
    # (x_O = 2/3, between Li2O2 at -1.5 and O2) is -1.0; c4 is a known crystal: no anchor
    assert ef[:3] == pytest.approx([-2.2, -2.02, -1.1])
    assert e_hull[:3] == pytest.approx([-0.2, -0.02, -0.1]) and np.isnan(e_hull[3])


def test_a_run_measures_e_hull_from_the_models_own_energy_and_flags_candidates_below_a_known_ground_state():
    refs = ReferencePhases(REFS.formula, REFS.formation_energy_per_atom, REFS.material_id)
    anchors = anchors_from_table(REFS, ["Li2O", "LiO2"], on_hull=True)
    anchors["LiO2"].on_hull = False  # (as it is in REFS)
    out = rank(attach(candidates(), anchors), refs, RankSettings()).set_index("id")
    # the model's ΔEf against the hull: c1 -2.3 - (-2.0), c2 -2.12 - (-2.0), c4 (known) -2.6 - (-2.0)
    assert out.pred_e_above_hull[["c1", "c2", "c4"]].tolist() == pytest.approx([-0.3, -0.12, -0.6])
    assert out.pred_de_vs_known[["c1", "c2", "c3"]].tolist() == pytest.approx([-0.2, -0.02, -0.2])
    assert np.isnan(out.pred_de_vs_known["c4"])  # a known crystal has no anchor
    # more than 2σ (2 x 0.05) below an on-hull ground state: c1 (-0.3) and c2 (-0.12); c3's known crystal
    # is above the hull, c4 is itself known
    assert sorted(i for i in out.index if BELOW_KNOWN in out["flags"][i]) == ["c1", "c2"]


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


def test_a_thin_sub_system_is_probed_and_only_the_candidates_whose_hull_it_lowers_are_flagged():
    from screening.thin import PROBE_ENERGY, hull_drops
    from workflows.run.hull_checks import THIN, THIN_DROP, flag_thin

    # Li-Mo-O with Li2O at -2.0 eV/atom and no Li-Mo phase: Li-Mo is probed with metal phases at -0.9
    refs = ReferencePhases(["Li2O", "MoO3"], [-2.0, -1.5], ["a", "b"])
    system = frozenset({"Li", "Mo", "O"})
    assert PROBE_ENERGY["metals"] == -0.9 and refs.thin(system) == ["Li-Mo"]
    drops = hull_drops(refs.hull(system), ["Li-Mo"], ["LiMo", "Li2MoO4", "Li3MoO", "Li2O"])
    # LiMo: the probe itself, 0.9 below the elements. Li3MoO: Li2O + Mo + Li at -6.0 eV / 5 atoms = -1.2
    # falls to Li2O + LiMo at (-6.0 - 1.8) / 5 = -1.56, a drop of 0.36. Li2MoO4 is Li2O + MoO3, every
    # metal atom bound to oxygen already, and Li2O is its own hull: no drop
    assert drops == pytest.approx({"LiMo": 0.9, "Li3MoO": 0.36})
    table = pd.DataFrame({"formula": ["LiMo", "Li2MoO4", "Li3MoO"], "flags": ["", "unrelaxed", ""]})
    out = flag_thin(table, {"Li-Mo-O": ["Li-Mo"]}, drops)
    assert out[THIN_DROP].tolist() == pytest.approx([0.9, 0.0, 0.36])
    assert out["flags"].tolist() == [THIN, "unrelaxed", THIN]
    answer = system_hull(refs, system, ["LiMo", "Li2MoO4", "Li3MoO"])
    assert HullTable({"Li-Mo-O": answer}).thin_drop == pytest.approx({"LiMo": 0.9, "Li3MoO": 0.36})





def test_probes_at_1_or_3_atoms_per_element_make_the_hull_of_probes_at_every_composition_of_1_to_3():
    from itertools import product
    from math import gcd

    from screening.hull import Hull, Phase, composition
    from screening.thin import PROBE_ENERGY, probes

    sub = ["Li", "Mo", "Ni"]
    made = probes(sub)
    assert sorted(p.formula for p in made) == sorted(
        composition("".join(f"{el}{n}" for el, n in zip(sub, c))).formula
        for c in product((1, 3), repeat=3) if gcd(*c) == 1)
    assert len(made) == 7 and {p.energy_per_atom for p in made} == {PROBE_ENERGY["metals"]}
    every = ["".join(f"{el}{n}" for el, n in zip(sub, c)) for c in product((1, 2, 3), repeat=3) if gcd(*c) == 1]
    system = frozenset(sub)
    full = Hull(system, [Phase.of(f, PROBE_ENERGY["metals"]) for f in every])
    assert [Hull(system, made).energy_per_atom(f) for f in every] == pytest.approx(
        [full.energy_per_atom(f) for f in every], abs=1e-12)


def test_the_probed_hull_is_the_hull_of_the_reference_phases_and_the_probes():
    from screening.hull import Hull
    from screening.thin import hull_drops, probes

    # Li-Mo-Ni-O with oxides and one Mo-Ni phase: Li-Mo, Li-Ni and Li-Mo-Ni are thin (metals: -0.9)
    refs = ReferencePhases(["Li2O", "MoO3", "NiO", "MoNi4", "Li2MoO4", "LiNiO2", "NiMoO4"],
                           [-2.0, -1.5, -1.2, -0.1, -2.2, -1.6, -1.6], list("abcdefg"))
    system = frozenset({"Li", "Mo", "Ni", "O"})
    hull, thin = refs.hull(system), refs.thin(system)
    assert thin == ["Li-Mo", "Li-Ni", "Li-Mo-Ni"]
    formulas = ["LiNiMoO4", "Li2NiMo3O7", "LiNi2MoO4", "Li3NiMo", "LiNiO2", "Li2MoO4", "LiNi4Mo", "Li2O"]
    probed = Hull(system, list(hull.phases) + [p for sub in thin for p in probes(sub.split("-"))])
    expect = {f: round(hull.energy_per_atom(f) - probed.energy_per_atom(f), 4) for f in formulas}
    assert sum(d > 0.025 for d in expect.values()) >= 3 and min(expect.values()) == 0
    assert hull_drops(hull, thin, formulas) == pytest.approx({f: d for f, d in expect.items() if d > 0}, abs=1e-4)
    # references whose elemental phase lies below 0 (another code's energies): the probed hull keeps it.
    # Li7Mo: the hull is 7/8 of Li's -0.1; probed, half Li and half the Li3Mo probe: -0.5
    refs = ReferencePhases(["Li", "Li2O", "MoO3"], [-0.1, -2.0, -1.5], ["x", "a", "b"])
    assert hull_drops(refs.hull(frozenset({"Li", "Mo", "O"})), ["Li-Mo"], ["Li7Mo"]) == pytest.approx({"Li7Mo": 0.4125})
    # beyond QHULL_UP_TO elements the probed hull is a linear program: the same energies
    from screening.hull import Phase, pymatgen_order
    from screening.thin import QHULL_UP_TO, probed_energy

    system = frozenset({"Li", "Na", "K", "Mo", "Ni", "O"})
    known = (("Li2O", -2.0), ("MoO3", -1.5), ("NiO", -1.2), ("Na2O", -1.4), ("K2O", -1.2), ("KNiO2", -1.5))
    phases = [Phase.of(f, e) for f, e in known] + probes(["Li", "Mo"]) + probes(["K", "Na", "Ni"])
    assert len(system) > QHULL_UP_TO
    formulas = ["LiNaKMoNiO6", "Li3KMo", "NaKNi2O", "K2NiO2", "LiNaK3Ni2Mo2O9", "Li2O", "LiMo3"]
    assert [probed_energy(pymatgen_order(system), phases)(f) for f in formulas] == pytest.approx(
        [Hull(system, phases).energy_per_atom(f) for f in formulas], abs=1e-9)

def test_cached_hull_answers_get_their_thin_drops_however_old_and_however_extended():
    """Hull answers live in the cache as JSON (cache/hull_cache.py): an answer from before thin systems
    were probed is computed again, and one extended with new formulas has the drops of old and new."""
    import json

    from workflows.run.hulls import _lacks

    refs = ReferencePhases(["Li2O", "MoO3"], [-2.0, -1.5], ["a", "b"])
    system, every = frozenset({"Li", "Mo", "O"}), {"LiMo": 0.9, "Li3MoO": 0.36}
    cached = json.loads(json.dumps(system_hull(refs, system, ["LiMo", "Li2MoO4"])))
    assert cached["thin_drop"] == {"LiMo": 0.9} and not _lacks(cached, [("LiMo", None), ("Li2MoO4", None)])
    old = {k: v for k, v in cached.items() if k != "thin_drop"}  # as the version before probing wrote it
    assert _lacks(old, [("LiMo", None)]) and _lacks(cached, [("Li3MoO", None)])
    for have in (old, cached):
        answer = json.loads(json.dumps(system_hull(refs, system, ["Li3MoO"], (), json.loads(json.dumps(have)))))
        assert answer["thin_drop"] == pytest.approx(every) and set(answer["formulas"]) == {"LiMo", "Li2MoO4", "Li3MoO"}
        assert HullTable({"Li-Mo-O": answer}).thin_drop == pytest.approx(every)

def test_the_thin_note_says_what_was_probed_and_how_many_candidates_it_flags():
    from workflows.run.hull_checks import thin_note

    one = thin_note({"Li-Mo-O": ["Li-Mo"]}, 3, 15)
    assert one.startswith("thin reference systems: Li-Mo has no reference phase; with phases there as stable as the "
                          "most stable 5 % of known systems of their kind (-0.9 eV/atom between metals, -3.5 with a "
                          "nonmetal), the hull would fall by more than 0.025 eV/atom under 3 of the 15 candidates, ")
    assert one.endswith("flagged thin_references (--reference adds phases)")
    several = thin_note({"Li-Mo-O": ["Li-Mo"], "Li-O-Tl": ["Li-Tl", "O-Tl"]}, 0, 15)
    assert several.startswith("thin reference systems: Li-Mo, Li-Tl, O-Tl have no reference phase; ")
    # none flagged: said so, not "under 0 candidates, flagged"
    assert "at most 0.025 eV/atom under every candidate (thin_hull_drop): none is flagged thin_references" in several
    assert "under 0" not in several and thin_note({}, 0, 15) is None

def test_the_funnel_shift_moves_only_the_unrelaxed_candidates():
    from workflows.run.funnel import unrelaxed_shift

    refs = ReferencePhases(REFS.formula, REFS.formation_energy_per_atom, REFS.material_id)
    t = candidates()
    base = rank(t, refs, RankSettings()).set_index("id")
    moved = rank(t, refs, RankSettings(unrelaxed_shift=0.15)).set_index("id")
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
