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
console = Console()
err_console = Console(stderr=True)


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

    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    featurizer = FeaturizerConfig(cutoff=cutoff, max_neighbors=max_neighbors)
    cfg = TrainConfig(tasks=task_list, task_weights=_floats(weights, "--weights") if weights else None,
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


# --- screen cache (cache/ package) ---

# --- end screen cache ---


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
