"""`screen`: the command line. Thin: parse options, call workflows/library, print.

Errors the user can fix (ScreenError) print as one line, `error: ...`, exit 2.
"""
from __future__ import annotations

import functools
import inspect
import re
import sys
import tempfile
from contextvars import ContextVar
from dataclasses import MISSING, fields
from pathlib import Path
from typing import List, Optional, get_args, get_origin, get_type_hints

import click
import typer
import typer.main
from rich.console import Console

from screening.errors import ScreenError
from workflows.cluster.submit import REJECTS, run_option_names
from workflows.run.options import PANEL, RunSettings
from workflows.train.settings import FeaturizerSettings, TrainSettings, TrainRunSettings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="High-throughput materials screening with MT-CGCNN.")
# Piped output (logs, CI) gets a wide table instead of rich's 80-column fallback.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 240)


def _show_version(value: bool):
    if value:
        from workflows.provenance import version_text

        console.print(version_text(), highlight=False, soft_wrap=True)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print the version of screen and the bundled model's hash, and exit.")):
    """High-throughput materials screening with MT-CGCNN."""


# A setting's flag is its parameter name with dashes (partition_size -> --partition-size), except these.
FLAGS = {"output_format": "--format", "fmt": "--format", "ema_decay": "--ema", "cache_dir": "--cache",
         "out_dir": "--out", "threads_per_worker": "--threads", "memory_per_worker": "--memory",
         "split_name": "--split", "task_weights": "--weights"}


def flag_of(parameter: str) -> str:
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def as_flags(message: str) -> str:
    """A library message names settings as `parameter` (screening/errors.py); the command line shows flags.
    `name=False` names a switch turned off, which the command line spells --no-name."""
    def flag(m):
        name, off = m.group(1), m.group(2)
        return "--no-" + flag_of(name)[2:] if off else flag_of(name)
    return re.sub(r"`([a-z][a-z0-9_]*)(=False)?`", flag, message)


def option(settings, name: str, *decls: str, shown=None, **kwargs):
    """A typer option whose default and help come from the settings dataclass's field (screening/settings.py).
    `shown(default)` is the default as the option takes it (a list as one comma-separated text: `comma`)."""
    from workflows.settings import default_of, help_of

    kwargs.setdefault("help", as_flags(help_of(settings, name)))
    default = default_of(settings, name)
    if default is MISSING:
        return typer.Option(..., *decls, **kwargs)
    return typer.Option(shown(default) if shown and default is not None else default, *decls, **kwargs)


def comma(values) -> str:
    """A list setting as one option's text (--tasks a,b; --split 0.8,0.1,0.1)."""
    return ",".join(map(str, values))


# What a setting's option adds to its flag (flag_of): a letter, another name, an environment variable.
SHORT = {"query": "-q", "model": "-m", "out": "-o", "data": "-d"}
MORE = {"cache": {"decls": ("--store",), "envvar": "SCREEN_CACHE"}, "runner": {"hidden": True}}
BOTH_WAYS = {"gnome", "metal_head"}  # switches with a --no- form; the other switches only turn on
_types = functools.cache(get_type_hints)  # (the settings modules annotate with strings: __future__ annotations)


def setting_option(settings, name: str, **kwargs):
    """(type, typer option) of one setting: its flags from the tables above, its default and help from
    the field (option). A list setting is one comma-separated text (--tasks a,b)."""
    kind, flag = _types(settings)[name], flag_of(name)
    if kind is bool and name in BOTH_WAYS:
        flag += "/--no-" + flag[2:]
    kwargs = {**MORE.get(name, {}), **kwargs}
    decls = (flag, *kwargs.pop("decls", ()), *([SHORT[name]] if name in SHORT else []))
    if any(get_origin(k) is list for k in (kind, *get_args(kind))):
        kind, kwargs["shown"] = Optional[str] if type(None) in get_args(kind) else str, comma
    return kind, option(settings, name, *decls, **kwargs)


KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY


def settings_command(*groups, panels=None):
    """A command taking `**options` gets its options from settings fields, in the order given (--help's):
    each group is (Settings, "name name ...") or (Settings,) for all its fields; `panels` maps a name to
    its help panel. typer reads the command's signature (and its annotations) for its options."""
    def build(command):
        params = []
        for settings, *names in groups:
            for name in names[0].split() if names else [f.name for f in fields(settings)]:
                kind, default = setting_option(settings, name, rich_help_panel=(panels or {}).get(name))
                params.append(inspect.Parameter(name, KEYWORD_ONLY, default=default, annotation=kind))
        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command
    return build


def cache_option(**kwargs):
    """--cache, the same for every command: the folder workflows/ and cache/ keep graphs, structures and predictions in."""
    return setting_option(RunSettings, "cache", **kwargs)[1]


# Where an unexpected error's traceback goes: here, unless the running command says otherwise
# (`screen run`: its --out folder). Per command, not per process: a later command (the tests run
# many in one process) must not log into an earlier run's --out.
DEFAULT_ERROR_LOG = Path(tempfile.gettempdir()) / "screen-error.log"
_error_log: ContextVar[Path] = ContextVar("error_log", default=DEFAULT_ERROR_LOG)


