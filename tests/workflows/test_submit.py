"""`screen submit` without a batch system: the job script it writes, and bad input as one line.
(The jobs themselves run on a real Slurm in tests/workflows/test_slurm.py.)"""
import json

import pytest
from typer.testing import CliRunner

from cli import app
from tests.helpers import DATA
from workflows.cluster.batch import check_begin, crontab_line, entry_point, sbatch_delay
from workflows.cluster.connection import walltime_seconds
from workflows.cluster.campaign import read_campaign

runner = CliRunner()


def test_the_job_script_asks_for_what_the_run_needs_and_runs_screen_run_on_every_task(tmp_path):
    out = tmp_path / "o"
    r = runner.invoke(app, ["submit", "--query", "Li-Fe-O", "--source", f"local:{DATA}", "--workers", "3",
                            "--threads", "2", "--memory", "2GiB", "--queue", "gpu", "--account", "chem",
                            "--walltime", "02:00:00", "--gpus", "1", "--device", "cuda", "--out", str(out),
                            "--cache", str(tmp_path / "c"), "--dry-run"])
    assert r.exit_code == 0, r.output
    script = (out / "screen.sbatch").read_text()
    for line in ("#SBATCH --ntasks=5", "#SBATCH --cpus-per-task=2", "#SBATCH --mem=8192M", "#SBATCH --time=02:00:00",
                 "#SBATCH --partition=gpu", "#SBATCH --account=chem", "#SBATCH --gres=gpu:1",
                 f"#SBATCH --output={out}/logs/screen-%j.out", "export OMP_NUM_THREADS=1", "export PYTHONPATH="):
        assert line in script, line
    assert "--overcommit" not in script and "sbatch --parsable --begin" not in script  # no schedule
    srun = script.strip().splitlines()[-1]
    assert srun.startswith("srun ") and " -m cli run --query Li-Fe-O " in srun and srun.endswith("--runner slurm")
    assert not (out / "jobs.csv").exists()  # nothing was submitted


@pytest.mark.parametrize("args, message", [
    (["--query", "Li-Fe-O", "--jobqueue", "slurm"], "--jobqueue: screen submit runs its own Dask cluster"),
    (["--quer", "Li-Fe-O"], "screen submit: No such option: --quer"),
    (["--query", "Li-*-Xx"], "Xx"),
    (["--query", "Li-Fe-O", "--every", "3x"], "schedule every '3x'"),
    (["--query", "Li-Fe-O", "--walltime", "soon"], "--walltime soon: expected"),
    (["--query", "Li-Fe-O", "--walltime", "-1:00:00"], "--walltime -1:00:00: expected a time above zero"),
    (["--query", "Li-Fe-O", "--walltime", "00:00:00"], "--walltime 00:00:00: expected a time above zero"),  # Slurm: no limit
    (["--query", "Li-Fe-O", "--walltime", "01:61:00"], "minutes and seconds below 60"),
    (["--query", "Li-Fe-O", "--begin", "garbage"], "--begin garbage: expected a time Slurm reads"),
    (["--query", "Li-Fe-O", "--begin", "2026-13-01"], "--begin 2026-13-01: expected"),
    (["--query", "Li-Fe-O", "--begin", "now+1h"], "--begin now+1h: expected"),  # sbatch knows no unit h
    (["--query", "Li-Fe-O", "--queue", "cpu\n#SBATCH --exclusive"], "--queue 'cpu\\n#SBATCH --exclusive': use letters"),
])
def test_bad_submit_input_is_one_line(tmp_path, args, message):
    r = runner.invoke(app, ["submit", *args, "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--dry-run"])
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.output


def test_a_campaign_file_becomes_screen_run_options_with_paths_relative_to_it(tmp_path):
    (tmp_path / "c.yaml").write_text("""
name: oxides
query: Li-*-O
source: local:data/mp.csv
out: results
filters: {nonmetal: true, top: 20}
cluster: {workers: 4, partition: cpu, gpus: 1}
schedule: {every: 7d}
""")
    c = read_campaign(tmp_path / "c.yaml")
    assert c.runs == [("Li-*-O", ["--query", "Li-*-O", "--out", f"{tmp_path}/results",
                                  "--source", f"local:{tmp_path}/data/mp.csv", "--nonmetal", "--top", "20",
                                  "--workers", "4", "--queue", "cpu"])]
    assert c.out == tmp_path / "results"
    assert c.batch == {"gpus": 1} and c.every == "7d" and c.name == "oxides"
    assert sbatch_delay("7d") == "now+7days" and crontab_line("7d", tmp_path / "s").startswith("@weekly sbatch")
    (tmp_path / "bad.yaml").write_text("query: Li-*-O\nfilter: {top: 3}\n")
    r = runner.invoke(app, ["submit", "--campaign", str(tmp_path / "bad.yaml"), "--cache", str(tmp_path / "c"), "--dry-run"])
    assert r.exit_code == 2 and "unknown key(s) filter" in r.output


