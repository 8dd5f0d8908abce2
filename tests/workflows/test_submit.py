"""`screen submit` without a batch system: the job script it writes, and bad input as one line.
(The jobs themselves run on a real Slurm in tests/workflows/test_slurm.py.)"""
import pytest
from typer.testing import CliRunner

from cli import app
from tests.helpers import DATA
from workflows.batch import crontab_line, sbatch_delay
from workflows.campaign import read_campaign

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