def user_errors(fn):
    """ScreenError -> one line `error: ...`, exit 2. Anything unexpected (a bug) -> one line that
    names a log file holding the full traceback, exit 3: a user never gets a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        token = _error_log.set(DEFAULT_ERROR_LOG)
        try:
            return fn(*args, **kwargs)
        except ScreenError as e:
            err_console.print(f"[red]error:[/red] {as_flags(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # typer's own ways out
        except Exception as e:
            from workflows.cluster.watch import unexpected

            line, code = unexpected(e, _error_log.get())
            err_console.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(code)
        finally:
            _error_log.reset(token)
    return wrapper


@app.command()
@settings_command((RunSettings,), panels=PANEL)
@user_errors
def run(**options):
    """Screen every crystal matching a query; rank by predicted stability and band-gap class."""
    # (PipelineSettings.error_log) from the first check on, for this command
    _error_log.set(options["out"] / "error.log")
    settings = RunSettings(**options)
    from workflows.run.terminal import run_showing_progress

    run_showing_progress(console, settings)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             epilog="[bold]screen run options it accepts[/bold] (as `screen run --help` describes them):\n\n"
                    + run_option_names(run, REJECTS))
@user_errors
def submit(
    ctx: typer.Context,
    campaign: Optional[Path] = typer.Option(None, "--campaign", help="A campaign file (YAML: query, source, model, "
                                                                     "filters, cluster, schedule)."),
    gpus: Optional[int] = typer.Option(None, help="GPUs per node (#SBATCH --gres=gpu:N)."),
    overcommit: Optional[bool] = typer.Option(None, "--overcommit", help="Let the scheduler and the run share the "
                                                                          "workers' cores (small nodes)."),
    begin: Optional[str] = typer.Option(None, help="Start no earlier than this (sbatch --begin: now+1hour, 2026-12-01T03:00)."),
    every: Optional[str] = typer.Option(None, help="Re-run on a schedule: 30m, 12h, 1d, 1w (each run submits the next)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write the job script, do not submit it."),
):
    """Submit a whole screening run as one Slurm batch job, with any `screen run` options (--query,
    --source, ..., --workers, --threads, --memory, --queue, --account, --walltime) or a campaign file.
    The job script is written to the run's --out folder; `screen status --out DIR` follows the job."""
    from workflows.cluster.submit import submit_runs

    submit_runs(console, _run_params, ctx.args, campaign, gpus, overcommit, begin, every, dry_run)


def _run_params(args: List[str]) -> dict:
    """`screen run` options parsed by `screen run` itself: the same names, defaults and errors."""
    command = typer.main.get_command(app).commands["run"]
    try:
        return command.make_context("screen submit", list(args)).params
    except Exception as e:
        if hasattr(e, "format_message"):  # a usage error (typer carries its own copy of click's classes)
            raise ScreenError(f"screen submit: {e.format_message()}") from None
        raise


@app.command()
@user_errors
def status(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The run folder of a screen submit."),
    campaign: Optional[Path] = typer.Option(None, "--campaign", help="A campaign file (its out folder)."),
):
    """The batch jobs of a run folder (or campaign) and its latest results."""
    from workflows.cluster.submit import show_status

    show_status(console, _run_params, out, campaign)


@app.command()
@user_errors
def predict(
    paths: List[Path] = typer.Argument(..., help="CIF/POSCAR files or directories of them."),
    model: Optional[Path] = option(RunSettings, "model", "--model", "-m"),
    out: Path = typer.Option(Path("predictions.csv"), "--out", "-o", help="CSV file to write; unreadable files "
                                                                          "are listed in <out>.bad.csv."),
    device: str = option(RunSettings, "device"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Unreadable files are expected: list them, exit 0."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable file."),
):
    """Predict properties of crystal structure files. Every readable file is predicted; unreadable
    ones are listed (and the exit status is 1 unless --skip-bad)."""
    from workflows.file_prediction import predict_showing_progress

    if predict_showing_progress(console, err_console, paths, model, out, device, strict) and not skip_bad:
        raise typer.Exit(1)


@app.command()
@settings_command((TrainRunSettings, "data out"),
                  (TrainSettings, "tasks task_weights weighting loss metal_head split split_seed epochs batch_size lr "
                                "optimizer weight_decay schedule warmup_epochs ema_decay bn_recompute patience seed "
                                "atom_fea_len n_conv h_fea_len n_h"),
                  (FeaturizerSettings, "cutoff max_neighbors"), (TrainRunSettings, "limit resume"),
                  (RunSettings, "cache device"), (TrainRunSettings, "threads"))
@user_errors
def train(**options):
    """Train an MT-CGCNN model from the graph store (featurized on first use); checkpoints every epoch."""
    from workflows.train.settings import train_settings
    from workflows.train.terminal import train_showing_progress

    run, cfg, featurizer = train_settings(options)
    train_showing_progress(console, run, cfg, featurizer, options["cache"])