def test_a_campaign_of_several_queries_runs_each_into_its_own_folder_in_one_job(tmp_path):
    (tmp_path / "c.yaml").write_text(f"""
name: oxides
queries: [Li-*-O, Na-Fe-O]
source: local:{DATA}
out: results
cache: c
filters: {{top: 5}}
""")
    c = read_campaign(tmp_path / "c.yaml")
    assert [q for q, _ in c.runs] == ["Li-*-O", "Na-Fe-O"]
    assert [args[args.index("--out") + 1] for _, args in c.runs] == [f"{tmp_path}/results/Li-x-O",
                                                                     f"{tmp_path}/results/Na-Fe-O"]
    r = runner.invoke(app, ["submit", "--campaign", str(tmp_path / "c.yaml"), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "(2 queries, one after another)" in r.output
    script = (tmp_path / "results" / "screen.sbatch").read_text()
    sruns = [line for line in script.splitlines() if line.startswith("srun ")]
    assert len(sruns) == 2 and all(line.endswith("--runner slurm || failed=1") for line in sruns)
    assert "--query 'Li-*-O' --out " + f"{tmp_path}/results/Li-x-O" in sruns[0]
    assert "--query Na-Fe-O --out " + f"{tmp_path}/results/Na-Fe-O" in sruns[1]
    assert script.rstrip().endswith("exit $failed")
    (tmp_path / "both.yaml").write_text("query: Li-*-O\nqueries: [Na-*-O]\n")
    r = runner.invoke(app, ["submit", "--campaign", str(tmp_path / "both.yaml"), "--dry-run"])
    assert r.exit_code == 2 and "give query or queries, not both" in r.output
    (tmp_path / "bad.yaml").write_text("queries: [Li-*-O, Li-Xx-O]\n")
    r = runner.invoke(app, ["submit", "--campaign", str(tmp_path / "bad.yaml"), "--cache", str(tmp_path / "c"),
                            "--dry-run"])
    assert r.exit_code == 2 and "Xx" in r.output  # the second query is checked before anything is submitted


def test_walltimes_and_begin_times_slurm_reads_are_taken_as_written():
    assert [walltime_seconds(t) for t in ("01:00:00", "30:00", "48:00:00", "1-02:30", "2-00:00:01")] == \
        [3600, 1800, 172800, 95400, 172801]
    for begin in ("now", "now+1hour", "now+7days", "now+90", "2026-12-01", "2026-12-01T03:00", "2026-12-01T03:00:59",
                  "03:00", "3:00 PM", "midnight", "noon", "teatime", "tomorrow", "today 16:00", "tomorrow noon",
                  "1201", "12/01/26", "12.01", "12/01-03:00"):
        assert check_begin(begin) == begin


def campaign(tmp_path, text: str):
    """`screen submit --campaign` (a dry run) of a campaign file with this text after a query and source."""
    path = tmp_path / "c.yaml"
    path.write_text(f"query: Li-Fe-O\nsource: local:{DATA}\nout: o\ncache: c\n{text}")
    return runner.invoke(app, ["submit", "--campaign", str(path), "--dry-run"])


def srun_line(tmp_path) -> str:
    return [line for line in (tmp_path / "o" / "screen.sbatch").read_text().splitlines() if line.startswith("srun ")][0]


def test_campaign_filters_of_zero_reach_the_job_and_top_zero_is_refused_as_on_the_command_line(tmp_path):
    r = campaign(tmp_path, "filters: {ehull_max: 0, gap_min: 0.0, stable_within: 0, nonmetal: false}\n"
                           "cluster: {overcommit: false, gpus: 0}\n")
    assert r.exit_code == 0, r.output
    srun = srun_line(tmp_path)
    assert " --ehull-max 0 " in srun and " --gap-min 0.0 " in srun and " --stable-within 0 " in srun
    assert "--nonmetal" not in srun
    script = (tmp_path / "o" / "screen.sbatch").read_text()
    assert "--overcommit" not in script and "--gres" not in script
    r = campaign(tmp_path, "filters: {top: 0}\n")
    assert r.exit_code == 2 and r.output.strip() == "error: --top 0: must be at least 1", r.output
    r = runner.invoke(app, ["submit", "--query", "Li-Fe-O", "--source", f"local:{DATA}", "--top", "0",
                            "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--dry-run"])
    assert r.exit_code == 2 and r.output.strip() == "error: --top 0: must be at least 1", r.output


@pytest.mark.parametrize("text, message", [
    ("cluster: {gpus: two}\n", "cluster gpus 'two': must be a whole number, 0 or more"),
    ("cluster: {gpus: -1}\n", "cluster gpus -1: must be a whole number"),
    ("cluster: {overcommit: 'no'}\n", "cluster overcommit 'no': must be true or false"),
    ("filters: {nonmetal: 'yes'}\n", "filters nonmetal 'yes': must be true or false"),
    ("filters: {top: true}\n", "filters top True: expected a number or a word"),
    ("cluster: {workers: [1, 2]}\n", "cluster workers [1, 2]: expected a number or a word"),
    ("reference: local:no-such.csv\n", "reference local:no-such.csv: no such file"),
    ('name: "oxides\\n#SBATCH --exclusive"\n', "name 'oxides\\n#SBATCH --exclusive': use letters, digits"),
    ("name: li oxides\n", "name 'li oxides': use letters, digits"),
    ("filters: {top: 5}\nfilters: {top: 50}\n", "key filters given twice (line 6)"),
    ("filters: {top: 5, nonmetal: true, top: 50}\n", "key top given twice (line 5)"),
])
def test_bad_campaign_settings_are_one_line_and_write_no_job(tmp_path, text, message):
    r = campaign(tmp_path, text)
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: --campaign ") and message in lines[0], \
        r.output
    assert not (tmp_path / "o" / "screen.sbatch").exists()


def test_a_campaign_with_an_empty_out_or_one_query_as_queries(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"query: Li-Fe-O\nsource: local:{DATA}\ncache: c\nout:\n")
    r = runner.invoke(app, ["submit", "--campaign", str(path), "--dry-run"])
    assert r.exit_code == 0, r.output  # out: with no value is the default folder (it was exit 3, a TypeError)
    assert (tmp_path / "campaign-c" / "screen.sbatch").is_file()
    path.write_text(f"queries: Li-Fe-O\nsource: local:{DATA}\n")
    r = runner.invoke(app, ["submit", "--campaign", str(path), "--dry-run"])
    assert r.exit_code == 2 and r.output.strip() == (f"error: --campaign {path}: queries Li-Fe-O: a list "
                                                     f"(queries: [Li-Fe-O]), or query: Li-Fe-O"), r.output


def test_a_campaign_file_name_that_is_no_job_name_becomes_one(tmp_path):
    path = tmp_path / "li oxides.yaml"
    path.write_text(f"query: Li-Fe-O\nsource: local:{DATA}\nout: o\ncache: c\n")
    r = runner.invoke(app, ["submit", "--campaign", str(path), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "#SBATCH --job-name=li_oxides\n" in (tmp_path / "o" / "screen.sbatch").read_text()


def test_the_job_runs_screen_not_a_cli_py_in_the_submit_folder(tmp_path, monkeypatch):
    """The job starts in the submit folder (--chdir); a cli.py there must not stand in for screen's.
    The job script's own command is run here (the whole job on a real Slurm: test_slurm.py)."""
    import shlex
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cli.py").write_text("raise SystemExit('the cli.py of the submit folder ran')\n")
    r = runner.invoke(app, ["submit", "--query", "Li-Fe-O", "--source", f"local:{DATA}", "--out", "o", "--cache", "c",
                            "--dry-run"])
    assert r.exit_code == 0, r.output
    assert f"#SBATCH --chdir={tmp_path}\n" in (tmp_path / "o" / "screen.sbatch").read_text()
    srun = shlex.split(srun_line(tmp_path))
    screen = srun[1:srun.index("run")]  # the interpreter and what makes it run screen

    def help_of(command):
        r = subprocess.run([*command, "submit", "--help"], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0 and "Submit a whole screening run" in r.stdout, r.stdout + r.stderr

    help_of(screen)
    help_of(entry_point(sys.executable, (3, 10)))  # the form for Python 3.10 (which has no -P)


def test_status_names_a_damaged_jobs_table_or_summary_instead_of_failing(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "jobs.csv").write_bytes(bytes(range(256)) * 4)
    r = runner.invoke(app, ["status", "--out", str(out)])
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {out}/jobs.csv: cannot read it"), \
        r.output
    (out / "jobs.csv").write_text("job_id,submitted,begin\n17,2026-01-01T00:00:00,now\n")
    summary = {"ranked": 3, "candidates": 5, "featurized": 5, "inferred": 4, "wall_seconds": 12.0,
               "provenance": {"batch_job": "17"}, "changes": {"note": "no changes"}, "files": {"results": "results.csv"}}

    def status(text: str) -> str:
        (out / "summary.json").write_text(text)
        r = runner.invoke(app, ["status", "--out", str(out)])
        assert r.exit_code == 0, r.output
        return r.output

    shown = status(json.dumps(summary))
    assert "latest results (job 17): 3 of 5 candidates; featurized 5, inferred 4; 12 s" in shown
    # (summary.json names its files relative to the folder: shown as paths)
    assert "changes since the previous run: no changes" in shown and f"results: {out}/results.csv" in shown
    shown = status(json.dumps(summary)[:40])  # cut off
    assert f"results: {out}/summary.json is damaged, nothing of it is shown (JSONDecodeError: " in shown
    assert "results.csv" not in shown
    shown = status(json.dumps({k: v for k, v in summary.items() if k != "ranked"}))
    assert f"latest results (job 17): {out}/summary.json is damaged: no ranked in it" in shown
    assert "changes since the previous run: no changes" in shown and f"results: {out}/results.csv" in shown  # sound
    assert "damaged" in status("[1, 2]") and "damaged: no featurized" in status(json.dumps({**summary, "featurized": "5"}))
