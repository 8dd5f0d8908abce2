"""Cluster connections: jobqueue job scripts, an existing scheduler, bad addresses."""
import pytest

from screening.errors import ScreenError
from workflows.cluster.connection import ClusterSettings, _jobqueue_cluster, connect


@pytest.mark.parametrize("kind, gpu_line", [("slurm", "#SBATCH --gres=gpu:1"), ("pbs", None)])
def test_jobqueue_job_script_asks_for_what_the_run_needs(kind, gpu_line):
    cluster = _jobqueue_cluster(ClusterSettings(jobqueue=kind, threads_per_worker=4, memory_per_worker="8GiB",
                                                gpus_per_worker=1, queue="gpu", walltime="02:00:00",
                                                dashboard="127.0.0.1:0"))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "--nthreads 4" in script and "--resources GPU=1" in script and "02:00:00" in script
    assert ("gpu" in script) and (gpu_line is None or gpu_line in script)


@pytest.mark.parametrize("option, spec", [("--queue", dict(queue="cpu\n#SBATCH --exclusive")),
                                           ("--account", dict(account="chem lab"))])
def test_a_queue_or_account_that_would_break_a_job_script_line_is_refused(option, spec):
    """dask-jobqueue writes them into #SBATCH / #PBS lines as given, as screen submit does."""
    with pytest.raises(ScreenError, match=f"^{option} .*: use letters, digits"):
        ClusterSettings(jobqueue="slurm", **spec).check()


def test_unknown_jobqueue_and_unreachable_scheduler_are_clear_errors():
    with pytest.raises(ScreenError, match="--jobqueue lsf: choose slurm or pbs"):
        _jobqueue_cluster(ClusterSettings(jobqueue="lsf"))
    with pytest.raises(ScreenError, match="--scheduler tcp://127.0.0.1:1: cannot connect"):
        with connect(ClusterSettings(scheduler="tcp://127.0.0.1:1")):
            pass


def test_connects_to_an_existing_scheduler_and_leaves_it_running():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with connect(ClusterSettings(scheduler=cluster.scheduler_address)) as client:
            assert client.submit(sum, [1, 2, 3]).result() == 6
        with Client(cluster.scheduler_address) as again:  # still up after we disconnected
            assert len(again.scheduler_info()["workers"]) == 1
