"""Experiment specs, the Dask experiment runner and the report, on a real LocalCluster."""
import json
import os
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from screening.errors import ScreenError
from workflows.train.experiment_report import write_report
from workflows.train.results import results_table
from workflows.train.experiment_spec import ArmSettings, TASKS, parse_spec, run_indices
from workflows.train.experiments import load_pool, train_run
from tests.helpers import DATA

TINY = {"epochs": 2, "batch_size": 16, "atom_fea_len": 16, "n_conv": 1, "h_fea_len": 16}


def tiny_spec(**top):
    raw = {"name": "tiny", "data": str(DATA), "pool": 60, "seeds": [0], "train": dict(TINY),
           "groups": [{"name": "single", "tasks": ["Ef", "Eg"]},
                      {"name": "multitask", "tasks": ["Ef+Eg"], "weighting": ["fixed", "uncertainty"]},
                      {"name": "fraction", "tasks": ["Ef", "Eg", "Ef+Eg"], "train_fraction": [0.4, 0.6]}]}
    raw.update(top)
    return parse_spec(raw, "tiny.yaml")


# ---- specs ------------------------------------------------------------------------------------

def test_spec_expands_groups_and_shares_identical_runs():
    spec = tiny_spec(seeds=[0, 1])
    # single: 2 x 2 seeds; multitask: 2 x 2; fraction: 3 x 2 x 2, of which the 0.6 fixed ones are
    # the single/multitask runs again -> 4 + 4 + 6 new = 14
    assert len(spec.runs) == 14
    assert len(spec.groups["fraction"]) == 12
    assert len({r.key for r in spec.runs}) == 14
    shared = set(spec.groups["single"]) & set(spec.groups["fraction"])
    assert len(shared) == 4
    run = spec.group_runs("multitask")[0]
    assert run.tasks == (TASKS["Ef"], TASKS["Eg"]) and run.epochs == 2 and run.weighting == "fixed"
    assert run.dirname.startswith("Ef+Eg_fixed_f0.6_s0_")


def test_run_identity_follows_every_setting():
    run = ArmSettings(tasks=(TASKS["Ef"],))
    assert replace(run, lr=0.001).key != run.key != replace(run, seed=1).key
    assert replace(run).key == run.key


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "tiny.yaml: unknown key(s) colour"),
    ({"groups": [{"tasks": ["Ef"], "epoch": 3}]}, "tiny.yaml: groups[0]: unknown key(s) epoch"),
    ({"groups": [{"tasks": ["Ef+Gap"]}]}, "unknown task 'Gap'"),
    ({"groups": [{"tasks": ["Ef"], "train_fraction": 0.7}]}, "train_fraction 0.7 must be in (0, 0.6]"),
    ({"groups": [{"tasks": ["Ef+Eg"], "weighting": "dynamic"}]}, "weighting 'dynamic'"),
    ({"split": [0.8, 0.2, 0.2]}, "split [0.8, 0.2, 0.2] needs three fractions"),
])
def test_bad_specs_are_one_line_errors(change, message):
    with pytest.raises(ScreenError) as e:
        tiny_spec(**change)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_smaller_training_fractions_are_nested_and_leave_val_test_alone():
    run = ArmSettings(tasks=(TASKS["Ef"],), seed=3)
    tr6, va6, te6 = run_indices(100, (0.6, 0.2, 0.2), run)
    tr2, va2, te2 = run_indices(100, (0.6, 0.2, 0.2), replace(run, train_fraction=0.2))
    assert (len(tr6), len(tr2)) == (60, 20)
    assert np.array_equal(tr2, tr6[:20]) and np.array_equal(va2, va6) and np.array_equal(te2, te6)
    other = run_indices(100, (0.6, 0.2, 0.2), replace(run, seed=4))
    assert not np.array_equal(other[2], te6)


# ---- runner on a real cluster -------------------------------------------------------------
# Worker processes, not an in-process cluster: torch's seed and thread count are per process, so two
# runs training at once in one process draw from each other's generator (tried: metrics differ).

@pytest.fixture(scope="module")
def finished_experiment(tmp_path_factory):
    from workflows.cluster.connection import ClusterSettings
    from workflows.train.experiments import run_experiment

    out = tmp_path_factory.mktemp("experiment")
    spec = tiny_spec()
    done = []
    res = run_experiment(spec, out, ClusterSettings(workers=2, threads_per_worker=1), out / "cache",
                         on_done=lambda name, result: done.append(name))
    return spec, out, res, done


