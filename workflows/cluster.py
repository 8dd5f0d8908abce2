"""Where the work runs: a local Dask cluster, an existing scheduler, or a Slurm/PBS job.

`connect()` is a context manager yielding a `distributed.Client`; it closes
what it started and leaves alone what it only connected to.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator, Optional

from screening.errors import ScreenError


@dataclass
class ClusterSpec:
    scheduler: Optional[str] = None  # tcp://host:8786 of a running cluster
    jobqueue: Optional[str] = None  # slurm | pbs
    workers: int = 2
    threads_per_worker: int = 1
    memory_per_worker: str = "4GiB"
    dashboard: str = "127.0.0.1:0"  # ":8787" for the usual port; :0 picks a free one
    gpus_per_worker: int = 0  # advertised as the Dask worker resource "GPU"
    queue: Optional[str] = None
    account: Optional[str] = None
    walltime: str = "01:00:00"


@contextlib.contextmanager
def connect(spec: ClusterSpec) -> Iterator["distributed.Client"]:
    from distributed import Client

    if spec.scheduler:
        try:
            client = Client(spec.scheduler, timeout="10s")
        except (OSError, TimeoutError) as e:
            raise ScreenError(f"--scheduler {spec.scheduler}: cannot connect ({e})") from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = _jobqueue_cluster(spec) if spec.jobqueue else _local_cluster(spec)
    client = Client(cluster)
    try:
        if spec.jobqueue:
            cluster.scale(jobs=spec.workers)
        yield client
    finally:
        client.close()
        cluster.close()


def _local_cluster(spec: ClusterSpec):
    from distributed import LocalCluster

    if spec.workers < 1 or spec.threads_per_worker < 1:
        raise ScreenError(f"--workers {spec.workers} / --threads {spec.threads_per_worker}: need at least 1")
    resources = {"GPU": spec.gpus_per_worker} if spec.gpus_per_worker else None
    return LocalCluster(n_workers=spec.workers, threads_per_worker=spec.threads_per_worker,
                        processes=True, memory_limit=spec.memory_per_worker,
                        dashboard_address=spec.dashboard, resources=resources,
                        silence_logs=logging.ERROR)


def _jobqueue_cluster(spec: ClusterSpec):
    try:
        import dask_jobqueue
    except ImportError:
        raise ScreenError(f"--jobqueue {spec.jobqueue}: needs dask-jobqueue (pip install 'screen[jobqueue]')") from None
    classes = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}
    if spec.jobqueue not in classes:
        raise ScreenError(f"--jobqueue {spec.jobqueue}: choose slurm or pbs")
    extra = ["--resources GPU=%d" % spec.gpus_per_worker] if spec.gpus_per_worker else []
    # The batch system must hand the job its GPUs too; PBS sites name GPU resources too
    # differently to guess, so there the user adds their own directive.
    directives = [f"--gres=gpu:{spec.gpus_per_worker}"] if spec.gpus_per_worker and spec.jobqueue == "slurm" else []
    return classes[spec.jobqueue](
        cores=spec.threads_per_worker, processes=1, memory=spec.memory_per_worker,
        walltime=spec.walltime, queue=spec.queue, account=spec.account,
        worker_extra_args=extra, job_extra_directives=directives,
        scheduler_options={"dashboard_address": spec.dashboard})


def dashboard_link(client) -> str:
    return client.dashboard_link or ""
