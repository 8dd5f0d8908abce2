"""screening.hull against pymatgen's PhaseDiagram, the oracle: the same hull energies (bit for bit with
pymatgen 2026.10.16; held to 1e-9 eV/atom here, so that another pymatgen's rounding does not fail CI), the
same phases on the hull, the same E_hull through ranking (leave-one-out, ties with hull entries, known energies)."""
import warnings

import numpy as np
import pandas as pd
import pytest

from screening.formula import element_set
from screening.hull import Hull, Phase, pymatgen_order
from screening.rank import HullTable, ReferencePhases, hull_energies, reference_name, system_hull
from tests.helpers import DATA


def diagram(refs: ReferencePhases, system, without=None):
    """pymatgen's PhaseDiagram of the same phases: the elements at 0 and PDEntry(formula, energy)."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition, Element

    entries = [PDEntry(el, 0.0) for el in sorted(system)]
    entries += [PDEntry(Composition(p.formula), p.energy, name=p.name) for p in refs.phases_within(system)
                if p.name != without]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PhaseDiagram(entries, elements=[Element(el) for el in pymatgen_order(system)])


@pytest.fixture(scope="module")
def data():
    df = pd.read_csv(DATA, usecols=["material_id", "formula", "formation_energy_per_atom"])
    return df, ReferencePhases(df.formula, df.formation_energy_per_atom, df.material_id)


def test_hull_energies_and_stable_phases_are_pymatgens(data):
    """300 chemical systems of ../shared/data and a few of the rarest sizes (1 to 8 elements): every
    formula of each, and every leave-one-out hull its references need."""
    from pymatgen.core import Composition

    df, refs = data
    members = {}
    for f, i in zip(df.formula, df.material_id):
        members.setdefault(element_set(f), []).append((f, str(i)))
    systems = sorted(members, key=sorted)
    picked = [systems[i] for i in np.random.default_rng(0).choice(len(systems), 300, replace=False)]
    picked += [s for k in (1, 6, 7, 8) for s in [s for s in systems if len(s) == k][:2]]
    assert {len(s) for s in picked} == {1, 2, 3, 4, 5, 6, 7, 8}
    points = loo = 0
    for system in picked:
        formulas = [f for f, _ in members[system]]
        names = [reference_name(i, Composition(f).reduced_formula) for f, i in members[system]]
        answer = system_hull(refs, system, formulas, names)
        want = diagram(refs, system)
        assert answer["on_hull"] == sorted(e.name for e in want.stable_entries if "|" in e.name)
        for f, (reduced, atoms, energy, ties) in answer["formulas"].items():
            comp = Composition(f)
            assert (reduced, atoms) == (comp.reduced_formula, comp.num_atoms)
            assert abs(energy - want.get_hull_energy_per_atom(comp)) <= 1e-9, (system, f)
            want_ties = [e.energy for e in want.stable_entries if e.composition.formula == comp.formula]
            assert sorted(ties) == sorted(want_ties)
            points += 1
        for name, (reduced, _, energy, _) in answer["loo"].items():
            loo_diagram = diagram(refs, system, without=name)
            assert abs(energy - loo_diagram.get_hull_energy_per_atom(Composition(reduced))) <= 1e-9
            loo += 1
    assert points > 500 and loo > 100


def test_ranking_gives_pymatgens_e_hull_with_leave_one_out_and_ties(data):
    """E_hull through hull_energies (system_hull -> HullTable) equals the phase diagrams' own
    get_decomp_and_e_above_hull: references on the hull against the hull without themselves, a
    predicted energy exactly a hull entry's (pymatgen's shortcut: 0), known energies at least 0."""
    from pymatgen.analysis.phase_diagram import PDEntry
    from pymatgen.core import Composition

    df, refs = data
    picked = df[df.formula.map(lambda f: element_set(f) <= {"Li", "Fe", "Mn", "O", "P"})].head(120)
    formulas = [Composition(f).reduced_formula for f in picked.formula] + ["Li2O", "FeO"]
    ids = list(picked.material_id) + ["new-1", "new-2"]
    known = np.r_[picked.formation_energy_per_atom.to_numpy(float), np.nan, -1.0]
    predicted = known + np.random.default_rng(0).normal(0, 0.05, len(known))
    li2o = [p for p in refs.phases_within(frozenset({"Li", "O"})) if p.formula == "Li2 O1"]
    assert li2o
    predicted[-2] = min(p.energy_per_atom for p in li2o)  # exactly the hull entry's energy
    got_pred, got_known = hull_energies(formulas, refs, predicted, known, ids)

    want_pred, want_known = np.full(len(formulas), np.nan), np.full(len(formulas), np.nan)
    for i, f in enumerate(formulas):
        system, comp = element_set(f), Composition(f)
        full = diagram(refs, system)
        name = reference_name(ids[i], comp.reduced_formula)
        is_reference = name in refs.ids
        against = diagram(refs, system, without=name) if is_reference and \
            name in {e.name for e in full.stable_entries} else full
        want_pred[i] = against.get_decomp_and_e_above_hull(PDEntry(comp, predicted[i] * comp.num_atoms),
                                                           allow_negative=True)[1]
        if np.isfinite(known[i]):
            k = full.get_decomp_and_e_above_hull(PDEntry(comp, known[i] * comp.num_atoms), allow_negative=True)[1]
            want_known[i] = max(k, 0.0) if is_reference else k
    np.testing.assert_allclose(got_pred, want_pred, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_known, want_known, rtol=0, atol=1e-9)
    assert got_pred[-2] == 0.0 and np.isfinite(got_pred).all()
    loo = HullTable({"-".join(sorted(s)): system_hull(refs, s, [f], [reference_name(i, f)])
                     for f, i, s in zip(formulas, ids, map(element_set, formulas))}).loo
    assert len(loo) >= 3  # the leave-one-out branch was taken


def test_a_hand_computed_hull():
    """Li-O with Li2O at -2.0 eV/atom and LiO2 above the Li2O-O line: hull energies by hand."""
    hull = Hull(frozenset({"Li", "O"}), [Phase.of("Li2O", -2.0, "a|Li2O"), Phase.of("LiO2", -0.9, "b|LiO2"),
                                          Phase.of("Li4O2", -1.9, "c|Li2O")])
    assert [p.name for p in hull.stable] == ["Li", "a|Li2O", "O2"] or \
        sorted(p.name for p in hull.stable) == ["Li", "O2", "a|Li2O"]
    assert hull.energy_per_atom("LiO") == pytest.approx(-1.5, abs=1e-12)  # halfway from Li2O to O
    assert hull.energy_per_atom("LiO2") == pytest.approx(-1.0, abs=1e-12)
    assert hull.energy_per_atom("Li") == 0.0 and hull.energy_per_atom("Li2O") == pytest.approx(-2.0)
    assert hull.ties("Li2O") == [pytest.approx(-6.0)] and hull.ties("Li4O2") == []
