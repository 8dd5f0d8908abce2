"""One-line errors of `screen run` and `screen predict` found by probing (issue 27): refused inputs, checks
made before anything is created, where a bug's traceback goes."""
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from cli import app
from tests.helpers import DATA, rocksalt

runner = CliRunner()


def lines_of(output: str):
    return [line for line in output.splitlines() if line.strip()]


def na_cl_on_top(distance=0.0, a=5.64) -> Structure:
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [distance / a, 0, 0]])


def test_predict_lists_atoms_on_top_of_each_other_as_bad_and_predicts_the_rest(tmp_path, model_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rocksalt().to(filename=str(folder / "good.cif"))
    na_cl_on_top(0.0).to(filename=str(folder / "same.cif"))
    out = tmp_path / "p.csv"
    r = runner.invoke(app, ["predict", str(folder), "--model", model_path, "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 1, r.output
    assert pd.read_csv(out).file.str.endswith("good.cif").tolist() == [True]
    bad = pd.read_csv(tmp_path / "p.bad.csv")
    assert bad.file.tolist() == [str(folder / "same.cif")]
    assert bad.problem[0] == f"{folder / 'same.cif'}: atoms 0 (Na) and 1 (Cl) are 0.00 A apart, closer than the " \
                             f"0.5 A any two atoms of a crystal keep; check the file"


def test_relax_on_overlapping_atoms_is_one_line_and_no_prediction(tmp_path, model_path, inprocess_run):
    pytest.importorskip("chgnet")
    folder = tmp_path / "in"
    folder.mkdir()
    na_cl_on_top(0.1).to(filename=str(folder / "close.cif"))
    r = runner.invoke(app, ["run", "--query", "Na-Cl", "--source", f"local:{folder}", "--relax", "chgnet",
                            "--model", model_path, *inprocess_run,
                            "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    errors = [line for line in lines_of(r.output) if line.startswith("error")]
    assert errors == [f"error: --query Na-Cl: none of the 1 candidates could be featurized (first problem: "
                      f"local:{folder} close: atoms 0 (Na) and 1 (Cl) are 0.10 A apart, closer than the 0.5 A any "
                      f"two atoms of a crystal keep; check the file)"]
    assert "Traceback" not in r.output
    assert not (tmp_path / "o" / "results.csv").exists()


def test_a_later_commands_bug_is_not_logged_into_an_earlier_runs_out(tmp_path, monkeypatch):
    import cli
    import workflows.cache_admin

    monkeypatch.setattr(cli, "DEFAULT_ERROR_LOG", tmp_path / "default.log", raising=False)
    r = runner.invoke(app, ["run", "--query", "Li-*-Xx", "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output

    def a_bug(cache):
        raise RuntimeError("a bug in screen cache info")

    monkeypatch.setattr(workflows.cache_admin, "summary", a_bug)
    r = runner.invoke(app, ["cache", "info", "--cache", str(tmp_path / "c")])
    assert r.exit_code == 3, r.output
    assert not (tmp_path / "o").exists()
    assert "a bug in screen cache info" in (tmp_path / "default.log").read_text()
    assert f"traceback in {tmp_path / 'default.log'}" in " ".join(r.output.split())


def run_args(tmp_path, model_path, *extra):
    return ["--query", "Li-Fe-O", "--source", f"local:{DATA}", "--model", model_path,
            "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o"), *extra]


def left_behind(tmp_path):
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("extra, message", [
    (["--reference", "local:/no/such/references.csv"], "--reference local:/no/such/references.csv: no such file"),
    (["--memory", "lots"], "--memory lots: not a size"),  # a check after the run's options
    (["--runner", "pbs"], "--runner pbs: only slurm"),
    (["--min-substitution-probability", "1.5"], "--min-substitution-probability 1.5: a probability, from 0 to 1"),
    (["--min-substitution-probability", "0.01"], "--min-substitution-probability: only --source substitution "
                                                 "makes substitutions; this run's source is local:"),
])
def test_a_one_line_error_in_any_check_leaves_nothing_behind(tmp_path, model_path, extra, message):
    r = runner.invoke(app, ["run", *run_args(tmp_path, model_path, *extra)])
    assert r.exit_code == 2, r.output
    assert len(lines_of(r.output)) == 1 and lines_of(r.output)[0].startswith("error: ") and message in r.output
    assert left_behind(tmp_path) == []  # no cache/CACHEDIR.TAG, no model description, no empty --out


def test_submit_with_a_bad_schedule_leaves_nothing_behind(tmp_path, model_path):
    r = runner.invoke(app, ["submit", "--dry-run", "--every", "sometimes", *run_args(tmp_path, model_path)])
    assert r.exit_code == 2, r.output
    assert len(lines_of(r.output)) == 1 and "schedule every 'sometimes'" in r.output
    assert left_behind(tmp_path) == []


def test_an_out_that_is_a_file_fails_before_the_cache_is_made(tmp_path, model_path):
    (tmp_path / "o").write_text("a file")
    r = runner.invoke(app, ["run", *run_args(tmp_path, model_path)])
    assert r.exit_code == 2 and "--out" in r.output and "cannot write there" in r.output, r.output
    assert left_behind(tmp_path) == ["o"]


@pytest.mark.parametrize("out, cache, where", [("same", "same", "is"), ("c/results", "c", "lies inside")])
def test_results_inside_the_cache_are_refused(tmp_path, model_path, out, cache, where):
    r = runner.invoke(app, ["run", "--query", "Li-Fe-O", "--source", f"local:{DATA}", "--model", model_path,
                            "--cache", str(tmp_path / cache), "--out", str(tmp_path / out)])
    assert r.exit_code == 2, r.output
    assert " ".join(r.output.split()) == (f"error: --out {tmp_path / out}: {where} the cache folder (--cache "
                                          f"{tmp_path / cache}), which backups skip and `screen cache clear` "
                                          f"empties; give the results a folder of their own")
    assert left_behind(tmp_path) == []


def test_a_campaign_whose_second_query_is_bad_leaves_nothing_behind(tmp_path, model_path):
    (tmp_path / "c.yaml").write_text(f"name: two\nqueries: [Li-Fe-O, Li-*-Xx]\nsource: local:{DATA}\n"
                                     f"model: {model_path}\nout: results\ncache: cache\n")
    r = runner.invoke(app, ["submit", "--campaign", str(tmp_path / "c.yaml"), "--dry-run"])
    assert r.exit_code == 2, r.output
    assert len(lines_of(r.output)) == 1 and "Xx" in r.output
    assert left_behind(tmp_path) == ["c.yaml"]