@pytest.mark.slow
def test_runner_trains_every_run_once(finished_experiment):
    spec, out, res, done = finished_experiment
    assert not res.failed
    assert sorted(res.trained) == sorted(done) == sorted(r.dirname for r in spec.runs)
    assert len(res.results) == len(spec.runs) == 7
    for r in res.results:
        d = out / "runs" / r["dir"]
        assert {"run.json", "metrics.csv", "best.pt", "result.json"} <= {p.name for p in d.iterdir()}
        n_tasks = len(r["run"]["tasks"])
        assert len([k for k in r["test"] if k.startswith("mae_")]) == n_tasks
        assert all(np.isfinite(v) for k, v in r["test"].items() if k.startswith("mae_"))
    rows = results_table(res.results)
    assert sorted(rows.n_train.unique()) == [24, 36]  # 0.4 and 0.6 of a 60-crystal pool
    assert rows.n_test.unique().tolist() == [12]


@pytest.mark.slow
def test_runner_skips_finished_runs(finished_experiment):
    from workflows.cluster.connection import ClusterSettings
    from workflows.train.experiments import run_experiment

    spec, out, first, _ = finished_experiment
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    again = run_experiment(spec, out, ClusterSettings(workers=1, threads_per_worker=1), out / "cache")
    assert again.trained == [] and sorted(again.skipped) == sorted(r.dirname for r in spec.runs)
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")} == stamps
    assert again.results == first.results
    # a run whose result.json is gone is trained again; the others are still skipped
    victim = out / "runs" / spec.runs[0].dirname
    (victim / "result.json").unlink()
    third = run_experiment(spec, out, ClusterSettings(workers=1, threads_per_worker=1), out / "cache")
    assert third.trained == [spec.runs[0].dirname] and len(third.skipped) == len(spec.runs) - 1


@pytest.mark.slow
def test_identical_seeds_give_identical_metrics(finished_experiment, tmp_path, one_thread):
    """The same run trained again here, in this process, reproduces what a Dask worker got."""
    spec, out, res, _ = finished_experiment
    pool, _ = load_pool(spec, out / "cache")
    for run in (spec.runs[2], spec.runs[3]):  # Ef+Eg with fixed and with learned weights
        again = train_run(pool, spec.split, run, tmp_path / run.dirname)
        before = json.loads((out / "runs" / run.dirname / "result.json").read_text())
        assert again["test"] == before["test"] and again["val_score"] == before["val_score"]
        assert again["weights_at_best"] == before["weights_at_best"]
    other = train_run(pool, spec.split, replace(spec.runs[2], seed=1), tmp_path / "seed1")
    assert other["test"] != before["test"]


@pytest.mark.slow
def test_report_numbers_come_from_the_runs(finished_experiment, tmp_path):
    spec, out, res, _ = finished_experiment
    path = write_report(spec, res.results, tmp_path / "report.md", out)
    text = path.read_text()
    rows = results_table(res.results)
    single_ef = rows[(rows.label == "Ef") & np.isclose(rows.train_fraction, 0.6)].mae_Ef.iloc[0]
    assert f"| single task (CGCNN) | ΔEf | {single_ef:.4f} |" in text  # one seed: no ± part
    for r in res.results:
        assert f"[{r['dir']}](" in text  # every run is listed and linked
    assert "## Which of the paper's claims hold on our data" in text
    assert "(one seed)" in text  # with one seed no difference is called clear
    figures = sorted(p.name for p in (tmp_path / "report_figures").iterdir())
    assert figures == ["fig3c_spearman_vs_fraction.png", "fig3d_auc_vs_fraction.png"]
    link = os.path.relpath(out / "runs", tmp_path)
    assert f"]({link}/{res.results[0]['dir']}/result.json)" in text


# ---- CLI --------------------------------------------------------------------------------------

def test_cli_bad_spec_is_one_line_and_writes_nothing(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"data: {DATA}\ngroups:\n  - tasks: [Ef+Gap]\n")
    result = CliRunner().invoke(app, ["experiment", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "unknown task 'Gap'" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    missing = CliRunner().invoke(app, ["experiment", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "no such experiment spec" in missing.output


def test_cli_report_only_needs_finished_runs(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"data: {DATA}\ngroups:\n  - tasks: [Ef]\n")
    result = CliRunner().invoke(app, ["experiment", str(spec), "--out", str(tmp_path / "out"), "--report-only"])
    assert result.exit_code == 2 and "no finished runs" in result.output


def test_shipped_paper_spec_parses():
    from workflows.train.experiment_spec import load_spec

    spec = load_spec(os.path.join(os.path.dirname(__file__), "..", "..", "workflows", "train", "paper.yaml"))
    labels = {r.label for r in spec.runs}
    assert {"Ef", "Eg", "EF", "Ef+Eg", "Ef+EF", "Eg+EF", "Ef+Eg+EF"} <= labels
    assert {r.epochs for r in spec.runs} == {20}  # one epoch budget for every arm
    fractions = sorted({r.train_fraction for r in spec.group_runs("fraction")})
    assert fractions == [0.2, 0.3, 0.4, 0.5, 0.6]
