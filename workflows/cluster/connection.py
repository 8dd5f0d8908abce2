"""Where the work runs: a local Dask cluster, an existing scheduler, workers as Slurm/PBS jobs,
or the tasks of one Slurm batch job (`screen submit`).

`connect()` is a context manager yielding a `distributed.Client`; it closes
what it started and leaves alone what it only connected to.

Batch workers run on other machines, started by the batch system, so they are told what the
client already knows: the same interpreter (`python`, the client's own `sys.executable`), the
same code (`PYTHONPATH` starts with the folder this package was imported from, so a source
checkout's workers never fall back to another installed copy), the thread settings Dask gives
its local workers, and where to write their logs (the run's folder, not `slurm-N.out` wherever
the job happened to start).
"""
from __future__ import annotations

import contextlib
import logging
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from screening.errors import ScreenError


@dataclass
class ClusterSettings:
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
    log_dir: Optional[str] = None  # batch workers' stdout/stderr (--jobqueue)
    python: str = field(default_factory=lambda: sys.executable)  # the interpreter batch workers run
    # --jobqueue: a worker retires after this long (give or take a tenth, at most a minute, so
    # they do not all leave at once) and a fresh job replaces it: set below the walltime, the
    # batch system never kills a worker in the middle of a task.
    worker_lifetime: Optional[str] = None
    runner: Optional[str] = None  # "slurm": this process is one task of a batch job (screen submit)
    scheduler_file: Optional[str] = None  # --runner: where the scheduler task writes its address

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
        for option, word in (("--queue", self.queue), ("--account", self.account)):
            if word is not None:
                check_word(option, word)
        for option, text in (("--walltime", self.walltime), ("--worker-lifetime", self.worker_lifetime)):
            if text is not None and walltime_seconds(text) is None:
                raise ScreenError(f"{option} {text}: expected a time above zero as [D-]HH:MM:SS or MM:SS, "
                                  f"minutes and seconds below 60")
        if self.worker_lifetime and walltime_seconds(self.worker_lifetime) >= walltime_seconds(self.walltime):
            raise ScreenError(f"--worker-lifetime {self.worker_lifetime}: must be shorter than --walltime "
                              f"{self.walltime}, or the batch system kills workers before they retire")

    def dashboard_address(self) -> str:
        """Where the dashboard listens: a bare port means this machine only (127.0.0.1), so the
        printed link and the listening address are the same; 0.0.0.0:PORT opens it to the network."""
        text = self.dashboard.strip()
        if text.isdigit():
            text = ":" + text
        return "127.0.0.1" + text if text.startswith(":") else text


MIN_WORKER_MEMORY = 256 << 20
# what goes into an #SBATCH line as it is: no space or newline can end the line or add another
_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@,-]*$")


def check_word(what: str, value: str) -> str:
    """A job name, partition or account, as it may stand in an #SBATCH line (screen submit's or
    dask-jobqueue's)."""
    if not isinstance(value, str) or not _WORD.match(value):
        raise ScreenError(f"{what} {value!r}: use letters, digits and . _ + @ , - only (no spaces or newlines), "
                          f"starting with a letter or digit")
    return value


def walltime_seconds(text: str) -> Optional[int]:
    """Seconds in a Slurm/PBS time ([D-]HH:MM:SS, D-HH:MM, HH:MM:SS, MM:SS), more than zero (Slurm reads 0
    as no limit at all); None if it is not one, or a field is out of range (01:61:00)."""
    days, dash, rest = text.strip().rpartition("-")
    parts = rest.split(":")
    if (dash and not days.isdigit()) or not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    numbers = [int(p) for p in parts]
    padding = [0] * (3 - len(numbers))  # D-HH:MM (days first: hours then minutes), else MM:SS
    hours, minutes, seconds = numbers + padding if dash else padding + numbers
    if minutes >= 60 or seconds >= 60 or (dash and hours >= 24):
        return None
    total = int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds
    return total or None


def code_root() -> Path:
    """The folder the screen packages were imported from (site-packages, or a source checkout)."""
    return Path(__file__).resolve().parents[2]  # <root>/workflows/cluster/connection.py


def worker_environment() -> Dict[str, str]:
    """What a batch worker's environment needs to compute exactly what a local worker does:
    Dask's own settings for the processes it starts (one BLAS/OpenMP thread, so float sums come
    out the same), then the client's code first on the path."""
    import dask
    import distributed  # noqa: F401  (loads its config)

    env = {k: str(v) for k, v in (dask.config.get("distributed.nanny.pre-spawn-environ") or {}).items()}
    env["PYTHONPATH"] = str(code_root())
    return env


def export_lines(env: Dict[str, str]) -> List[str]:
    """`export` lines for a job script; PYTHONPATH keeps what the job's environment already had."""
    lines = []
    for k, v in env.items():
        tail = '"${PYTHONPATH:+:$PYTHONPATH}"' if k == "PYTHONPATH" else ""
        lines.append(f"export {k}={shlex.quote(v)}{tail}")
    return lines


@contextlib.contextmanager
def connect(spec: ClusterSettings) -> Iterator["distributed.Client"]:
    from distributed import Client

    spec.check()
    if spec.runner:
        with _in_allocation(spec) as client:
            yield client
        return
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
            # adaptive at a fixed size, not scale(): a worker that retired or whose job was
            # cancelled is replaced by a new job
            cluster.adapt(minimum_jobs=spec.workers, maximum_jobs=spec.workers)
        yield client
    finally:
        client.close()
        cluster.close()


