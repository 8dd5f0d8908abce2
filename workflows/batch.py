"""A whole screening run as one Slurm batch job (`screen submit`), and what became of it (`screen status`).

The job script is written to the run's folder (`<out>/screen.sbatch`), so it can be read and
submitted again by hand. Inside the job, `srun` starts the same `screen run` command on every
task with `--runner slurm`: task 0 becomes the Dask scheduler, task 1 the run itself, the rest
workers (dask-jobqueue's SLURMRunner, workflows/cluster.py). Every submission is appended to
`<out>/jobs.csv`; the run records its job id in summary.json.

A schedule (`every`) makes the job submit its next run first thing, `--begin=now+<every>`, so
runs keep their cadence whether one succeeds or fails, and `screen status` shows the pending one
(`scancel` it to stop the schedule).
"""
from __future__ import annotations

import csv
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from screening.errors import ScreenError
from workflows.cluster import export_lines, worker_environment

SCRIPT = "screen.sbatch"
JOBS = "jobs.csv"
_EVERY = re.compile(r"^(\d+)\s*(m|min|minutes?|h|hours?|d|days?|w|weeks?)$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass
class BatchJob:
    runs: List[List[str]]  # `screen run` options of each run, as the user gave them; run one after another
    out_dir: Path  # the job's folder: its script, jobs.csv and logs
    workdir: Path  # relative paths in the runs' options are relative to this
    workers: int = 2
    threads: int = 1
    memory: str = "4GiB"  # per worker
    walltime: str = "01:00:00"
    partition: Optional[str] = None
    account: Optional[str] = None
    gpus: int = 0  # per node
    overcommit: bool = False
    name: str = "screen"
    every: Optional[str] = None  # "7d": the job submits its next run this long after it starts
    python: str = field(default_factory=lambda: __import__("sys").executable)

    def check(self) -> None:
        if self.gpus < 0:
            raise ScreenError(f"--gpus {self.gpus}: must be 0 or more")
        if self.every is not None:
            sbatch_delay(self.every)

    @property
    def script_path(self) -> Path:
        return Path(self.out_dir).resolve() / SCRIPT


def batch_job(runs: List[List[str]], out_dir, spec, name: str = "screen", every: Optional[str] = None,
              batch: Optional[dict] = None, gpus: Optional[int] = None,
              overcommit: Optional[bool] = None) -> BatchJob:
    """The job for checked `screen run`s (their options; the first run's ClusterSpec sizes the job);
    `batch` holds a campaign file's job settings, which options given on the command line override."""
    batch = batch or {}
    return BatchJob(runs=runs, out_dir=Path(out_dir), workdir=Path.cwd(), workers=spec.workers,
                    threads=spec.threads_per_worker, memory=spec.memory_per_worker, walltime=spec.walltime,
                    partition=spec.queue, account=spec.account, name=name, every=every,
                    gpus=gpus if gpus is not None else int(batch.get("gpus", 0)),
                    overcommit=overcommit if overcommit is not None else bool(batch.get("overcommit", False)))


def sbatch_delay(every: str) -> str:
    """'7d' -> 'now+7days' (sbatch --begin); a ScreenError for anything else."""
    m = _EVERY.match(str(every).strip().lower())
    if not m or int(m.group(1)) < 1:
        raise ScreenError(f"schedule every {every!r}: expected a count and a unit, like 30m, 12h, 1d or 1w")
    return f"now+{int(m.group(1))}{_UNITS[m.group(2)[0]]}"


def crontab_line(every: str, script: Path) -> Optional[str]:
    """The same schedule for cron (or scrontab), where it has a plain form."""
    plain = {"now+1hours": "@hourly", "now+1days": "@daily", "now+7days": "@weekly", "now+1weeks": "@weekly"}
    when = plain.get(sbatch_delay(every))
    return f"{when} sbatch {shlex.quote(str(script))}" if when else None


def job_script(job: BatchJob) -> str:
    from dask.utils import format_bytes, parse_bytes

    out = Path(job.out_dir).resolve()
    logs = out / "logs"
    ntasks = job.workers + 2
    # the workers' memory, and one worker's share for the scheduler and the run itself
    memory_mb = (job.workers + 1) * parse_bytes(job.memory) // 2**20
    lines = ["#!/bin/bash",
             f"# screen submit: the whole screening run as one Slurm job. Submit it again with: sbatch {shlex.quote(str(job.script_path))}",
             f"#SBATCH --job-name={job.name}",
             f"#SBATCH --ntasks={ntasks}  # task 0: the Dask scheduler, task 1: the run, the other {job.workers}: workers",
             f"#SBATCH --cpus-per-task={job.threads}",
             f"#SBATCH --mem={memory_mb}M  # {job.workers} workers x {format_bytes(parse_bytes(job.memory))}, and as much for the scheduler and the run",
             f"#SBATCH --time={job.walltime}",
             f"#SBATCH --output={logs}/screen-%j.out",
             f"#SBATCH --chdir={job.workdir.resolve()}"]
    if job.overcommit:
        lines.append("#SBATCH --overcommit  # the scheduler and the run barely use a CPU: share the workers' cores")
    if job.partition:
        lines.append(f"#SBATCH --partition={job.partition}")
    if job.account:
        lines.append(f"#SBATCH --account={job.account}")
    if job.gpus:
        lines.append(f"#SBATCH --gres=gpu:{job.gpus}")
    lines.append("")
    if job.every:
        delay = sbatch_delay(job.every)
        lines += [f"# the schedule: the next run, {job.every} from now (scancel its job id to stop)",
                  f"next=$(sbatch --parsable --begin={delay} {shlex.quote(str(job.script_path))} | cut -d';' -f1) && "
                  f"echo \"$next,$(date +%Y-%m-%dT%H:%M:%S),{delay}\" >> {shlex.quote(str(out / JOBS))}",
                  ""]
    lines += export_lines(worker_environment())
    commands = [[job.python, "-m", "cli", "run", *args, "--runner", "slurm"] for args in job.runs]
    if len(commands) == 1:
        lines += ["", "srun " + " ".join(shlex.quote(a) for a in commands[0])]
    else:  # one query after another; a failed one does not stop the rest, and the job says it failed
        lines += ["", "failed=0"]
        lines += ["srun " + " ".join(shlex.quote(a) for a in c) + " || failed=1" for c in commands]
        lines += ["exit $failed"]
    return "\n".join(lines) + "\n"


def submit(job: BatchJob, begin: Optional[str] = None, dry_run: bool = False) -> Optional[str]:
    """Write the job script into the run's folder and submit it; the job id (None with dry_run)."""
    job.check()
    out = Path(job.out_dir).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)  # Slurm does not make the --output folder
    job.script_path.write_text(job_script(job))
    if dry_run:
        return None
    cmd = ["sbatch", "--parsable"] + ([f"--begin={begin}"] if begin else []) + [str(job.script_path)]
    job_id = _slurm(cmd).split(";")[0].strip()
    record(out, job_id, begin or "now")
    return job_id


