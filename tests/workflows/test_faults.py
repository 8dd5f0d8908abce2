"""Lost workers, killed workers, worker-side errors, full disks and half-written outputs: one line each,
never a hang, a traceback or a mixed set of outputs. Real LocalClusters: worker processes where a
worker dies or prints, the in-process cluster where the test is about outputs and caches; real tmpfs."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psutil
import pytest
from typer.testing import CliRunner

from cli import app
from screening.errors import ScreenError
from tests.helpers import DATA
from workflows.cluster.connection import ClusterSettings, connect
from workflows.cluster.watch import each_result, wait_all

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def kill_own_worker():
    os.kill(os.getpid(), signal.SIGKILL)


def raise_value_error():
    raise ValueError("a bug on the worker")


def raise_screen_error():
    raise ScreenError("--source mp: HTTP 401: Invalid API key")


def fill_disk(path):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.fixture(scope="module")
def cluster_client():
    with connect(ClusterSettings(workers=1, dashboard=":0")) as client:
        yield client


def test_worker_errors_are_one_line_and_the_traceback_goes_to_the_log(cluster_client, tmp_path):
    log = tmp_path / "run" / "error.log"
    with pytest.raises(ScreenError) as e:
        wait_all(cluster_client, [cluster_client.submit(raise_value_error, pure=False)], log=log)
    assert str(e.value) == (f"raise_value_error failed on a worker: ValueError: a bug on the worker "
                            f"(traceback in {log})")
    assert "Traceback" in log.read_text() and 'raise ValueError("a bug on the worker")' in log.read_text()
    with pytest.raises(ScreenError, match=r"^--source mp: HTTP 401: Invalid API key$"):
        wait_all(cluster_client, [cluster_client.submit(raise_screen_error, pure=False)], log=log)
    with pytest.raises(ScreenError, match=r"^no space left on device writing /cache/graphs; free some space"):
        wait_all(cluster_client, [cluster_client.submit(fill_disk, "/cache/graphs", pure=False)], log=log)


def square(x):
    return x * x


def test_each_result_keeps_at_most_window_tasks_submitted_and_fails_in_one_line(cluster_client, tmp_path):
    finished = []  # results seen when each job is submitted

    def job(i):
        def submit():
            submitted.append(len(finished))
            return cluster_client.submit(square, i, pure=False)
        return submit
    submitted = []
    for r in each_result(cluster_client, [job(i) for i in range(10)], window=3):
        finished.append(r)
    assert sorted(finished) == [i * i for i in range(10)]
    # jobs 0-2 at once, then job k as result k - 2 comes in, before it is handed on (k - 3 handed
    # on by then): never more than 3 in flight
    assert submitted == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    def held():  # every future was released as its result came (the scheduler hears of it soon)
        return [k for k in cluster_client.who_has() if k.startswith("square-")]
    deadline = time.monotonic() + 10
    while held() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not held()
    jobs = [job(1), lambda: cluster_client.submit(raise_value_error, pure=False), job(2)]
    with pytest.raises(ScreenError, match=r"^raise_value_error failed on a worker: ValueError: a bug on the worker"):
        list(each_result(cluster_client, jobs, window=2, log=tmp_path / "error.log"))


def test_a_task_that_keeps_killing_its_worker_fails_in_one_line(cluster_client):
    t0 = time.time()
    with pytest.raises(ScreenError, match=r"^kill_own_worker: the task killed its worker 4 times"):
        wait_all(cluster_client, [cluster_client.submit(kill_own_worker, pure=False)], no_worker_timeout=120)
    assert time.time() - t0 < 90


@contextmanager
def standalone_cluster(n_workers: int):
    """A scheduler and workers without nannies, as separate processes (as on a real cluster):
    a killed worker stays dead."""
    def spawn(*args):
        return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    scheduler = spawn("scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0")
    address = None
    for line in scheduler.stderr:
        if "Scheduler at:" in line:
            address = line.split("Scheduler at:")[1].strip()
            break
    workers = [spawn("worker", address, "--no-nanny", "--nthreads", "1") for _ in range(n_workers)]
    try:
        yield address, workers
    finally:
        for p in workers + [scheduler]:
            p.kill()
            p.wait(10)


def test_no_live_worker_fails_after_the_timeout_instead_of_waiting_for_ever():
    with standalone_cluster(2) as (address, workers):
        with connect(ClusterSettings(scheduler=address)) as client:
            client.wait_for_workers(2, timeout=60)
            futures = [client.submit(time.sleep, 300, pure=False) for _ in range(2)]
            for w in workers:
                w.kill()  # SIGKILL: no goodbye to the scheduler
            t0 = time.time()
            with pytest.raises(ScreenError, match=r"^no Dask worker has been alive for 3 s, with 2 of 2 tasks left"):
                wait_all(client, futures, no_worker_timeout=3)
            assert time.time() - t0 < 30


def test_dashboard_on_a_bare_port_listens_where_its_link_points():
    with connect(ClusterSettings(workers=1, dashboard=":0")) as client:
        link = client.dashboard_link
        port = int(link.split(":")[2].split("/")[0])
        listening = {c.laddr for c in psutil.Process().net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        assert link.startswith("http://127.0.0.1:")
        assert [a.ip for a in listening if a.port == port] == ["127.0.0.1"]
        scheduler = client.scheduler.address  # the scheduler too: this machine only
        assert scheduler.startswith("tcp://127.0.0.1:")


@pytest.mark.parametrize("args, message", [
    (["--memory", "10MB"], "--memory 10MB: a worker needs at least 256 MiB"),
    (["--memory", "lots"], "--memory lots: not a size"),
    (["--dashboard", "localhost:http"], "--dashboard localhost:http: expected HOST:PORT"),
    (["--no-worker-timeout", "0"], "--no-worker-timeout 0: must be more than 0 seconds"),
])
def test_cluster_options_are_checked_before_a_cluster_starts(tmp_path, args, message):
    r = runner.invoke(app, ["run", "--query", "Li-*-O", "--source", f"local:{DATA}", *args,
                            "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0]


def test_a_worker_side_error_prints_one_line_without_dasks_compute_failed_block(mp_api_env, model_path, tmp_path):  # noqa: F811
    """The whole CLI in its own process: the terminal sees everything the client and workers print.
    The client's listing goes through; the workers' fetches of the entries (material_ids) get 401."""
    mp_api_env.fail("/materials/summary", 401, times=None, with_param="material_ids")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "cli", "run", "--query", "Li-Fe-O", "--source", "mp",
                        "--model", model_path, "--workers", "1", "--dashboard", ":0",
                        "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Compute Failed" not in r.stderr and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: --source mp:") and "HTTP 401" in errors[0], r.stderr
    assert "fetching candidates" in r.stdout  # progress lines although the output is not a terminal
    assert not (tmp_path / "o" / "results.csv").exists()
    asked = [params for path, params in mp_api_env.requests if path == "/materials/summary"]
    assert any("material_ids" in p for p in asked)  # a worker's fetch got the 401, after the client's listing


def run_cli(tmp_path, out, cluster, model, *extra):
    """`screen run` on `cluster` (inprocess_run: these tests are about outputs and caches, not workers)."""
    return runner.invoke(app, ["run", "--query", "Li-Fe-O", "--source", f"local:{DATA}", "--model", model,
                               *cluster, "--cache", str(tmp_path / "c"), "--out", str(out), *extra])


def test_outputs_are_one_set_a_failed_write_keeps_the_previous_set(tmp_path, model_path, inprocess_run):  # noqa: F811
    out = tmp_path / "o"
    r = run_cli(tmp_path, out, inprocess_run, model_path, "--top", "5")
    assert r.exit_code == 0, r.output
    assert "screening partitions: 1/1" in r.output  # progress lines in non-terminal output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"results.csv", "summary.json", "hull_vs_gap.png", "report.html"}
    # the plot's name is taken by a folder of the user's: the new set cannot be published whole
    (out / "hull_vs_gap.png").unlink()
    (out / "hull_vs_gap.png").mkdir()
    (out / "hull_vs_gap.png" / "keep.txt").write_text("mine")
    r = run_cli(tmp_path, out, inprocess_run, model_path, "--top", "3")
    assert r.exit_code == 2 and "the previous results were kept" in r.output, r.output
    assert (out / "results.csv").read_bytes() == before["results.csv"]
    assert (out / "summary.json").read_bytes() == before["summary.json"]
    assert (out / "hull_vs_gap.png" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["hull_vs_gap.png", "report.html", "results.csv", "summary.json"]
    # a parquet run replaces the csv set: no results.csv of another run is left beside it
    (out / "hull_vs_gap.png" / "keep.txt").unlink()
    (out / "hull_vs_gap.png").rmdir()
    r = run_cli(tmp_path, out, inprocess_run, model_path, "--top", "3", "--format", "parquet")
    assert r.exit_code == 0, r.output
    # (changes.csv: what changed since the csv run)
    assert sorted(p.name for p in out.iterdir()) == ["changes.csv", "hull_vs_gap.png", "report.html", "results.parquet",
                                                     "summary.json"]
    assert len(pd.read_parquet(out / "results.parquet")) == 3
    assert json.loads((out / "summary.json").read_text())["ranked"] == 3


@contextmanager
def tiny_disk(path: Path, size: str = "4m"):
    """A real small filesystem (tmpfs; needs root), so writes fail with ENOSPC as on a full disk."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave: int) -> Path:
    """Fill the filesystem of `path` until only about `leave` bytes are free."""
    filler = path / "filler"
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave, 0))
    return filler


