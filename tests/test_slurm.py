"""Screening runs on a real Slurm (tests/slurm.py): workers as jobs, PBS through Slurm's qsub
wrappers, the whole run as one batch job, and a worker job cancelled mid-run. Each run must give
exactly the table a local run gives."""
import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from tests.helpers import DATA
from tests.test_run_e2e import model_path  # noqa: F401  (module fixture: a tiny trained model)

pytestmark = pytest.mark.slow
runner = CliRunner()
QUERY = "Li-Fe-O"  # 32 crystals
N_CRYSTALS = 32


def screen_run(tmp: Path, name: str, model: str, *extra: str):
    """`screen run` through the CLI, with its own cache (so nothing is a cache hit) and output."""
    out = tmp / name
    r = runner.invoke(app, ["run", "--query", QUERY, "--source", f"local:{DATA}", "--model", model,
                            "--dashboard", ":0", "--memory", "1GiB", "--partition-size", "8",
                            "--cache", str(tmp / f"{name}-cache"), "--out", str(out), *extra])
    assert r.exit_code == 0, r.output
    return out


def results(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv")


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, model_path):  # noqa: F811
    out = screen_run(tmp_path_factory.mktemp("local"), "local", model_path, "--workers", "1")
    assert summary(out)["featurized"] == summary(out)["inferred"] == N_CRYSTALS
    return results(out)


@pytest.mark.parametrize("kind", ["slurm", "pbs"])  # pbs: Slurm's qsub/qdel wrappers, not a PBS server
def test_workers_as_batch_jobs_give_the_local_table(slurm, kind, local_run, model_path, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)  # the jobs start here: nothing of theirs may land here
    out = screen_run(tmp_path, "out", model_path, "--jobqueue", kind, "--workers", "2")
    s = summary(out)
    assert s["featurized"] == s["inferred"] == N_CRYSTALS  # all computed on the batch workers
    pd.testing.assert_frame_equal(results(out), local_run)
    jobs = s["provenance"]["worker_jobs"]
    assert len(jobs) == 2 and {j["name"] for j in slurm.jobs() if j["id"] in jobs} == {"dask-worker"}
    logs = sorted(p.name for p in (out / "logs").iterdir())
    assert {f"dask-worker-{j}.{ext}" for j in jobs for ext in ("out", "err")} <= set(logs)
    assert "Start worker" in (out / "logs" / f"dask-worker-{jobs[0]}.err").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out-cache"]  # no slurm-N.out, no tmp*.sh.o7


def finished(slurm, job_id: str, timeout: float = 300) -> str:
    """The job's final state, once Slurm says it ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = {j["id"]: j["state"] for j in slurm.jobs()}.get(job_id)
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return state
        time.sleep(1)
    raise AssertionError(f"job {job_id} still {state} after {timeout} s")


def test_submit_runs_the_whole_screening_as_one_batch_job(slurm, local_run, model_path, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    r = runner.invoke(app, ["submit", "--query", QUERY, "--source", f"local:{DATA}", "--model", model_path,
                            "--workers", "2", "--memory", "1GiB", "--partition-size", "8", "--dashboard", ":0",
                            "--overcommit",  # 4 tasks on a 2-CPU node
                            "--cache", str(tmp_path / "cache"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    job_id = re.search(r"submitted batch job (\d+)", r.output).group(1)
    script = (out / "screen.sbatch").read_text()  # in the run folder, to read and submit again
    assert "#SBATCH --ntasks=4" in script and "--runner slurm" in script and f"--out {out}" in script
    assert finished(slurm, job_id) == "COMPLETED", (out / "logs" / f"screen-{job_id}.out").read_text()[-3000:]

    pd.testing.assert_frame_equal(results(out), local_run)
    s = summary(out)
    assert s["featurized"] == s["inferred"] == N_CRYSTALS and s["workers"] == 2
    p = s["provenance"]
    assert p["batch_job"] == job_id and p["worker_jobs"] == [job_id] and p["batch_nodes"] == slurm.host
    assert p["model_hash"] == s["model_hash"] and p["source_data_version"].startswith(f"local:{DATA} sha256=")
    assert p["versions"]["screen"] and p["versions"]["torch"] and p["versions"]["dask-jobqueue"]
    assert "Fe-Li-O: 32 of 32 candidates" in (out / "logs" / f"screen-{job_id}.out").read_text()

    r = runner.invoke(app, ["status", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert re.search(rf"│ {job_id}\s.*COMPLETED", r.output) and f"latest results (job {job_id}): 32 of 32" in r.output


def test_a_worker_job_cancelled_mid_run_loses_and_duplicates_nothing(slurm, local_run, model_path, tmp_path):  # noqa: F811
    from workflows.cluster import ClusterSpec, connect
    from workflows.provenance import where
    from workflows.screening import RunOptions, run_screening

    spec = ClusterSpec(jobqueue="slurm", workers=2, memory_per_worker="1GiB", dashboard="127.0.0.1:0",
                       log_dir=str(tmp_path / "out" / "logs"))
    opts = RunOptions(query=QUERY, source=f"local:{DATA}", model=model_path, device="cpu", partition_size=2,
                      cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "out"))
    cancelled = []
    with connect(spec) as client:
        def cancel_one(stage, done, total):
            if stage == "infer" and done >= 3 and not cancelled:  # 3 of 16 partitions done
                job = sorted(w["job"] for w in client.run(where).values())[0]
                slurm.run(["scancel", job])
                cancelled.append((job, done, total))

        client.wait_for_workers(2, timeout=120)
        result = run_screening(client, opts, progress=cancel_one)
        assert cancelled and cancelled[0][1] < cancelled[0][2]  # it happened mid-run
        # adaptive scaling submits a job in place of the cancelled one
        deadline = time.monotonic() + 60
        while len([j for j in slurm.jobs() if j["name"] == "dask-worker"]) < 3 and time.monotonic() < deadline:
            time.sleep(1)
        worker_jobs = {j["id"]: j["state"] for j in slurm.jobs() if j["name"] == "dask-worker"}
    assert worker_jobs[cancelled[0][0]] == "CANCELLED" and len(worker_jobs) >= 3, worker_jobs
    assert result.table.id.is_unique and len(result.table) == N_CRYSTALS
    pd.testing.assert_frame_equal(results(tmp_path / "out"), local_run)