def record(out: Path, job_id: str, begin: str) -> None:
    path = Path(out) / JOBS
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["job_id", "submitted", "begin"])
        w.writerow([job_id, time.strftime("%Y-%m-%dT%H:%M:%S"), begin])


def jobs(out: Path) -> List[Dict[str, str]]:
    """Every job submitted for this run folder, by screen submit or by the schedule, oldest first."""
    path = Path(out) / JOBS
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def states(job_ids: List[str]) -> Dict[str, Dict[str, str]]:
    """What Slurm says of each job it still knows: state, start time (or expected), reason."""
    if not job_ids:
        return {}
    text = _slurm(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%S|%M|%r"], quiet_missing=True)
    out = {}
    for line in text.splitlines():
        jid, state, start, elapsed, reason = (line.split("|") + [""] * 5)[:5]
        out[jid.strip()] = {"state": state, "start": start, "elapsed": elapsed, "reason": reason}
    return out


def _slurm(cmd: List[str], quiet_missing: bool = False) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ScreenError(f"{cmd[0]}: not found; screen submit needs the Slurm client commands on this machine") from None
    except subprocess.TimeoutExpired:
        raise ScreenError(f"{cmd[0]}: no answer from the Slurm controller in 60 s") from None
    if r.returncode != 0:
        message = " ".join(r.stderr.split()) or f"exit status {r.returncode}"
        if quiet_missing and "Invalid job id" in message:
            return ""  # every job finished long enough ago that Slurm forgot it
        raise ScreenError(f"{cmd[0]}: {message}")
    return r.stdout
