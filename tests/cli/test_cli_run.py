"""`screen run` through the CLI: bad input fails fast; a real run writes its files."""
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from tests.helpers import DATA

runner = CliRunner()


@pytest.mark.parametrize("args, message", [
    (["--query", "Li-*-Xx"], "Xx"),
    (["--query", "Li-*-O", "--source", "nowhere"], "unknown source"),
    (["--query", "Li-*-O", "--source", "local:/no/such/file.csv"], "no such file"),
    (["--query", "Li-*-O", "--exclude", "Qq"], "Qq"),
    (["--query", "Li-*-O", "--partition-size", "0"], "--partition-size 0: must be at least 1"),
    (["--query", "Li-*-O", "--partition-size", "-5"], "--partition-size -5: must be at least 1"),
    (["--query", "Li-*-O", "--top", "-1"], "--top -1: must be at least 1"),
    (["--query", "Li-*-O", "--device", "tpu"], "--device tpu: choose auto, cpu, cuda"),
    (["--query", "Li-*-O", "--rank-by", "luck"], "--rank-by luck"),
    (["--query", "Li-*-O", "--gap-min", "2", "--gap-max", "1"], "--gap-min 2.0 is above --gap-max 1.0"),
    (["--query", "Li-*-O", "--unrelaxed-std", "-0.1"], "--unrelaxed-std -0.1: need 0 <= eV/atom < 10"),
    (["--query", "Li-*-O", "--model", "/no/such/model.pt"], "checkpoint file not found"),
    (["--query", "Li-*-O", "--source", f"local:{DATA}", "--gnome"], "--gnome: only the Materials Project"),
    (["--query", "Li-*-O", "--source", f"local:{DATA}", "--new-only"], "--new-only: the source local:"),
    (["--query", "Li-*-O", "--mp-rate", "0"], "--mp-rate 0: a whole number of requests per second"),
])
def test_bad_input_is_one_line_error_before_any_work(tmp_path, args, message):
    r = runner.invoke(app, ["run", *args, "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not (tmp_path / "c").exists() and not (tmp_path / "o").exists()


def test_an_unwritable_out_fails_before_any_work(tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    r = runner.invoke(app, ["run", "--query", "Li-*-O", "--cache", str(tmp_path / "c"),
                            "--out", str(tmp_path / "taken" / "results")])
    assert r.exit_code == 2 and "--out" in r.output and "cannot write there" in r.output
    assert len([line for line in r.output.splitlines() if line.strip()]) == 1


@pytest.mark.parametrize("value", ["fast", "1"])
def test_a_bad_screen_kernel_is_one_line_error_before_any_work(tmp_path, monkeypatch, value):
    monkeypatch.setenv("SCREEN_KERNEL", value)
    r = runner.invoke(app, ["run", "--query", "Li-*-O", "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert [line for line in r.output.splitlines() if line.strip()] == [f"error: SCREEN_KERNEL={value}: choose auto, c, torch"]
    assert not (tmp_path / "c").exists() and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_run_writes_table_parquet_summary_and_plot(tmp_path, model_path):  # noqa: F811
    r = runner.invoke(app, ["run", "--query", "Li-Fe-O", "--source", f"local:{DATA}", "--model", model_path,
                            "--workers", "1", "--dashboard", ":0", "--cache", str(tmp_path / "c"),
                            "--out", str(tmp_path / "o"), "--format", "parquet", "--top", "3"])
    assert r.exit_code == 0, r.output
    assert "dask dashboard: http://" in r.output and "most probably stable first" in r.output and "no error bar" in r.output
    table = pd.read_parquet(tmp_path / "o" / "results.parquet")
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert len(table) == 3 and summary["candidates"] == 32 and summary["featurized"] == 32
    assert (tmp_path / "o" / "hull_vs_gap.png").stat().st_size > 10_000