@app.command()
@user_errors
def evaluate(
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint (.pt) or ensemble (.json)."),
    data: Path = typer.Option(..., "--data", "-d"),
    split_name: str = typer.Option("test", "--split", help="test | val | train | all (needs the model's split.json unless all)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory for metrics.json and parity.png (default: beside the model)."),
    limit: Optional[int] = typer.Option(None),
    cache: Path = cache_option(),
    device: str = typer.Option("auto"),
):
    """MAE per task, Spearman rho of dEf, metal/non-metal ROC-AUC, ensemble calibration, parity plots."""
    from workflows.train.terminal import metrics_table
    from workflows.train.training import evaluate_model

    metrics, where = evaluate_model(model, data, cache, split_name, out, limit, device)
    console.print(metrics_table(metrics, model, split_name))
    console.print(f"wrote {where / 'metrics.json'} and {where / 'parity.png'}")


@app.command()
@user_errors
def ensemble(
    members: List[Path] = typer.Argument(..., help="Checkpoints made by `screen train` (same split, different --seed)."),
    out: Path = typer.Option(..., "--out", "-o", help="Ensemble file to write (.json); pass it to --model."),
    calibrate: Optional[Path] = typer.Option(None, help="Training data (CSV or directory): scale each task's std so 68 % of the members' validation errors fall within it."),
    unrelaxed_std: Optional[float] = typer.Option(None, help="eV/atom that an unrelaxed structure adds to the ΔEf error, as benchmarks/relax_robustness.py measures it; `screen run` adds it to unrelaxed candidates' E_hull std."),
    cache: Path = cache_option(),
):
    """Combine checkpoints into an ensemble: predictions are the member mean, the error bar their std."""
    from workflows.train.terminal import ensemble_showing

    ensemble_showing(console, out, members, calibrate, unrelaxed_std, cache)


@app.command()
@user_errors
def experiment(
    spec_file: Path = typer.Argument(..., metavar="SPEC.yaml", help="Experiment spec (see workflows/train/paper.yaml)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run outputs (default: experiments/<spec name>)."),
    report: Optional[Path] = typer.Option(None, help="Markdown report to write (default: <out>/report.md)."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing; report the finished runs."),
    workers: int = typer.Option(2, help="Local Dask workers (one training run each at a time)."),
    threads: int = typer.Option(1, help="Torch threads per worker (1 gives bit-identical reruns)."),
    scheduler: Optional[str] = typer.Option(None, help="Address of a running Dask scheduler."),
    dashboard: str = typer.Option("127.0.0.1:0", help="Dashboard address; :0 picks a free port."),
    device: str = typer.Option("cpu", help="cpu | cuda (cuda runs ask for the Dask resource GPU)."),
    cache: Path = cache_option(),
):
    """Run a grid of training runs (task sets x seeds x training fractions x settings) and report them."""
    from workflows.cluster.connection import ClusterSettings
    from workflows.train.terminal import experiment_showing_progress

    cluster = ClusterSettings(scheduler=scheduler, workers=workers, threads_per_worker=threads, dashboard=dashboard,
                              gpus_per_worker=1 if device.startswith("cuda") else 0)
    experiment_showing_progress(console, spec_file, out, report, report_only, cluster, cache, device)


# --- screen cache (cache/ package) ---
cache_app = typer.Typer(help="Inspect, check and clear the caches (graphs, structures, predictions).",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
@user_errors
def cache_info(cache: Path = cache_option()):
    """Sizes, counts and hit rates."""
    from workflows.cache_admin import show_info

    show_info(console, cache)


@cache_app.command("ls")
@user_errors
def cache_ls(cache: Path = cache_option(), limit: int = typer.Option(20, help="Rows to show.")):
    """List stored crystals (id, key, atoms, edges)."""
    from workflows.cache_admin import show_listing

    show_listing(console, cache, limit)


@cache_app.command("verify")
@user_errors
def cache_verify(cache: Path = cache_option(),
                 repair: bool = typer.Option(False, "--repair", help="Delete whatever is damaged (the next run "
                                                                     "re-makes it) and exit 0.")):
    """Check every published unit's checksums and counts; exit 1 with one line per problem."""
    from workflows.cache_admin import show_verify

    if show_verify(console, err_console, cache, repair):
        raise typer.Exit(1)


@cache_app.command("clear")
@user_errors
def cache_clear(cache: Path = cache_option(),
                stale: bool = typer.Option(False, "--stale", help="Only remove leftovers of interrupted writers."),
                min_age: float = typer.Option(600.0, help="With --stale: only leftovers untouched this many "
                                                           "seconds (a running writer's unit is unpublished too)."),
                yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")):
    """Remove the cache (or only its stale leftovers)."""
    from workflows.cache_admin import clear_showing

    if not clear_showing(console, cache, stale, min_age, confirm=None if yes else typer.confirm):
        raise typer.Exit(1)


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
