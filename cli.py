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


# --- screen cache (cache/ package) ---

# --- end screen cache ---


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
