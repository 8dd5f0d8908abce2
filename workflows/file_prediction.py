"""`screen predict`: structure files -> a table of predicted properties."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import pandas as pd

from screening.ensemble import load_model, prediction_columns
from screening.errors import ScreenError
from screening.featurize import featurize
from screening.properties import BAND_GAP, METAL_GAP_EV
from cache.atomic import write_atomic
from screening.model_info import check_device
from screening.predict import resolve_device
from screening.rank import metal_class
from workflows.models import resolve_model_path
from screening.structures import read_structure, structure_files


def predict_files(paths: Sequence, model: Optional[Path] = None, device: str = "auto",
                  stop_at_bad: bool = False, gap_threshold: float = METAL_GAP_EV,
                  progress: Optional[Callable[[int, int], None]] = None) -> Tuple[pd.DataFrame, List[Tuple[str, str]]]:
    """Predictions for every readable structure file, and (file, why) for each unreadable one.

    In a folder of thousands of files a few bad ones are expected: they are listed, not fatal,
    unless stop_at_bad (then the first one is a ScreenError).
    """
    check_device(device)  # before the model loads
    ckpt = load_model(resolve_model_path(model))
    rows, graphs, bad = [], [], []
    files = structure_files(paths)
    for i, f in enumerate(files):
        try:
            s = read_structure(f)
            graphs.append(featurize(s, ckpt.featurizer, name=str(f)))
            rows.append({"file": str(f), "formula": s.composition.reduced_formula, "n_atoms": len(s)})
        except ScreenError as e:
            if stop_at_bad:
                raise
            bad.append((str(f), str(e)))
        if progress:
            progress(i + 1, len(files))
    if not graphs:
        raise ScreenError(f"{', '.join(map(str, paths))}: no readable structures"
                          + (f" ({len(bad)} unreadable; first: {bad[0][1]})" if bad else ""))
    mean, std = ckpt.predict_graphs(graphs, device=resolve_device(device))
    table = pd.concat([pd.DataFrame(rows), pd.DataFrame(prediction_columns(ckpt.outputs, mean, std))], axis=1)
    if BAND_GAP in ckpt.tasks:
        table["pred_class"] = metal_class(table, gap_threshold)
    table["model_hash"] = ckpt.short_hash
    return table, bad


def bad_list_path(out: Path) -> Path:
    """Where the unreadable files of a prediction written to `out` are listed."""
    return out.with_name(out.name.removesuffix(".csv") + ".bad.csv")


def write_predictions(out: Path, table: pd.DataFrame, bad: List[Tuple[str, str]]) -> None:
    """The table to `out` and the unreadable files to bad_list_path(out) (or no list: none were bad)."""
    out.parent.mkdir(parents=True, exist_ok=True)  # (checked writable before the work, made only now)
    write_atomic(out, table.to_csv(index=False).encode())
    if bad:
        write_atomic(bad_list_path(out), pd.DataFrame(bad, columns=["file", "problem"]).to_csv(index=False).encode())
    else:
        bad_list_path(out).unlink(missing_ok=True)  # a list from an earlier run would describe other files


def predict_showing_progress(console, err_console, paths: Sequence, model: Optional[Path], out: Path, device: str,
                             stop_at_bad: bool) -> int:
    """`screen predict`: the table to `out` and the terminal, a bar on `err_console` while it reads,
    and the unreadable files named there. Returns how many were unreadable."""
    from rich.progress import Progress

    from workflows.report import print_table, with_error_bars
    from workflows.run.options import check_writable

    bad_list = bad_list_path(out)
    check_writable("out", out.parent)  # an unwritable `out` fails now, not after the work
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        job = bar.add_task("reading and featurizing", total=None)
        table, bad = predict_files(paths, model, device=device, stop_at_bad=stop_at_bad,
                                   progress=lambda d, n: bar.update(job, completed=d, total=n))
    write_predictions(out, table, bad)
    print_table(console, with_error_bars(table), title=f"{len(table)} structures")
    console.print(f"wrote {out}", highlight=False)
    for _, why in bad[:10]:
        err_console.print(f"[yellow]unreadable:[/yellow] {why}", highlight=False, soft_wrap=True)
    if bad:
        more = f" ({len(bad) - 10} more)" if len(bad) > 10 else ""
        err_console.print(f"{len(bad)} of {len(bad) + len(table)} files unreadable{more}: listed in {bad_list}",
                          highlight=False)
    return len(bad)
