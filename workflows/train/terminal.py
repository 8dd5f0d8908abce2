"""What `screen train`, `evaluate`, `ensemble` and `experiment` show on the terminal while they
work and when they end."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from screening.errors import ScreenError


def train_showing_progress(console, run, cfg, featurizer, cache) -> None:
    """train_model in this process (torch's threads as `threads` says), with a featurizing bar, then a
    line for the data and split, one per epoch, and the best epoch at the end."""
    from rich.progress import Progress

    from workflows.train.training import TrainHooks, train_model

    if run.threads:
        import torch
        torch.set_num_threads(run.threads)
    with Progress(console=console, transient=True) as bar:
        job = bar.add_task("featurizing into the graph store", total=None)

        def ready(loaded, split):
            bar.stop()
            console.print(f"{len(loaded.graphs)} crystals from {run.data}"
                          + (f" ({loaded.featurized} featurized now, stored in {cache})" if loaded.featurized
                             else f" (graph store in {cache})")
                          + (f"; skipped {len(loaded.skipped)} (first: {loaded.skipped[0]})" if loaded.skipped else ""))
            console.print(f"split (seed {cfg.split_seed}): {len(split['train'])} train / {len(split['val'])} val / "
                          f"{len(split['test'])} test; device {cfg.device}")

        def show(row):
            maes = "  ".join(f"{k[8:]} {v:.4f}" for k, v in row.items() if k.startswith("val_mae_"))
            auc = f"  AUC {row['val_auc_metal']:.4f}" if "val_auc_metal" in row else ""
            console.print(f"epoch {row['epoch']:4d}  loss {row['train_loss']:.4f}  val MAE {maes}{auc}  "
                          f"lr {row['lr']:.2e}  {row['seconds']:.0f}s", highlight=False)

        hooks = TrainHooks(progress=lambda done, total: bar.update(job, completed=done, total=total),
                           on_ready=ready, on_epoch=show)
        best = train_model(run.data, run.out, cfg, featurizer, cache, limit=run.limit, resume=run.resume, hooks=hooks,
                           command="screen train " + " ".join(shlex.quote(a) for a in sys.argv[2:]))
    console.print(f"best epoch {best['epoch']} (score {best['score']:.4f}); "
                  f"checkpoints in {run.out}; evaluate with: screen evaluate --model {run.out / 'best.pt'} "
                  f"--data {run.data}")


def metrics_table(metrics: dict, model, split_name: str):
    """`screen evaluate`'s table: each score of the model on the split (the members' own left out)."""
    from rich.table import Table

    table = Table(title=f"{model} on {split_name} split ({metrics['n']} crystals, {metrics['members']} member(s))")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, float) and not k.startswith("member"):
            table.add_row(k, f"{v:.4f}")
    return table


def ensemble_showing(console, out, members, calibrate, unrelaxed_std, cache) -> None:
    """`screen ensemble`: write the ensemble file and say what it holds (and how its std was scaled)."""
    from workflows.train.training import write_ensemble

    if out.suffix != ".json":
        raise ScreenError(f"`out` {out}: an ensemble file ends in .json")
    meta = {"unrelaxed_std": unrelaxed_std} if unrelaxed_std is not None else None
    ens = write_ensemble(out, members, meta=meta, calibrate=calibrate, cache_dir=cache)
    scale = ens.meta.get("std_scale")
    console.print(f"wrote {out}: {len(ens.members)} members, outputs {', '.join(ens.outputs)}, hash {ens.short_hash}"
                  + (f"; std scaled by {', '.join(f'{t} {s:g}' for t, s in scale.items())} "
                     f"(fitted on the validation split)" if scale else ""))


def experiment_showing_progress(console, spec_file, out, report, report_only: bool, cluster, cache, device: str):
    """Train the experiment's unfinished runs on `cluster` (a bar, a line per finished run), or none
    with `report_only`; then report every finished run (runs.csv and the markdown report)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workflows.train.experiment_report import write_report
    from workflows.train.experiment_spec import load_spec
    from workflows.train.experiments import collect, run_experiment, unfinished

    spec = load_spec(spec_file)
    out = out or Path("experiments") / spec.name
    report = report or out / "report.md"
    if report_only:
        results = collect(spec, out)
        if not results:
            raise ScreenError(f"{out}: no finished runs of {spec_file} to report")
    else:
        todo = unfinished(spec, out)
        console.print(f"{spec_file}: {len(spec.runs)} runs, {len(spec.runs) - len(todo)} finished, "
                      f"{len(todo)} to train; outputs in {out}")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as bar:
            job = bar.add_task("training runs", total=len(todo))

            def done(name, result):
                if result is None:
                    bar.console.print(f"[red]failed[/red] {name}")
                else:
                    maes = "  ".join(f"{k[4:]} {v:.4f}" for k, v in result["test"].items() if k.startswith("mae_"))
                    bar.console.print(f"{name}: test MAE {maes}  ({result['train_seconds']:.0f}s)", highlight=False)
                bar.advance(job)

            res = run_experiment(spec, out, cluster, cache, device=device, on_done=done,
                                 on_connect=lambda link: bar.console.print(f"dashboard: {link}"))
        results = res.results
        if res.failed:
            console.print(f"[red]{len(res.failed)} run(s) failed[/red]; first: {res.failed[0]}")
    path = write_report(spec, results, report, out,
                        command=f"screen experiment {spec_file} --out {out} --report {report} --report-only")
    console.print(f"{len(results)} finished runs; wrote {out / 'runs.csv'} and {path}")