def test_a_full_disk_under_cache_is_one_line_and_leaves_only_what_clear_stale_finds(tmp_path, model_path,  # noqa: F811
                                                                                     inprocess_run):
    def run():
        return runner.invoke(app, ["run", "--query", "Li-Fe-O", "--source", f"local:{DATA}", "--model", model_path,
                                   *inprocess_run, "--cache", str(cache), "--out", str(tmp_path / "o")])

    with tiny_disk(tmp_path / "disk") as disk:
        cache = disk / "cache"
        r = run()
        assert r.exit_code == 0, r.output
        expected = pd.read_csv(tmp_path / "o" / "results.csv")
        shutil.rmtree(cache / "graphs")
        shutil.rmtree(cache / "predictions")
        filler = fill(disk, 8_000)  # the candidate list is cached: the workers' graph store write fails
        r = run()
        assert r.exit_code == 2, r.output
        errors = [line for line in r.output.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and errors[0].startswith("error: no space left on device"), r.output
        assert "Traceback" not in r.output and "Compute Failed" not in r.output
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "o" / "results.csv"), expected)  # kept
        # nothing half-written is served, and what is left is what `clear --stale` finds
        assert runner.invoke(app, ["cache", "verify", "--cache", str(cache)]).exit_code == 0
        stale = runner.invoke(app, ["cache", "clear", "--stale", "--min-age", "0", "--cache", str(cache)])
        assert stale.exit_code == 0
        left = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())
        assert [p for p in left if "/units/" in p or "/tmp/" in p or ".part" in p or ".tmp-" in p] == []
        # space again: the same run completes, with the same answer
        filler.unlink()
        r = run()
        assert r.exit_code == 0, r.output
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "o" / "results.csv").drop(columns="rank", errors="ignore"),
                                      expected.drop(columns="rank", errors="ignore"))


def test_a_full_disk_under_out_is_one_line_and_keeps_the_previous_results(tmp_path, model_path,  # noqa: F811
                                                                          inprocess_run):
    with tiny_disk(tmp_path / "disk") as disk:
        out = disk / "o"
        r = run_cli(tmp_path, out, inprocess_run, model_path)
        assert r.exit_code == 0, r.output
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        fill(disk, 4_000)
        r = run_cli(tmp_path, out, inprocess_run, model_path, "--top", "2")
        assert r.exit_code == 2, r.output
        assert f"--out {out}: no space left on device" in r.output and "previous results were kept" in r.output
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
