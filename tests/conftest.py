"""Shared pytest fixtures, and the `slow` marker's switch."""
import os

import pytest

from tests.helpers import DATA

SLOW_ENV = "SCREEN_TEST_SLOW"


# ---- `slow`: end-to-end runs, skipped unless asked for (.ci/run asks: CI runs everything) ----------

def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help=f"also run the tests marked slow (end-to-end runs on real clusters); {SLOW_ENV}=1 does the same")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow") or os.environ.get(SLOW_ENV, "").strip() not in ("", "0"):
        return
    skip = pytest.mark.skip(reason=f"slow: run with --slow or {SLOW_ENV}=1 (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# ---- Dask clusters ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inprocess_client():
    """A Dask client on an in-process cluster (LocalCluster(processes=False): two one-thread workers in
    this process), one per test module, for tests of what a run computes (tables, ranks, flags,
    ensembles): it starts at once and its workers share this process's imports. Tests of what happens
    per worker process (a model loaded once per process, a worker's environment, a worker that dies)
    start a process cluster of their own (workflows.cluster.connection.connect)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def inprocess_run(inprocess_client):
    """`screen run`'s cluster option for the in-process cluster (--scheduler, as a user names a running
    cluster): for CLI runs whose test is about what the run writes or says, not its worker processes."""
    return ["--scheduler", inprocess_client.scheduler.address]


# ---- structure sources (tests/screening/sources/) ---------------------------------------------------

MP_TEST_KEY = "0123456789abcdef0123456789abcdef"  # mp-api insists on 32 characters


@pytest.fixture(scope="session")
def mp_test_server():
    """A local HTTP server speaking the Materials Project API, answering from mp_dev.csv.gz."""
    from tests.mp_server import MPTestServer

    with MPTestServer(DATA) as server:
        yield server


@pytest.fixture
def mp_api_env(mp_test_server, monkeypatch):
    """Environment for the real mp-api client to talk to mp_test_server and nothing else.

    Sockets may only connect to this machine while it is in use, so a request
    that would leave for the real Materials Project fails the test instead."""
    import socket

    connect = socket.socket.connect

    def local_only(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test tried to connect to {address}; only the local MP test server is allowed")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)
    monkeypatch.setenv("MP_API_KEY", MP_TEST_KEY)
    monkeypatch.setenv("MP_API_ENDPOINT", mp_test_server.endpoint)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("MPRESTER_MUTE_PROGRESS_BARS", "true")
    with mp_test_server.lock:
        mp_test_server.requests.clear()
        mp_test_server.faults.clear()
        mp_test_server.log.clear()
    mp_test_server.rate_limit = None
    mp_test_server.ignore_filters = False
    return mp_test_server


@pytest.fixture
def fresh_mp_server(mp_api_env, monkeypatch):
    """A test server of its own, for a test that changes the database (new_release below): the
    session's server stays as every other test expects it."""
    from tests.mp_server import MPTestServer

    with MPTestServer(DATA) as server:
        monkeypatch.setenv("MP_API_ENDPOINT", server.endpoint)
        yield server


def new_release(server, db_version: str) -> None:
    """The server now answers as a new database release. mp-api remembers each endpoint's
    /heartbeat (db_version) for the life of the process, so this process forgets it."""
    from mp_api.client.core.client import _Rester

    server.data.db_version = db_version
    _Rester._get_heartbeat_info.cache_clear()


@pytest.fixture(scope="session")
def mp_dev_source():
    """LocalSource over the shared mp_dev.csv.gz, read once per session."""
    from screening.sources.local import LocalSource

    return LocalSource(DATA)

# ---- end of structure source fixtures -----------------------------------------------------


# ---- training ------------------------------------------------------------------------------

@pytest.fixture
def one_thread():
    """Bit-identical runs need one thread: multi-threaded float sums vary in the last bits."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- the model's two paths for its edge work (screening/kernels.py) ---------------------------

@pytest.fixture(params=["c", "torch"])
def kernel(request, monkeypatch):
    """The test runs once with the C kernel and once with torch's ops, each chosen as a process
    chooses it (SCREEN_KERNEL); the C case skips, saying why, where the kernel cannot be built."""
    from screening import kernels
    from screening.errors import ScreenError

    monkeypatch.setenv("SCREEN_KERNEL", request.param)
    monkeypatch.setattr(kernels, "_library", kernels._Library())  # decided anew, for this test
    try:
        chosen = kernels.backend()
    except ScreenError as e:
        pytest.skip(str(e))
    assert chosen.name == request.param
    return chosen


# ---- a real Slurm (tests/slurm.py) -----------------------------------------------------------

@pytest.fixture(scope="session")
def slurm():
    """One real Slurm for the whole session, its SLURM_CONF in the environment; skipped, with the
    reason, only where the packages cannot be installed."""
    import shutil
    import tempfile

    from tests.slurm import Slurm, install

    reason = install()
    if reason:
        pytest.skip(reason)
    # not under pytest's private (0700) folders: munged wants every folder above its socket open to all
    cluster = Slurm(tempfile.mkdtemp(prefix="screen-slurm-"))
    with pytest.MonkeyPatch.context() as mp:
        try:
            cluster.start()
            mp.setenv("SLURM_CONF", str(cluster.conf))
            yield cluster
        finally:
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def data32():
    """The first 32 crystals of the shared data as a GraphSet, with their TASKS targets."""
    from screening.featurize import featurize
    from screening.graphset import GraphSet
    from tests.helpers import mp_structures

    structures, targets = mp_structures(32)
    return GraphSet.from_graphs([featurize(s) for s in structures], targets)


# ---- a tiny trained model (2 epochs on 40 crystals), for runs that need one but not its accuracy ----
@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    from screening.featurize import FeaturizerSettings, featurize
    from screening.graphset import GraphSet
    from screening.train import TrainSettings, train
    from tests.helpers import TASKS, mp_structures

    out = tmp_path_factory.mktemp("model")
    structures, targets = mp_structures(40)
    data = GraphSet.from_graphs([featurize(s) for s in structures], targets)
    train(data, data, TrainSettings.paper(tasks=TASKS, epochs=2, batch_size=20, atom_fea_len=16, h_fea_len=16,
                                          n_conv=1), out, FeaturizerSettings())
    return str(out / "best.pt")


# ---- the default `screen run` (tests/cli/test_cli_everyday.py, tests/workflows/test_html_report.py) ----

@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """`screen run` with its defaults (substitution candidates without an MP key, the bundled ensemble)
    on a small system typed in another order than the parsed query's (Fe-Li-O): its terminal output,
    --out and --cache folders. One run for the terminal output's tests and report.html's. (A worker
    process: its CHGNet relaxations on an in-process cluster ran minutes longer, not shorter.)"""
    from typer.testing import CliRunner

    from cli import app

    tmp = tmp_path_factory.mktemp("default-run")
    r = CliRunner().invoke(app, ["run", "--query", "O-Li-Fe", "--workers", "1", "--dashboard", ":0",
                                 "--cache", str(tmp / "c"), "--out", str(tmp / "o")], env={"MP_API_KEY": ""})
    assert r.exit_code == 0, r.output
    return r.output, tmp / "o", tmp / "c"
