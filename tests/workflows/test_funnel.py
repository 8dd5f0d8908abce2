"""The funnel (workflows/run/funnel.py) and reference coverage on an in-process Dask cluster: real
substitution candidates, real CHGNet relaxations, real hulls, a real (tiny) two-member ensemble."""
import gzip
import json

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure

from screening.featurize import featurize
from screening.formula import element_set
from screening.rank import ReferencePhases
from screening.thin import DROP_TOLERANCE, hull_drops
from tests.helpers import DATA, tiny_ensemble
from workflows.run.options import PipelineSettings
from workflows.run.pipeline import run_screening

pytestmark = pytest.mark.slow

STAGE_STD = {"unrelaxed": {"scale": 2.0, "add": 0.1}, "relaxed": {"scale": 1.5, "add": 0.03},
             "fitted_on": "test_funnel"}


@pytest.fixture(scope="module")
def client(inprocess_client):
    return inprocess_client


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """Two tiny members, with per-stage error terms in the manifest."""
    return tiny_ensemble(tmp_path_factory.mktemp("ensemble"), meta={"stage_std": STAGE_STD})


def run(client, tmp_path, model, out, **kw):
    opts = PipelineSettings(query="Na-Cl", source="substitution", model=model, device="cpu",
                            cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / out), **kw)
    return run_screening(client, opts)


def test_funnel_relaxes_exactly_the_top_k_and_ranks_them_by_their_relaxed_predictions(client, ensemble, tmp_path):
    from screening.ensemble import load_model

    before = run(client, tmp_path, ensemble, "none", relax="none").table.set_index("id")
    assert (before.stage == "unrelaxed").all() and before["flags"].str.contains("unrelaxed").all()
    top2 = list(before.index[:2])

    first = run(client, tmp_path, ensemble, "top", relax_top=2)
    t, s = first.table.set_index("id"), first.summary
    assert sorted(t.index[t.stage == "relaxed"]) == sorted(top2)
    assert s["relaxed"] == 2 and s["relax_cached"] == 0 and s["relax_top"] == 2
    assert s["stages"] == {"known": 0, "unrelaxed": len(t) - 2, "relaxed": 2}
    assert set(s["stage_seconds"]) >= {"relax_top", "rank_relaxed"}

    # what was predicted for them is their relaxed structure (relaxed.jsonl.gz), by the same model
    lines = [json.loads(x) for x in gzip.decompress(open(first.files["relaxed"], "rb").read()).splitlines()]
    assert sorted(x["id"] for x in lines) == sorted(top2)
    model = load_model(ensemble)
    structures = [Structure.from_dict(x["structure"]) for x in lines]
    mean, std = model.predict_graphs([featurize(x, model.featurizer) for x in structures])
    col = model.outputs.index("formation_energy_per_atom")
    for x, m, sd in zip(lines, mean[:, col], std[:, col]):
        row = t.loc[x["id"]]
        assert row.pred_formation_energy_per_atom == pytest.approx(float(m), abs=1e-5)
        assert row.structure_key == x["structure_key"] != row.unrelaxed_structure_key
        assert "unrelaxed" not in row["flags"]
        # the same hull, so E_hull moves with ΔEf exactly
        assert row.pred_e_above_hull - before.pred_e_above_hull[x["id"]] == pytest.approx(
            row.pred_formation_energy_per_atom - before.pred_formation_energy_per_atom[x["id"]], abs=1e-6)
        # the relaxed stage's σ terms from the manifest
        assert row.pred_e_above_hull_std == pytest.approx(np.hypot(1.5 * float(sd), 0.03), rel=1e-4)
    # and ranked with everyone else by them: P(stable) down, then E_hull up
    p, e = first.table.pred_p_stable.to_numpy(), first.table.pred_e_above_hull.to_numpy()
    assert all(p[i] > p[i + 1] or (p[i] == p[i + 1] and e[i] <= e[i + 1]) for i in range(len(p) - 1))
    rest = t[t.stage == "unrelaxed"]
    assert np.allclose(rest.pred_e_above_hull_std, np.hypot(2.0 * rest.pred_formation_energy_per_atom_std, 0.1))
    assert rest.pred_formation_energy_per_atom.to_dict() == pytest.approx(
        before.pred_formation_energy_per_atom[rest.index].to_dict())

    warm = run(client, tmp_path, ensemble, "warm", relax_top=2)
    assert warm.summary["relax_cached"] == 2 and warm.summary["relaxed"] == 2 and warm.summary["relax_inferred"] == 0
    w = warm.table.set_index("id")
    assert w.pred_formation_energy_per_atom.to_dict() == pytest.approx(t.pred_formation_energy_per_atom.to_dict())
    assert list(warm.table.id) == list(first.table.id)


