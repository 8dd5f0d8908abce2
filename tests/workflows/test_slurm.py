"""Screening runs on a real Slurm (tests/slurm.py): workers as jobs, PBS through Slurm's qsub
wrappers, a worker job cancelled mid-run, and a scheduled campaign of whole-run batch jobs.
Each run must give exactly the table a local run gives."""
import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from tests.helpers import DATA
from tests.slurm import GPUS, OTHER_PARTITION

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


def test_a_worker_job_cancelled_mid_run_loses_and_duplicates_nothing(slurm, local_run, model_path, tmp_path):  # noqa: F811
    from workflows.cluster.connection import ClusterSettings, connect
    from workflows.provenance import where
    from workflows.run.options import PipelineSettings
    from workflows.run.pipeline import run_screening

    spec = ClusterSettings(jobqueue="slurm", workers=2, memory_per_worker="1GiB", dashboard="127.0.0.1:0",
                           log_dir=str(tmp_path / "out" / "logs"))
    opts = PipelineSettings(query=QUERY, source=f"local:{DATA}", model=model_path, device="cpu", partition_size=2,
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


def test_workers_retire_before_the_walltime_and_new_jobs_replace_them(slurm, tmp_path):
    from workflows.cluster.connection import ClusterSettings, connect
    from workflows.provenance import where

    spec = ClusterSettings(jobqueue="slurm", workers=1, memory_per_worker="1GiB", dashboard="127.0.0.1:0",
                           walltime="00:05:00", worker_lifetime="00:00:15", log_dir=str(tmp_path / "logs"))
    seen = []
    with connect(spec) as client:
        deadline = time.monotonic() + 180
        while len(seen) < 2 and time.monotonic() < deadline:
            try:
                seen += [w["job"] for w in client.run(where).values() if w["job"] not in seen]
            except OSError:
                pass
            time.sleep(1)
        assert client.submit(sum, [1, 2, 3], pure=False).result(timeout=60) == 6
        states = {j["id"]: j["state"] for j in slurm.jobs()}
    assert len(seen) == 2, seen
    assert states[seen[0]] == "COMPLETED"  # it left on its own, before Slurm had to kill it


def test_scheduled_campaign_reruns_do_only_what_changed(slurm, local_run, model_path, tmp_path):  # noqa: F811
    """Run 1 (screen submit --campaign) screens a source missing 10 crystals; run 2, the scheduled
    next job, finds nothing new; run 3, after the source gained the 10, processes exactly those."""
    rows = pd.read_csv(DATA)
    rows = rows[rows.material_id.isin(local_run.id)]
    later = sorted(rows.material_id)[-10:]
    rows[~rows.material_id.isin(later)].to_csv(tmp_path / "src.csv", index=False)
    campaign = tmp_path / "li-fe-o.yaml"
    campaign.write_text(f"""
name: li-fe-o
query: {QUERY}
source: local:src.csv             # relative to this file
reference: local:{DATA}
model: {model_path}
out: out
cache: cache
partition_size: 8
cluster: {{workers: 1, memory: 1GiB, overcommit: true}}
schedule: {{every: 1d}}
""")
    out = tmp_path / "out"
    r = runner.invoke(app, ["submit", "--campaign", str(campaign)])
    assert r.exit_code == 0, r.output
    assert f"@daily sbatch {out / 'screen.sbatch'}" in r.output
    first = re.search(r"submitted batch job (\d+)", r.output).group(1)
    script = (out / "screen.sbatch").read_text()  # in the run folder, to read and submit again
    assert "#SBATCH --ntasks=3" in script and "--runner slurm" in script and f"--out {out}" in script

    def run_scheduled(n: int) -> dict:
        """Wait for the n-th job of the campaign; start the (n+1)-th, the scheduled one, now."""
        job = pd.read_csv(out / "jobs.csv", dtype=str).job_id.tolist()[n - 1]
        state = finished(slurm, job)
        assert state == "COMPLETED", (out / "logs" / f"screen-{job}.out").read_text()[-3000:]
        s = summary(out)
        assert s["provenance"]["batch_job"] == job
        return s

    s1 = run_scheduled(1)
    assert s1["provenance"]["batch_job"] == first and s1["candidates"] == s1["featurized"] == N_CRYSTALS - 10
    jobs = pd.read_csv(out / "jobs.csv", dtype=str)
    assert len(jobs) == 2 and jobs.begin.tolist() == ["now", "now+1days"]  # the next run, a day later
    assert {j["id"]: j["state"] for j in slurm.jobs()}[jobs.job_id[1]] == "PENDING"

    slurm.run(["scontrol", "update", f"JobId={jobs.job_id[1]}", "StartTime=now"])  # tomorrow is now
    s2 = run_scheduled(2)
    assert s2["structure_cache_hit"] and s2["featurized"] == s2["inferred"] == 0
    assert s2["changes"]["note"] == "no changes" and not (out / "changes.csv").read_text().strip().split("\n")[1:]

    (tmp_path / "src.csv").unlink()
    rows.to_csv(tmp_path / "src.csv", index=False)  # the source gained 10 crystals
    slurm.run(["scontrol", "update", f"JobId={pd.read_csv(out / 'jobs.csv', dtype=str).job_id[2]}", "StartTime=now"])
    s3 = run_scheduled(3)
    assert s3["candidates"] == N_CRYSTALS and s3["featurized"] == s3["inferred"] == 10
    changes = pd.read_csv(out / "changes.csv", dtype={"id": str})
    assert sorted(changes.id[changes.change == "new"]) == later and s3["changes"]["new"] == 10
    assert set(changes.change) <= {"new", "moved"}  # the others only moved down the ranking
    # batch mode gives the local run's table (the source column names the campaign's own file)
    pd.testing.assert_frame_equal(results(out).drop(columns="source"), local_run.drop(columns="source"))
    job = s3["provenance"]["batch_job"]
    assert f"{QUERY}: 32 of 32 candidates" in (out / "logs" / f"screen-{job}.out").read_text()
    p = s3["provenance"]
    assert p["worker_jobs"] == [job] and p["batch_nodes"] == slurm.host and p["model_hash"] == s3["model_hash"]
    assert p["source_data_version"].startswith(f"local:{tmp_path / 'src.csv'} sha256=")
    assert p["source_data_version"] != s1["provenance"]["source_data_version"]
    assert p["versions"]["screen"] and p["versions"]["torch"] and p["versions"]["dask-jobqueue"]

    r = runner.invoke(app, ["status", "--campaign", str(campaign)])
    assert r.exit_code == 0, r.output
    assert r.output.count("COMPLETED") == 3 and "PENDING" in r.output and "10 new" in r.output


def test_a_campaign_of_two_queries_screens_each_in_one_job(slurm, local_run, model_path, tmp_path):  # noqa: F811
    campaign = tmp_path / "two.yaml"
    campaign.write_text(f"""
queries: [{QUERY}, Na-Fe-O]
source: local:{DATA}
model: {model_path}
out: out
cache: cache
cluster: {{workers: 1, memory: 1GiB, overcommit: true, partition: {OTHER_PARTITION}, account: chem, gpus: {GPUS}}}
""")
    r = runner.invoke(app, ["submit", "--campaign", str(campaign)])
    assert r.exit_code == 0, r.output
    job = re.search(r"submitted batch job (\d+)", r.output).group(1)
    out = tmp_path / "out"
    assert finished(slurm, job) == "COMPLETED", (out / "logs" / f"screen-{job}.out").read_text()[-3000:]
    # the partition, account and GPU request reached the scheduler, which ran the job with them
    record = slurm.run(["scontrol", "show", "job", job]).stdout
    assert f"Partition={OTHER_PARTITION}" in record and "Account=chem" in record
    assert re.search(rf"TresPerNode=gres[/:]gpu:{GPUS}\b", record), record
    first, second = out / QUERY, out / "Na-Fe-O"
    pd.testing.assert_frame_equal(results(first), local_run)  # the same table as a run of that query alone
    na = results(second)
    assert len(na) == summary(second)["candidates"] > 0 and na.formula.str.contains("Na").all()
    assert summary(first)["provenance"]["batch_job"] == summary(second)["provenance"]["batch_job"] == job
    r = runner.invoke(app, ["status", "--campaign", str(campaign)])
    assert r.exit_code == 0 and f"latest results of {QUERY}" in r.output and "latest results of Na-Fe-O" in r.output


def campaign_file(tmp_path: Path, model_path: str, cluster: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"query: {QUERY}\nsource: local:{DATA}\nmodel: {model_path}\nout: out\n"
                    f"cluster: {{workers: 1, memory: 1GiB, {cluster}}}\n")
    return path


def test_a_partition_the_scheduler_lacks_is_one_line_and_submits_nothing(slurm, model_path, tmp_path):  # noqa: F811
    r = runner.invoke(app, ["submit", "--campaign", str(campaign_file(tmp_path, model_path, "partition: nope"))])
    assert r.exit_code == 2 and r.output.startswith("error: sbatch: ") and "Invalid partition name" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "out" / "jobs.csv").exists()


