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


# --- screen cache (cache/ package) ---

# --- end screen cache ---


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
