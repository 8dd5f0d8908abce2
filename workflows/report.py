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


P_METAL, GAP, CLASS = "pred_p_metal", "pred_band_gap", "pred_class"


def class_disagrees(df: pd.DataFrame, gap_threshold: float):
    """Per row, whether the gap regression contradicts the class by more than one σ (a "metal" whose
    Eg - σ is above the threshold, a "non-metal" whose Eg + σ is below it); None when the class
    comes from the gap itself (no metal head) and so cannot disagree with it."""
    if P_METAL not in df.columns or CLASS not in df.columns or GAP not in df.columns:
        return None
    gap = df[GAP].astype(float)
    std = df[f"{GAP}_std"].astype(float).fillna(0) if f"{GAP}_std" in df.columns else 0.0
    metal = df[CLASS].eq("metal")
    return (metal & (gap - std >= gap_threshold)) | (~metal & (gap + std < gap_threshold))


def shown_class(df: pd.DataFrame, gap_threshold: float) -> pd.Series:
    """The class as a reader sees it: "metal*" where the gap regression disagrees (class_disagrees)."""
    marks = class_disagrees(df, gap_threshold)
    if marks is None:
        return df[CLASS]
    return df[CLASS] + marks.map({True: "*", False: ""})


def class_note(df: pd.DataFrame, gap_threshold: float) -> str:
    """One line: where the metal / non-metal class comes from, and what a * means."""
    if P_METAL not in df.columns:
        return (f"class: from the predicted band gap Eg (metal below {gap_threshold:g} eV, --gap-threshold); "
                f"the model has no metal head")
    n = int(class_disagrees(df, gap_threshold).sum())
    return (f"class: from P(metal), the model's metal/non-metal head (metal at P >= 0.5), not from Eg, a separate "
            f"regression; a * marks a class whose Eg is more than 1 sigma on the other side of {gap_threshold:g} eV "
            f"({n} of the {len(df)} shown)")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if v != v else f"{v:.3f}"
    return str(v)
