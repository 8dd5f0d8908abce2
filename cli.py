"""`screen`: the command line. Thin: parse options, call workflows/library, print.

Errors the user can fix (ScreenError) print as one line, `error: ...`, exit 2.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from screening.errors import ScreenError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="High-throughput materials screening with MT-CGCNN.")
# Piped output (logs, CI) gets a wide table instead of rich's 80-column fallback.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 240)


@app.callback()
def _root():
    """High-throughput materials screening with MT-CGCNN."""


def user_errors(fn):
    """Turn ScreenError (and a missing file) into a one-line error and exit 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ScreenError as e:
            err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
    return wrapper


@app.command()
@user_errors
def run(
    query: str = typer.Option(..., "--query", "-q", help='Chemical system ("Li-*-O", "Li-Fe-O"), formula ("LiFePO4") or mp ids.'),
    exclude: Optional[str] = typer.Option(None, help="Comma-separated elements to leave out."),
    source: Optional[str] = typer.Option(None, help="mp | local:PATH | substitution (default: mp with MP_API_KEY, else substitution)."),
    reference: Optional[str] = typer.Option(None, help="Source of reference phases for E_hull (e.g. local:../shared/data/mp_dev.csv.gz)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Checkpoint (default: the bundled model)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    scheduler: Optional[str] = typer.Option(None, help="Address of a running Dask scheduler (tcp://host:8786)."),
    jobqueue: Optional[str] = typer.Option(None, help="slurm | pbs: start workers as batch jobs (needs dask-jobqueue)."),
    workers: int = typer.Option(2, help="Local workers (or batch jobs)."),
    threads: int = typer.Option(1, help="Threads per worker."),
    memory: str = typer.Option("4GiB", help="Memory per worker."),
    queue: Optional[str] = typer.Option(None, help="Batch queue/partition (--jobqueue)."),
    account: Optional[str] = typer.Option(None, help="Batch account (--jobqueue)."),
    walltime: str = typer.Option("01:00:00", help="Batch job walltime (--jobqueue)."),
    dashboard: str = typer.Option("127.0.0.1:8787", help="Dask dashboard address (:0 for any free port)."),
    cache: Path = typer.Option(Path("screen-cache"), envvar="SCREEN_CACHE", help="Cache directory (graphs, structures, predictions)."),
    out: Path = typer.Option(Path("screen-results"), "--out", "-o", help="Directory for results, summary.json and the plot."),
    fmt: str = typer.Option("csv", "--format", help="csv | parquet"),
    nonmetal: bool = typer.Option(False, "--nonmetal", help="Keep only predicted non-metals."),
    gap_min: Optional[float] = typer.Option(None, help="Minimum predicted band gap (eV)."),
    gap_max: Optional[float] = typer.Option(None, help="Maximum predicted band gap (eV)."),
    ehull_max: Optional[float] = typer.Option(None, help="Maximum predicted energy above hull (eV/atom)."),
    gap_threshold: float = typer.Option(0.025, help="Eg below this (eV) counts as a metal."),
    top: Optional[int] = typer.Option(None, help="Show and keep only the best N."),
    partition_size: int = typer.Option(250, help="Crystals per Dask task."),
):
    """Screen every crystal matching a query; rank by predicted stability and band-gap class."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from screening.predict_files import resolve_model_path
    from screening.rank import RankOptions
    from screening.sources import default_source_note
    from workflows.cluster import ClusterSpec, connect, dashboard_link
    from workflows.screening import RunOptions, run_screening

    from screening.query import parse_query
    from screening.sources import open_source

    exclude_list = [e.strip() for e in (exclude or "").split(",") if e.strip()]
    parse_query(query, exclude_list)  # bad input fails here, before a cluster starts
    open_source(source, lazy=True)
    notice = default_source_note(source)
    if notice:
        console.print(notice, style="yellow", highlight=False)
    opts = RunOptions(
        query=query, exclude=exclude_list,
        source=source, reference=reference, model=str(resolve_model_path(model)), device=device,
        cache_dir=str(cache), out_dir=str(out), partition_size=partition_size, output_format=fmt,
        rank=RankOptions(gap_threshold=gap_threshold, nonmetal=nonmetal, gap_min=gap_min,
                         gap_max=gap_max, ehull_max=ehull_max, top=top))
    spec = ClusterSpec(scheduler=scheduler, jobqueue=jobqueue, workers=workers,
                       threads_per_worker=threads, dashboard=dashboard, memory_per_worker=memory,
                       queue=queue, account=account, walltime=walltime,
                       gpus_per_worker=1 if device == "cuda" and not scheduler else 0)
    with connect(spec) as client:
        console.print(f"dask dashboard: {dashboard_link(client)}", highlight=False)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            job = bar.add_task("screening partitions", total=None)
            result = run_screening(client, opts, progress=lambda _, d, n: bar.update(job, completed=d, total=n))
    _print_run(result)


_RUN_COLUMNS = {  # result column -> short terminal header
    "rank": "#", "formula": "formula", "id": "id", "pred_e_above_hull": "E_hull", "pred_band_gap": "Eg",
    "pred_class": "class", "pred_formation_energy_per_atom": "dEf", "pred_efermi": "EF",
    "dft_formation_energy_per_atom": "DFT dEf", "dft_band_gap": "DFT Eg"}


def _print_run(result):
    from screening.report import print_table

    s = result.summary
    shown = result.table[[c for c in _RUN_COLUMNS if c in result.table.columns]].rename(columns=_RUN_COLUMNS)
    print_table(console, shown, max_rows=25,
                title=f"{s['query']}: {s['ranked']} of {s['candidates']} candidates, most stable first "
                      f"(E_hull, dEf in eV/atom; Eg, EF in eV; predicted unless DFT)")
    console.print(f"featurized {s['featurized']}, inferred {s['inferred']} "
                  f"(cache hits: {s['graph_cache_hits']} graphs, {s['prediction_cache_hits']} predictions); "
                  f"{s['unusable']} unusable; {s['wall_seconds']:.1f}s", highlight=False)
    console.print(s["reference_note"], highlight=False)
    for name, path in result.files.items():
        console.print(f"{name}: {path}", highlight=False)


@app.command()
@user_errors
def predict(
    paths: List[Path] = typer.Argument(..., help="CIF/POSCAR files or directories of them."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Checkpoint (default: the bundled model)."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", "-o", help="CSV file to write."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable files (listed) instead of stopping."),
):
    """Predict properties of crystal structure files with an MT-CGCNN checkpoint."""
    from screening.predict_files import predict_files
    from screening.report import print_table

    table, skipped = predict_files(paths, model, device=device, skip_bad=skip_bad)
    for line in skipped:
        err_console.print(f"[yellow]skipped:[/yellow] {line}", highlight=False, soft_wrap=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print_table(console, table, title=f"{len(table)} structures")
    console.print(f"wrote {out}")


def _floats(text: str, what: str) -> List[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ScreenError(f"{what} {text!r}: expected comma-separated numbers") from None


DEFAULT_TASKS = "formation_energy_per_atom,band_gap,efermi"


@app.command()
@user_errors
def train(
    data: Path = typer.Option(..., "--data", "-d", help="CSV like mp_dev.csv.gz, or a CGCNN directory (id_prop.csv + CIFs)."),
    out: Path = typer.Option(Path("runs/model"), "--out", "-o", help="Run directory: best.pt, last.pt, metrics.csv, split.json."),
    tasks: str = typer.Option(DEFAULT_TASKS, help="Comma-separated target columns."),
    weights: Optional[str] = typer.Option(None, help="Per-task loss weights w_p (Eq. 6), comma-separated."),
    weighting: str = typer.Option("fixed", help="fixed (Eq. 6, --weights) | uncertainty (learned per-task weights, Kendall et al. 2018)."),
    split: str = typer.Option("0.6,0.2,0.2", help="train,val,test fractions."),
    epochs: int = typer.Option(100),
    batch_size: int = typer.Option(256),
    lr: float = typer.Option(0.01),
    weight_decay: float = typer.Option(0.0),
    schedule: str = typer.Option("cosine", help="cosine | step | none"),
    patience: int = typer.Option(30, help="Early stopping: epochs without a better validation score."),
    seed: int = typer.Option(0),
    atom_fea_len: int = typer.Option(64),
    n_conv: int = typer.Option(3),
    h_fea_len: int = typer.Option(128),
    n_h: int = typer.Option(1),
    cutoff: float = typer.Option(8.0, help="Neighbor cutoff (A)."),
    max_neighbors: int = typer.Option(12),
    limit: Optional[int] = typer.Option(None, help="Use only the first N rows."),
    resume: Optional[Path] = typer.Option(None, help="Continue from a run's last.pt."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (1 gives bit-identical reruns)."),
):
    """Train an MT-CGCNN model; early stopping on validation MAE."""
    import json
    import shlex
    import time

    from rich.progress import Progress

    from screening.dataset import load_dataset
    from screening.featurize import FeaturizerConfig
    from screening.predict import resolve_device
    from screening.train import TrainConfig, split_indices, train as run_training

    if threads:
        import torch
        torch.set_num_threads(threads)
    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    featurizer = FeaturizerConfig(cutoff=cutoff, max_neighbors=max_neighbors)
    cfg = TrainConfig(tasks=task_list, task_weights=_floats(weights, "--weights") if weights else None,
                      weighting=weighting,
                      epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      schedule=schedule, patience=patience, seed=seed, split=_floats(split, "--split"),
                      atom_fea_len=atom_fea_len, n_conv=n_conv, h_fea_len=h_fea_len, n_h=n_h,
                      device=str(resolve_device(device)))
    t0 = time.time()
    with Progress(console=console, transient=True) as bar:
        job = bar.add_task("featurizing", total=limit)
        dataset, skipped = load_dataset(data, task_list, featurizer, limit, lambda n: bar.advance(job, n))
    console.print(f"featurized {len(dataset)} crystals in {time.time() - t0:.0f}s"
                  + (f", skipped {len(skipped)} (first: {skipped[0]})" if skipped else ""))
    tr, va, te = split_indices(len(dataset), cfg.split, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "split.json").write_text(json.dumps({
        "data": str(data), "seed": seed, "fractions": cfg.split,
        "train": [dataset.ids[i] for i in tr], "val": [dataset.ids[i] for i in va],
        "test": [dataset.ids[i] for i in te]}))
    console.print(f"split (seed {seed}): {len(tr)} train / {len(va)} val / {len(te)} test; device {cfg.device}")

    def show(row):
        maes = "  ".join(f"{k[8:]} {v:.4f}" for k, v in row.items() if k.startswith("val_mae_"))
        console.print(f"epoch {row['epoch']:4d}  loss {row['train_loss']:.4f}  val MAE {maes}  "
                      f"lr {row['lr']:.2e}  {row['seconds']:.0f}s", highlight=False)

    meta = {"command": "screen train " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
            "data": str(data), "n_train": len(tr), "n_val": len(va), "n_test": len(te)}
    best = run_training(dataset.subset(tr), dataset.subset(va), cfg, out, featurizer,
                        resume=str(resume) if resume else None, on_epoch=show, meta=meta)
    console.print(f"best epoch {best['epoch']} (score {best['score']:.4f}); "
                  f"checkpoints in {out}; evaluate with: screen evaluate --model {out / 'best.pt'} --data {data}")


@app.command()
@user_errors
def evaluate(
    model: Path = typer.Option(..., "--model", "-m"),
    data: Path = typer.Option(..., "--data", "-d"),
    split_name: str = typer.Option("test", "--split", help="test | val | train | all (needs split.json beside the model unless all)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory for metrics.json and parity.png (default: beside the model)."),
    limit: Optional[int] = typer.Option(None),
    device: str = typer.Option("auto"),
):
    """MAE per task, Spearman rho of dEf, metal/non-metal ROC-AUC, parity plots."""
    import json

    from rich.progress import Progress

    from screening.checkpoint import load_checkpoint
    from screening.dataset import load_dataset
    from screening.evaluate import evaluate_predictions, parity_plots
    from screening.predict import predict_graphs, resolve_device

    ckpt = load_checkpoint(model)
    tasks = ckpt.model.tasks
    with Progress(console=console, transient=True) as bar:
        job = bar.add_task("featurizing", total=limit)
        dataset, skipped = load_dataset(data, tasks, ckpt.featurizer, limit, lambda n: bar.advance(job, n))
    if split_name != "all":
        split_file = model.parent / "split.json"
        if not split_file.exists():
            raise ScreenError(f"{split_file}: not found; pass --split all to evaluate on every row")
        wanted = set(json.loads(split_file.read_text())[split_name])
        dataset = dataset.subset([i for i, x in enumerate(dataset.ids) if x in wanted])
    if len(dataset) == 0:
        raise ScreenError(f"{data}: no crystals of the {split_name} split found")
    pred = predict_graphs(ckpt.model, dataset.graphs, device=resolve_device(device))
    metrics = evaluate_predictions(tasks, dataset.targets, pred)
    metrics.update({"split": split_name, "model_hash": ckpt.hash, "data": str(data)})
    out = out or model.parent
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot = parity_plots(tasks, dataset.targets, pred, out / "parity.png")
    from rich.table import Table
    table = Table(title=f"{model} on {split_name} split ({metrics['n']} crystals)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, float):
            table.add_row(k, f"{v:.4f}")
    console.print(table)
    console.print(f"wrote {out / 'metrics.json'} and {plot}")


@app.command()
@user_errors
def experiment(
    spec_file: Path = typer.Argument(..., metavar="SPEC.yaml", help="Experiment spec (see workflows/paper.yaml)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run outputs (default: experiments/<spec name>)."),
    report: Optional[Path] = typer.Option(None, help="Markdown report to write (default: <out>/report.md)."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing; report the finished runs."),
    workers: int = typer.Option(2, help="Local Dask workers (one training run each at a time)."),
    threads: int = typer.Option(1, help="Torch threads per worker (1 gives bit-identical reruns)."),
    scheduler: Optional[str] = typer.Option(None, help="Address of a running Dask scheduler."),
    dashboard: str = typer.Option("127.0.0.1:0", help="Dashboard address; :0 picks a free port."),
    device: str = typer.Option("cpu", help="cpu | cuda (cuda runs ask for the Dask resource GPU)."),
):
    """Run a grid of training runs (task sets x seeds x training fractions x settings) and report them."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from screening.experiment_report import write_report
    from screening.experiments import load_spec
    from workflows.cluster import ClusterSpec
    from workflows.experiments import collect, run_experiment, unfinished

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
        cluster = ClusterSpec(scheduler=scheduler, workers=workers, threads_per_worker=threads,
                              dashboard=dashboard, gpus_per_worker=1 if device.startswith("cuda") else 0)
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

            res = run_experiment(spec, out, cluster, device=device, on_done=done,
                                 on_connect=lambda link: bar.console.print(f"dashboard: {link}"))
        results = res.results
        if res.failed:
            console.print(f"[red]{len(res.failed)} run(s) failed[/red]; first: {res.failed[0]}")
    path = write_report(spec, results, report, out,
                        command=f"screen experiment {spec_file} --out {out} --report {report} --report-only")
    console.print(f"{len(results)} finished runs; wrote {out / 'runs.csv'} and {path}")


# --- screen cache (cache/ package) ---
cache_app = typer.Typer(help="Inspect, check and clear the caches (graphs, structures, predictions).",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")
CacheDir = typer.Option(Path("screen-cache"), "--cache", "--store", envvar="SCREEN_CACHE",
                        help="Cache directory (as given to screen run --cache).")


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


@cache_app.command("info")
@user_errors
def cache_info(cache: Path = CacheDir):
    """Sizes, counts and hit rates."""
    from rich.table import Table

    from cache.cache_dir import summary

    s = summary(cache)
    table = Table(title=f"cache {cache}")
    for col, justify in (("part", "left"), ("entries", "right"), ("size", "right"), ("detail", "left")):
        table.add_column(col, justify=justify)
    for g in s["graph_stores"]:
        f = g["featurizer"]
        table.add_row(g["name"], f"{g['crystals']} crystals", _mb(g["bytes"]),
                      f"cutoff {f['cutoff']} A, {f['max_neighbors']} neighbors; {g['units']} units, "
                      f"{g['atoms']} atoms, {g['edges']} edges")
    table.add_row("structures", f"{s['structures']['entries']} lists", _mb(s["structures"]["bytes"]),
                  "fetched candidate lists")
    p = s["predictions"]
    table.add_row("predictions", f"{p['models']} models", _mb(p["bytes"]), f"{p['parts']} parts")
    console.print(table)
    for g in s["graph_stores"]:
        console.print(f"{g['name']}: {g['duplicate_copies']} duplicate copies (not served), "
                      f"{g['stale_items']} unpublished leftovers, {g['unreadable_manifests']} unreadable manifests",
                      highlight=False)
    for part, r in s["hit_rates"].items():
        rate = f"{100 * r['rate']:.0f}%" if r["rate"] is not None else "n/a"
        console.print(f"{part} cache: {r['hits']} hits, {r['misses']} misses ({rate}) over {s['runs']} runs",
                      highlight=False)


@cache_app.command("ls")
@user_errors
def cache_ls(cache: Path = CacheDir, limit: int = typer.Option(20, help="Rows to show.")):
    """List stored crystals (id, key, atoms, edges)."""
    import pandas as pd

    from cache.cache_dir import check_cache_dir, graph_stores
    from screening.report import print_table

    check_cache_dir(cache)
    rows, total = [], 0
    for store in graph_stores(cache):
        total += len(store)
        for e in store.entries():
            if len(rows) >= limit:
                break
            rows.append({"id": e["id"], "key": e["key"][:16], "atoms": e["atoms"], "edges": e["edges"],
                         "store": store.root.name})
    table = pd.DataFrame(rows, columns=["id", "key", "atoms", "edges", "store"])
    print_table(console, table, title=f"{total} crystals", max_rows=limit)
    if total > len(rows):
        console.print(f"... {total - len(rows)} more (--limit)", highlight=False)


@cache_app.command("verify")
@user_errors
def cache_verify(cache: Path = CacheDir):
    """Check every published unit's checksums and counts; exit 1 with one line per problem."""
    from cache.cache_dir import stale, verify

    units, problems = verify(cache)
    leftovers = stale(cache)
    if leftovers:
        console.print(f"{len(leftovers)} unpublished leftovers (interrupted or still-running writers; never "
                      f"served; `screen cache clear --stale` removes them)", highlight=False)
    for p in problems:
        err_console.print(f"problem: {p}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print(f"ok: {units} units verified")


@cache_app.command("clear")
@user_errors
def cache_clear(cache: Path = CacheDir,
                stale: bool = typer.Option(False, "--stale", help="Only remove leftovers of interrupted writers."),
                min_age: float = typer.Option(600.0, help="With --stale: only leftovers untouched this many "
                                                           "seconds (a running writer's unit is unpublished too)."),
                yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")):
    """Remove the cache (or only its stale leftovers)."""
    from cache.cache_dir import check_cache_dir, clean_stale, clear

    check_cache_dir(cache)
    if stale:
        console.print(f"removed {clean_stale(cache, min_age)} stale items")
        return
    if not yes and not typer.confirm(f"remove everything under {cache}?"):
        raise typer.Exit(1)
    clear(cache)
    console.print(f"removed {cache}")
# --- end screen cache ---


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