def _local_cluster(spec: ClusterSettings):
    from distributed import LocalCluster

    resources = {"GPU": spec.gpus_per_worker} if spec.gpus_per_worker else None
    try:
        return _start_local(spec, resources)
    except (RuntimeError, OSError, TimeoutError) as e:
        raise ScreenError(f"cannot start {spec.workers} local Dask workers ({type(e).__name__}: {e})") from None


def _start_local(spec: ClusterSettings, resources):
    from distributed import LocalCluster

    return LocalCluster(n_workers=spec.workers, threads_per_worker=spec.threads_per_worker,
                        processes=True, memory_limit=spec.memory_per_worker,
                        dashboard_address=spec.dashboard_address(), resources=resources,
                        # Task errors reach the user once, as one line (workflows/cluster/watch.py); at ERROR
                        # each would also print Dask's multi-line "Compute Failed" block.
                        silence_logs=logging.CRITICAL)


def _jobqueue_cluster(spec: ClusterSettings):
    try:
        import dask_jobqueue
    except ImportError:
        raise ScreenError(f"--jobqueue {spec.jobqueue}: needs dask-jobqueue (pip install 'screen[jobqueue]')") from None
    classes = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}
    if spec.jobqueue not in classes:
        raise ScreenError(f"--jobqueue {spec.jobqueue}: choose slurm or pbs")
    prologue = export_lines(worker_environment())
    more = {}
    if spec.jobqueue == "pbs" and spec.log_dir:
        # PBS has no job id in -o/-e names, and Slurm's qsub wrapper neither takes a folder there
        # nor reads #PBS -o/-e from the script; so the worker's output goes to its own file by
        # redirection, and qsub's own files (empty then) to fixed names in the same folder.
        log = Path(spec.log_dir)
        job_id = "${PBS_JOBID:-$SLURM_JOB_ID}"  # SLURM_JOB_ID: under Slurm's qsub wrapper
        prologue.append(f'exec >>{shlex.quote(str(log))}/dask-worker-"{job_id}".out '
                        f'2>>{shlex.quote(str(log))}/dask-worker-"{job_id}".err')
        more["job_cls"] = _pbs_job(log)
    extra = ["--resources GPU=%d" % spec.gpus_per_worker] if spec.gpus_per_worker else []
    if spec.worker_lifetime:
        lifetime = walltime_seconds(spec.worker_lifetime)
        extra += ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{min(60, lifetime // 10)}s"]
    # The batch system must hand the job its GPUs too; PBS sites name GPU resources too
    # differently to guess, so there the user adds their own directive.
    directives = [f"--gres=gpu:{spec.gpus_per_worker}"] if spec.gpus_per_worker and spec.jobqueue == "slurm" else []
    return classes[spec.jobqueue](
        cores=spec.threads_per_worker, processes=1, memory=spec.memory_per_worker,
        walltime=spec.walltime, queue=spec.queue, account=spec.account,
        worker_extra_args=extra, job_extra_directives=directives,
        python=spec.python, log_directory=spec.log_dir, job_script_prologue=prologue,
        # no `--interface`: the scheduler listens where this machine's hostname points, which
        # is where the nodes reach it on a cluster (and 127.0.0.1 on a one-machine Slurm)
        scheduler_options={"dashboard_address": spec.dashboard_address()}, **more)


def _pbs_job(log: Path):
    from dask_jobqueue.pbs import PBSJob

    class Job(PBSJob):
        # a per-instance submit command: qsub's own output files go into the run's log folder
        submit_command = " ".join(["qsub", "-o", shlex.quote(str(log / "qsub.out")),
                                   "-e", shlex.quote(str(log / "qsub.err"))])
    return Job


@contextlib.contextmanager
def _in_allocation(spec: ClusterSettings):
    """The tasks of one Slurm job: task 0 runs the scheduler, task 1 this client, the rest are
    workers. On every task but the client, SLURMRunner() runs its part until the client is done
    and then exits the process, so only the client gets past it."""
    try:
        from dask_jobqueue.slurm import SLURMRunner
    except ImportError:
        raise ScreenError("screen submit: the batch job needs dask-jobqueue (pip install 'screen[jobqueue]')") from None
    from distributed import Client

    worker_options = {"nthreads": spec.threads_per_worker, "memory_limit": spec.memory_per_worker}
    if spec.gpus_per_worker:
        worker_options["resources"] = {"GPU": spec.gpus_per_worker}
    # the scheduler task writes its address there, and every other task waits for the file: a folder
    # that does not exist (a campaign query's own out/<query>/logs) would keep them waiting forever
    Path(spec.scheduler_file).parent.mkdir(parents=True, exist_ok=True)
    try:
        runner = SLURMRunner(scheduler_file=spec.scheduler_file, worker_options=worker_options,
                             scheduler_options={"dashboard_address": spec.dashboard_address()})
    except RuntimeError as e:  # not inside a Slurm job step, or too few tasks
        raise ScreenError(f"--runner {spec.runner}: {e}") from None
    with runner, Client(runner) as client:
        try:
            client.wait_for_workers(runner.n_workers, timeout=600)
        except TimeoutError:
            raise ScreenError(f"the batch job's {runner.n_workers} worker tasks did not all start within "
                              f"10 minutes; see their log") from None
        yield client


def dashboard_link(client) -> str:
    link = client.dashboard_link or ""
    if "0.0.0.0" in link or "[::]" in link:
        link += " (listening on every network interface)"
    return link
