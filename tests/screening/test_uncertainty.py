"""The E_hull std per stage (screening/uncertainty.py): the manifest's stage_std, read per stage."""
import json

import numpy as np
import pandas as pd
import pytest

from screening.rank import RankOptions, ReferencePhases, rank
from screening.uncertainty import stage_std

STAGE_STD = {"unrelaxed": {"scale": 2.0, "add": 0.1}, "relaxed": {"scale": 1.5, "add": 0.03},
             "anchored": {"scale": 1.2, "add": 0.05}, "fitted_on": "a test"}


def test_each_stage_takes_its_own_scale_and_add():
    std = np.array([0.04, 0.04, 0.04, 0.04, 0.04])
    stages = np.array(["known", "unrelaxed", "relaxed", "unrelaxed", "known"], dtype=object)
    anchored = np.array([False, False, False, True, True])  # a known crystal is never anchored: scale 1, add 0
    got = stage_std(std, stages, anchored, STAGE_STD, unrelaxed_std=0.9)
    assert got == pytest.approx([0.04, np.hypot(0.08, 0.1), np.hypot(0.06, 0.03), np.hypot(0.048, 0.05), 0.04])


def test_without_stage_std_only_unrelaxed_candidates_get_the_older_figure():
    got = stage_std(np.array([0.03, 0.03, 0.03]), np.array(["known", "unrelaxed", "relaxed"], dtype=object),
                    False, None, unrelaxed_std=0.04)
    assert got == pytest.approx([0.03, 0.05, 0.03])


def test_a_manifest_with_only_some_stages_falls_back_for_the_others():
    got = stage_std(np.array([0.03, 0.03, 0.03]), np.array(["unrelaxed", "relaxed", "relaxed"], dtype=object),
                    [True, False, True], {"relaxed": {"scale": 3.0, "add": 0.0}}, unrelaxed_std=0.04)
    # no anchored entry: an anchored candidate takes its own stage's terms
    assert got == pytest.approx([0.05, 0.09, 0.09])


def test_rank_reads_the_scales_from_the_model_manifest(tmp_path):
    """The manifest's stage_std reaches the ranking: a run passes ModelInfo.meta's to RankOptions."""
    from screening.ensemble import load_model
    from screening.model_info import default_model_path
    from workflows.run import worker_model

    manifest = json.loads(default_model_path().read_text())
    base = default_model_path().parent
    manifest["members"] = [dict(m, path=str(base / m["path"])) for m in manifest["members"]]
    manifest["stage_std"] = STAGE_STD
    path = tmp_path / "ensemble.json"
    path.write_text(json.dumps(manifest))
    info = worker_model.describe(str(path), str(tmp_path / "cache"))
    assert info.meta["stage_std"] == STAGE_STD
    assert info.hash == load_model(default_model_path()).hash  # stage_std changes no prediction

    refs = ReferencePhases(["Li", "O", "Li2O"], [0.0, 0.0, -2.0], ["mp-1", "mp-2", "mp-3"])
    t = pd.DataFrame({"id": ["a", "b", "c"], "formula": ["Li2O"] * 3,
                      "pred_formation_energy_per_atom": [-1.9, -1.9, -1.9],
                      "pred_formation_energy_per_atom_std": [0.05, 0.05, 0.05],
                      "stage": ["known", "unrelaxed", "relaxed"], "flags": ["", "unrelaxed", ""]})
    out = rank(t, refs, RankOptions(stage_std=info.meta["stage_std"], unrelaxed_std=0.9)).set_index("id")
    assert out.pred_e_above_hull_std.to_dict() == pytest.approx(
        {"a": 0.05, "b": np.hypot(0.1, 0.1), "c": np.hypot(0.075, 0.03)})
    assert out.pred_e_above_hull.to_dict() == pytest.approx({"a": 0.1, "b": 0.1, "c": 0.1})
