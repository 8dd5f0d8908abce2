"""`screen submit` and `screen status` as the command line shows them: the run options a job
takes (parsed by `screen run` itself: `parse` turns a run's arguments into its options), the
checks before anything is submitted, and what the user reads after (workflows/cluster/batch.py
holds the jobs themselves)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

from screening.errors import ScreenError
from workflows.run.options import PANELS

REJECTS = ("scheduler", "jobqueue", "runner")  # the job starts its own cluster

Parse = Callable[[List[str]], dict]  # a run's arguments -> its options, by name


def run_option_names(run_command, leave_out=()) -> str:
    """`screen run`'s options by help panel, one line each (for `screen submit --help`)."""
    import inspect

    params = inspect.signature(run_command).parameters
    lines = []
    for panel, names in PANELS.items():
        shown = []
        for name in names:
            if name in leave_out:
                continue
            decls = [d for d in params[name].default.param_decls if d.startswith("--")]
            shown.append(decls[0] if decls else "--" + name.replace("_", "-"))
        if shown:
            lines.append(f"{panel}: {', '.join(shown)}")
    return "\n\n".join(lines)


def submit_runs(console, parse: Parse, args: List[str], campaign: Optional[Path], gpus: Optional[int],
                overcommit: Optional[bool], begin: Optional[str], every: Optional[str], dry_run: bool) -> None:
    """Check every run (`args`, or each of the campaign's with `args` after), write the job script,
    submit it (not with `dry_run`) and say how to follow it."""
    from workflows.cluster.batch import batch_job, check_begin, crontab_line, sbatch_delay, submit
    from workflows.cluster.campaign import read_campaign
    from workflows.run.options import RunSettings, checked

    runs, name, batch, out = [list(args)], "screen", {}, None
    if campaign:
        c = read_campaign(campaign, check_files=True)
        runs, name, batch, out = [run + list(args) for _, run in c.runs], c.name, c.batch, c.out
        every = every or c.every
    if begin is not None:  # before the run options: their check describes the model (seconds)
        check_begin(begin)
    if every is not None:
        sbatch_delay(every)
    settings = []
    for run in runs:  # every run option checked before anything is submitted
        params = parse(run)
        for rejected in REJECTS:
            if params[rejected]:
                raise ScreenError(f"`{rejected}`: screen submit runs its own Dask cluster inside the job; leave it out")
        settings.append(checked(RunSettings(**params)))
    opts, spec = settings[0]
    out = out or Path(opts.out_dir)
    job = batch_job(runs, out, spec, name=name, every=every, batch=batch, gpus=gpus, overcommit=overcommit)
    job_id = submit(job, begin=begin, dry_run=dry_run)
    console.print(f"job script: {job.script_path}" + (f" ({len(runs)} queries, one after another)" if len(runs) > 1 else ""),
                  highlight=False)
    if job_id:
        console.print(f"submitted batch job {job_id}", highlight=False)
        console.print(f"follow it: screen status --{'campaign ' + str(campaign) if campaign else 'out ' + str(out)}",
                      highlight=False)
    if every:
        line = crontab_line(every, job.script_path)
        console.print(f"schedule: every {every}, each run submits the next (sbatch --begin)", highlight=False)
        if line:
            console.print(f"or from cron (scrontab) instead: {line}", highlight=False, soft_wrap=True)


def show_status(console, parse: Parse, out: Optional[Path], campaign: Optional[Path]) -> None:
    """The batch jobs of a run folder (or of a campaign's) and its latest results."""
    import pandas as pd

    from workflows.cluster.batch import jobs, latest_results, states
    from workflows.cluster.campaign import read_campaign
    from workflows.report import print_table

    folders = None
    if campaign:
        c = read_campaign(campaign)
        out, folders = c.out, [(q, Path(parse(args)["out"])) for q, args in c.runs]
    if out is None:
        raise ScreenError("screen status: give `out` DIR or `campaign` FILE")
    submitted = jobs(out)
    if not submitted:
        raise ScreenError(f"`out` {out}: no batch job was submitted for this folder (no {out}/jobs.csv)")
    try:
        known = states([j["job_id"] for j in submitted])
    except ScreenError as e:  # no Slurm here (another machine, or it is down): the results still show
        console.print(f"job states unknown: {e}", highlight=False)
        known = {}
    rows = [{"job": j["job_id"], "submitted": j["submitted"], "begin": j["begin"],
             "state": known.get(j["job_id"], {}).get("state", "ended, or unknown to Slurm"),
             "start": known.get(j["job_id"], {}).get("start", ""),
             "reason": known.get(j["job_id"], {}).get("reason", "")} for j in submitted]
    print_table(console, pd.DataFrame(rows), title=f"batch jobs of {out}")
    for query, folder in folders or [(None, out)]:
        for line in latest_results(folder, f" of {query}" if query and len(folders) > 1 else ""):
            console.print(line, highlight=False, soft_wrap=True)
