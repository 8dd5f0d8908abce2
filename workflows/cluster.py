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
    dashboard: str = "127.0.0.1:0"  # ":8787" for the usual port; :0 picks a free one (on 127.0.0.1)
    gpus_per_worker: int = 0  # advertised as the Dask worker resource "GPU"
    queue: Optional[str] = None
    account: Optional[str] = None
    walltime: str = "01:00:00"

    def check(self) -> None:
        """The options a cluster is started with, before it starts: one line per mistake."""
        from dask.utils import parse_bytes

        if self.workers < 1 or self.threads_per_worker < 1:
            raise ScreenError(f"--workers {self.workers} / --threads {self.threads_per_worker}: need at least 1")
        try:
            memory = parse_bytes(self.memory_per_worker)
        except (ValueError, TypeError):
            raise ScreenError(f"--memory {self.memory_per_worker}: not a size (say 4GiB or 500MB)") from None
        if memory < MIN_WORKER_MEMORY:
            raise ScreenError(f"--memory {self.memory_per_worker}: a worker needs at least "
                              f"{MIN_WORKER_MEMORY >> 20} MiB (Python, torch and the model alone take about that)")
        host, _, port = self.dashboard_address().rpartition(":")
        if not port.isdigit():
            raise ScreenError(f"--dashboard {self.dashboard}: expected HOST:PORT or :PORT (:0 picks a free port)")

    def dashboard_address(self) -> str:
        """Where the dashboard listens: a bare port means this machine only (127.0.0.1), so the
        printed link and the listening address are the same; 0.0.0.0:PORT opens it to the network."""
        text = self.dashboard.strip()
        if text.isdigit():
            text = ":" + text
        return "127.0.0.1" + text if text.startswith(":") else text


MIN_WORKER_MEMORY = 256 << 20


@contextlib.contextmanager
def connect(spec: ClusterSpec) -> Iterator["distributed.Client"]:
    from distributed import Client

    spec.check()
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

    resources = {"GPU": spec.gpus_per_worker} if spec.gpus_per_worker else None
    try:
        return _start_local(spec, resources)
    except (RuntimeError, OSError, TimeoutError) as e:
        raise ScreenError(f"cannot start {spec.workers} local Dask workers ({type(e).__name__}: {e})") from None


def _start_local(spec: ClusterSpec, resources):
    from distributed import LocalCluster

    return LocalCluster(n_workers=spec.workers, threads_per_worker=spec.threads_per_worker,
                        processes=True, memory_limit=spec.memory_per_worker,
                        dashboard_address=spec.dashboard_address(), resources=resources,
                        # Task errors reach the user once, as one line (workflows/watch.py); at ERROR
                        # each would also print Dask's multi-line "Compute Failed" block.
                        silence_logs=logging.CRITICAL)


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
        scheduler_options={"dashboard_address": spec.dashboard_address()})


def dashboard_link(client) -> str:
    link = client.dashboard_link or ""
    if "0.0.0.0" in link or "[::]" in link:
        link += " (listening on every network interface)"
    return link
