"""A whole screening run as one Slurm batch job (`screen submit`), and what became of it (`screen status`).

The job script is written to the run's folder (`<out>/screen.sbatch`), so it can be read and
submitted again by hand. Inside the job, `srun` starts the same `screen run` command on every
task with `--runner slurm`: task 0 becomes the Dask scheduler, task 1 the run itself, the rest
workers (dask-jobqueue's SLURMRunner, workflows/cluster/connection.py). Every submission is appended to
`<out>/jobs.csv`; the run records its job id in summary.json.

A schedule (`every`) makes the job submit its next run first thing, `--begin=now+<every>`, so
runs keep their cadence whether one succeeds or fails, and `screen status` shows the pending one
(`scancel` it to stop the schedule).
"""
from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from screening.errors import ScreenError
from workflows.cluster.connection import check_word, export_lines, worker_environment

SCRIPT = "screen.sbatch"
JOBS = "jobs.csv"
_EVERY = re.compile(r"^(\d+)\s*(m|min|minutes?|h|hours?|d|days?|w|weeks?)$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# sbatch --begin: the forms Slurm's own parser reads (parse_time), one pattern each
_CLOCK = r"(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?"
_BEGIN_FORMS = [
    re.compile(r"^now(?:\s*[+-]\s*\d+\s*(?:seconds?|minutes?|hours?|days?|weeks?)?)?$"),
    re.compile(rf"^(?:(?P<day>today|tomorrow)\s*)?(?:{_CLOCK}(?:\s*(?P<ampm>am|pm))?|midnight|noon|elevenses|fika|teatime)?$"),
    re.compile(rf"^(?P<Y>\d{{4}})-(?P<M>\d{{2}})-(?P<D>\d{{2}})(?:t{_CLOCK})?$"),  # (the text is lower-cased: T is t)
    re.compile(rf"^(?P<M>\d{{2}})(?P<sep>[/.]?)(?P<D>\d{{2}})(?:(?P=sep)(?P<Y>\d{{2}}))?(?:-{_CLOCK})?$"),
]


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
    python: str = field(default_factory=lambda: sys.executable)

    def check(self) -> None:
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0:
            raise ScreenError(f"--gpus {self.gpus}: must be a whole number, 0 or more")
        if not isinstance(self.overcommit, bool):
            raise ScreenError(f"--overcommit {self.overcommit!r}: must be true or false")
        for what, value in (("name", self.name), ("--queue", self.partition), ("--account", self.account)):
            if value is not None:
                check_word(what, value)
        if self.every is not None:
            sbatch_delay(self.every)

    @property
    def script_path(self) -> Path:
        return Path(self.out_dir).resolve() / SCRIPT


def batch_job(runs: List[List[str]], out_dir, spec, name: str = "screen", every: Optional[str] = None,
              batch: Optional[dict] = None, gpus: Optional[int] = None,
              overcommit: Optional[bool] = None) -> BatchJob:
    """The job for checked `screen run`s (their options; the first run's ClusterSettings sizes the job);
    `batch` holds a campaign file's job settings, which options given on the command line override."""
    batch = batch or {}
    return BatchJob(runs=runs, out_dir=Path(out_dir), workdir=Path.cwd(), workers=spec.workers,
                    threads=spec.threads_per_worker, memory=spec.memory_per_worker, walltime=spec.walltime,
                    partition=spec.queue, account=spec.account, name=name, every=every,
                    gpus=gpus if gpus is not None else batch.get("gpus", 0),
                    overcommit=overcommit if overcommit is not None else batch.get("overcommit", False))


def check_begin(begin: str) -> str:
    """`--begin` as sbatch reads it: HH:MM[:SS] [AM|PM], midnight, noon, teatime (also after today
    or tomorrow), YYYY-MM-DD[THH:MM[:SS]], MMDD[YY], MM/DD[/YY][-HH:MM[:SS]], now[+N[units]]."""
    text = " ".join(str(begin).split()).lower()
    for form in _BEGIN_FORMS:
        m = form.match(text)
        if m and text and _in_range(m.groupdict()):
            return begin
    raise ScreenError(f"--begin {begin}: expected a time Slurm reads, like now+1hour, 2026-12-01, "
                      f"2026-12-01T03:00, 03:00, tomorrow, midnight or teatime")


def _in_range(g: dict) -> bool:
    import datetime

    hour = int(g.get("h") or 0)
    if hour > (12 if g.get("ampm") else 23) or int(g.get("m") or 0) > 59 or int(g.get("s") or 0) > 59:
        return False
    if g.get("D") is None:
        return True
    try:  # a two-digit year is 20YY; no year: a leap year, so 02/29 is a date
        datetime.date(int(g["Y"] or 2000) + (2000 if g["Y"] and len(g["Y"]) == 2 else 0), int(g["M"]), int(g["D"]))
    except ValueError:
        return False
    return True


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
    commands = [[*entry_point(job.python), "run", *args, "--runner", "slurm"] for args in job.runs]
    if len(commands) == 1:
        lines += ["", "srun " + " ".join(shlex.quote(a) for a in commands[0])]
    else:  # one query after another; a failed one does not stop the rest, and the job says it failed
        lines += ["", "failed=0"]
        lines += ["srun " + " ".join(shlex.quote(a) for a in c) + " || failed=1" for c in commands]
        lines += ["exit $failed"]
    return "\n".join(lines) + "\n"


def entry_point(python: str, version=sys.version_info) -> List[str]:
    """`screen` as the job runs it. The job starts in the submit folder (--chdir), and `python -m cli`
    puts the current folder first on sys.path: a cli.py (or a screening/ folder) of the user's there
    would be imported instead of screen's. -P (Python 3.11+) leaves it off; before 3.11, the same by hand."""
    if version >= (3, 11):
        return [python, "-P", "-m", "cli"]
    return [python, "-c", "import runpy, sys; del sys.path[0]; runpy.run_module('cli', run_name='__main__', alter_sys=True)"]


def submit(job: BatchJob, begin: Optional[str] = None, dry_run: bool = False) -> Optional[str]:
    """Write the job script into the run's folder and submit it; the job id (None with dry_run)."""
    job.check()
    if begin is not None:
        check_begin(begin)
    out = Path(job.out_dir).resolve()
    script = job_script(job)  # (its checks, the schedule's among them, before anything is made)
    (out / "logs").mkdir(parents=True, exist_ok=True)  # Slurm does not make the --output folder
    job.script_path.write_text(script)
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
    """Every job submitted for this run folder, by screen submit or by the schedule, oldest first;
    a ScreenError when the file is not the table screen submit writes (binary, or damaged)."""
    path = Path(out) / JOBS
    if not path.exists():
        return []
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows, header = list(reader), reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ScreenError(f"{path}: cannot read it as the job table screen submit writes "
                          f"({type(e).__name__}: {' '.join(str(e).split())[:120]})") from None
    if header[:3] != ["job_id", "submitted", "begin"] or any(not (r.get("job_id") or "").strip() for r in rows):
        raise ScreenError(f"{path}: damaged: not the job table screen submit writes (job_id,submitted,begin "
                          f"and a row per job); move it aside and the next screen submit starts a new one")
    return [{k: (r.get(k) or "") for k in ("job_id", "submitted", "begin")} for r in rows]


def latest_results(folder: Path, about: str = "") -> List[str]:
    """What `screen status` says of a run folder's latest results (its summary.json); a damaged
    summary is named as such, and whatever of it is sound is still shown."""
    path = Path(folder) / "summary.json"
    if not path.exists():
        return [f"results{about}: none yet"]
    try:
        s = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return [f"results{about}: {path} is damaged, nothing of it is shown "
                f"({type(e).__name__}: {' '.join(str(e).split())[:120]})"]
    if not isinstance(s, dict):
        return [f"results{about}: {path} is damaged, nothing of it is shown (not a JSON object)"]
    provenance = s.get("provenance") if isinstance(s.get("provenance"), dict) else {}
    made_by = provenance.get("batch_job") or "an interactive run"
    counts = {k: s.get(k) for k in ("ranked", "candidates", "featurized", "inferred", "wall_seconds")}
    missing = [k for k, v in counts.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if missing:
        lines = [f"latest results{about} (job {made_by}): {path} is damaged: no {', '.join(missing)} in it"]
    else:
        lines = [f"latest results{about} (job {made_by}): {counts['ranked']} of {counts['candidates']} candidates; "
                 f"featurized {counts['featurized']}, inferred {counts['inferred']}; {counts['wall_seconds']:.0f} s"]
    changes = s.get("changes")
    if isinstance(changes, dict) and isinstance(changes.get("note"), str):
        lines.append(f"changes since the previous run: {changes['note']}")
    files = s.get("files")
    if isinstance(files, dict):
        # relative to the folder (runs before that wrote them as they were given: absolute ones stay as they are)
        lines += [f"{name}: {Path(folder) / str(where)}" for name, where in files.items()]
    return lines


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
