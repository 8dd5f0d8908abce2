"""Human-facing output: rich tables in the terminal (plots live in screening/plots.py)."""
from __future__ import annotations

import pandas as pd
from rich.table import Table


def print_table(console, df: pd.DataFrame, title: str = "", max_rows: int = 30, columns=None) -> None:
    cols = list(columns or df.columns)
    table = Table(title=title, show_lines=False)
    for c in cols:
        numeric = pd.api.types.is_numeric_dtype(df[c])
        table.add_column(str(c), justify="right" if numeric else "left")
    for _, row in df.head(max_rows).iterrows():
        table.add_row(*[_fmt(row[c]) for c in cols])
    console.print(table)
    if len(df) > max_rows:
        console.print(f"... {len(df) - max_rows} more rows")


def with_error_bars(df: pd.DataFrame) -> pd.DataFrame:
    """Each column with a `<name>_std` partner shown as "value ± std" (std dropped); plain where all std are 0."""
    out = df.copy()
    for std_col in [c for c in df.columns if c.endswith("_std") and c[:-4] in df.columns]:
        col = std_col[:-4]
        if (df[std_col].fillna(0) > 0).any():
            out[col] = [f"{v:.3f} ± {e:.3f}" if v == v else "" for v, e in zip(df[col], df[std_col])]
        out = out.drop(columns=std_col)
    return out


def known_status(df: pd.DataFrame):
    """What the source says of each crystal, in a word or two ("on hull, exp.", "GNoME"); None if it says nothing."""
    columns = {"dft_is_stable": "on hull", "experimental": "exp.", "gnome": "GNoME"}
    if not any(c in df.columns for c in columns):
        return None
    return pd.Series([", ".join(word for c, word in columns.items() if c in df.columns and pd.notna(row[c]) and row[c])
                      for _, row in df.iterrows()], index=df.index)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if v != v else f"{v:.3f}"
    return str(v)