def test_more_gpus_than_the_node_has_is_a_job_that_status_says_cannot_start(slurm, model_path, tmp_path):  # noqa: F811
    """Slurm accepts the job and keeps it pending for good; `screen status` shows its reason."""
    campaign = campaign_file(tmp_path, model_path, f"gpus: {GPUS + 1}")
    r = runner.invoke(app, ["submit", "--campaign", str(campaign)])
    assert r.exit_code == 0, r.output
    job = re.search(r"submitted batch job (\d+)", r.output).group(1)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = runner.invoke(app, ["status", "--campaign", str(campaign)])
            if "PartitionConfig" in r.output:
                break
            time.sleep(1)
        assert r.exit_code == 0 and "PENDING" in r.output and "PartitionConfig" in r.output, r.output
    finally:
        slurm.run(["scancel", job])


def test_li_x_o_through_workers_as_jobs_pbs_wrappers_and_one_batch_job_equals_local(slurm, model_path, tmp_path,  # noqa: F811
                                                                                    monkeypatch):
    """The issue's own query, Li-*-O (every ternary Li-X-O of ../shared/data), by all three batch paths."""
    monkeypatch.chdir(tmp_path)

    def run(name, *extra):
        r = runner.invoke(app, ["run", "--query", "Li-*-O", "--source", f"local:{DATA}", "--model", model_path,
                                "--dashboard", ":0", "--memory", "1GiB", "--cache", str(tmp_path / f"{name}-cache"),
                                "--out", str(tmp_path / name), *extra])
        assert r.exit_code == 0, r.output
        return results(tmp_path / name)

    local = run("local", "--workers", "1")
    assert len(local) > 500
    for kind in ("slurm", "pbs"):
        pd.testing.assert_frame_equal(run(kind, "--jobqueue", kind, "--workers", "2"), local)
    out = tmp_path / "batch"
    r = runner.invoke(app, ["submit", "--query", "Li-*-O", "--source", f"local:{DATA}", "--model", model_path,
                            "--memory", "1GiB", "--workers", "1", "--overcommit", "--cache", str(tmp_path / "batch-cache"),
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    job = re.search(r"submitted batch job (\d+)", r.output).group(1)
    assert finished(slurm, job, timeout=600) == "COMPLETED", (out / "logs" / f"screen-{job}.out").read_text()[-3000:]
    assert summary(out)["provenance"]["batch_job"] == job
    pd.testing.assert_frame_equal(results(out), local)


def test_the_batch_job_runs_screen_even_with_a_cli_py_where_it_was_submitted(slurm, local_run, model_path, tmp_path,  # noqa: F811
                                                                              monkeypatch):
    """The job starts in the submit folder: a user's cli.py there was what `python -m cli` ran."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cli.py").write_text("raise SystemExit('the cli.py of the submit folder ran')\n")
    r = runner.invoke(app, ["submit", "--query", QUERY, "--source", f"local:{DATA}", "--model", model_path,
                            "--memory", "1GiB", "--workers", "1", "--overcommit", "--partition-size", "8",
                            "--cache", "cache", "--out", "out"])
    assert r.exit_code == 0, r.output
    job = re.search(r"submitted batch job (\d+)", r.output).group(1)
    log = tmp_path / "out" / "logs" / f"screen-{job}.out"
    assert finished(slurm, job) == "COMPLETED", log.read_text()[-3000:]
    assert "the cli.py of the submit folder ran" not in log.read_text()
    assert summary(tmp_path / "out")["provenance"]["batch_job"] == job
    pd.testing.assert_frame_equal(results(tmp_path / "out"), local_run)