def test_thin_reference_systems_are_named_and_the_candidates_whose_hull_they_lower_flagged(client, ensemble, tmp_path):
    df = pd.read_csv(DATA, usecols=["material_id", "formula", "formation_energy_per_atom"])
    everything = {frozenset(s) for s in ({"Li"}, {"Tl"}, {"O"}, {"Li", "O"}, {"Tl", "O"}, {"Li", "Tl"},
                                         {"Li", "Tl", "O"})}

    def run_without(sub, name):
        refs = df[df.formula.map(lambda f: element_set(f) in everything - {sub})]
        refs.to_csv(tmp_path / f"{name}.csv", index=False)
        r = run_screening(client, PipelineSettings(query="Li-Tl-O", source="substitution", model=ensemble, device="cpu",
                                                   reference=f"local:{tmp_path / name}.csv", relax="none",
                                                   cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / name)))
        return r, ReferencePhases(refs.formula, refs.formation_energy_per_atom, refs.material_id)

    for sub, name in ((frozenset({"Li", "Tl"}), "Li-Tl"), (frozenset({"O", "Tl"}), "O-Tl")):
        r, phases = run_without(sub, name)
        assert r.summary["thin_systems"] == {"Li-O-Tl": [name]}
        assert f"thin reference systems: {name}" in r.summary["thin_note"]
        # each candidate's hull drop with the sub-system probed, as screening/thin.py computes it
        drops = hull_drops(phases.hull(frozenset({"Li", "Tl", "O"})), [name], set(r.table.formula))
        assert r.table.thin_hull_drop.tolist() == pytest.approx([drops.get(f, 0.0) for f in r.table.formula], abs=1e-4)
        flagged = r.table["flags"].str.contains("thin_references")
        assert flagged.tolist() == (r.table.thin_hull_drop > DROP_TOLERANCE).tolist()
        assert r.summary["flag_counts"].get("thin_references", 0) == flagged.sum()
        assert (f"under {flagged.sum()} of the {len(r.table)} candidates" if flagged.sum()
                else "none is flagged thin_references") in r.summary["thin_note"]
        # a Li-Tl intermetallic would not reach these oxides' hull; a Tl oxide would, under every one
        assert flagged.sum() == (0 if name == "Li-Tl" else len(r.table))
    full, _ = run_without(frozenset(), "full")  # nothing is thin
    assert full.summary["thin_systems"] == {} and not full.table["flags"].str.contains("thin_references").any()
    assert "thin_hull_drop" not in full.table


def test_relax_options_choose_the_funnel_only_for_hypothetical_sources():
    from screening.errors import ScreenError
    from workflows.run.funnel import DEFAULT_TOP, RelaxPlan, relax_plan

    assert relax_plan(None, None, hypothetical=True) == RelaxPlan("top", DEFAULT_TOP)
    assert relax_plan(None, None, hypothetical=False) == RelaxPlan("none")  # known crystals: as today
    assert relax_plan("chgnet", None, True) == relax_plan("all", None, False) == RelaxPlan("all")
    assert relax_plan(None, 5, False) == RelaxPlan("top", 5) and relax_plan(None, 0, True) == RelaxPlan("none")
    for relax, top, message in (("mace", None, "`relax` mace: choose none, all or chgnet"),
                                ("all", 3, "`relax_top` 3 and `relax` all: give one of them"),
                                (None, -1, "`relax_top` -1: must be 0 or more")):
        with pytest.raises(ScreenError, match=message):
            relax_plan(relax, top, True)


@pytest.mark.parametrize("args, message", [
    (["--relax", "mace"], "error: --relax mace: choose none, all or chgnet (the same as all)"),
    (["--relax-top", "4", "--relax", "none"], "error: --relax-top 4 and --relax none: give one of them"),
])
def test_bad_relax_options_are_one_line_errors_before_any_work(tmp_path, args, message):
    from typer.testing import CliRunner

    from cli import app

    r = CliRunner().invoke(app, ["run", "--query", "Li-*-O", *args, "--cache", str(tmp_path / "c"),
                                 "--out", str(tmp_path / "o")])
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith(message), r.output
    assert not (tmp_path / "c").exists()


def test_the_prototypes_the_workers_rejected_reach_summary_json(client, ensemble, tmp_path):
    """The substitution source rejects one Na-Cl prototype (Na and Cl closer than in any NaCl crystal,
    tests/screening/test_prototypes.py) while a worker fetches: the count comes back to the client."""
    r = run(client, tmp_path, ensemble, "o", relax="none")
    written = json.loads(open(r.files["summary"]).read())
    assert written["counts"]["prototypes_rejected"] == {"distance": 1, "distance_by_pair": {"Cl-Na": 1},
                                                        "valence": 0}
    assert written["rejection_note"] == "substitution: rejected before screening: 1 prototype with a too-short " \
                                        "distance (Cl-Na 1)"


def test_the_substitution_probability_filter_leaves_out_and_counts_candidates(client, ensemble, tmp_path):
    """min_substitution_probability reaches the source the workers fetch with: the run screens what the
    source keeps at that threshold, and summary.json counts the rest."""
    from screening.sources.substitution import SubstitutionSource

    direct = SubstitutionSource(min_probability=0.01)
    kept = {c.id for c in direct.fetch("Na-Cl")}
    improbable = direct.rejection_counts()["improbable"]
    assert improbable >= 5 and "sub-AB_cF8_225_a_b-NaCl-1" in kept  # rocksalt NaCl (0.31) stays
    r = run(client, tmp_path, ensemble, "filtered", relax="none", min_substitution_probability=0.01)
    written = json.loads(open(r.files["summary"]).read())
    assert set(r.table.id) == kept
    assert written["counts"]["prototypes_rejected"]["improbable"] == improbable
    assert f"{improbable} prototypes below the substitution probability threshold" in written["rejection_note"]
