"""Crystal tables: a CSV like mp_dev.csv.gz or a CGCNN-style directory -> rows.

`read_crystal_csv` and `read_id_prop` are the one reader of each format, for training
data (read_table, here) and for local screening sources (screening/sources/local.py).

Each row has an id, the targets, and either CIF text (CSV) or a CIF path
(directory). workflows/train/training.py featurizes them into the graph store once;
rows whose structure cannot be used (unparsable CIF, disorder, unknown
element) are skipped and reported there, not fatal.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import pandas as pd

from screening.errors import ScreenError


def read_crystal_csv(path, required: Sequence[str] = ("material_id", "cif"), nrows: Optional[int] = None,
                     usecols: Optional[Sequence[str]] = None,
                     hint: Callable[[pd.DataFrame], str] = lambda df: "") -> pd.DataFrame:
    """A CSV of crystals, one per row, ids (and formulas) as text; a one-line error if it cannot be
    read or lacks a `required` column (`hint(df)` is added to that message)."""
    try:
        df = pd.read_csv(path, nrows=nrows, usecols=None if usecols is None else list(usecols),
                         dtype={"material_id": str, "formula": str})
    except Exception as e:
        raise ScreenError(f"{path}: could not read CSV ({' '.join(str(e).split())[:160]})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ScreenError(f"{path}: missing column(s) {', '.join(missing)}{hint(df)}")
    return df


def read_id_prop(folder, nrows: Optional[int] = None) -> pd.DataFrame:
    """A CGCNN directory's id_prop.csv: no header, the id (as text), then one column per target."""
    return pd.read_csv(Path(folder) / "id_prop.csv", header=None, nrows=nrows, dtype={0: str})


def read_table(path, tasks: Sequence[str], limit: Optional[int] = None) -> Tuple[pd.DataFrame, str]:
    """Rows with an id, the targets, and either CIF text or a CIF file path. Returns (table, kind)."""
    p = Path(path)
    if p.is_dir():
        id_prop = p / "id_prop.csv"
        if not id_prop.exists():
            raise ScreenError(f"{p}: directory has no id_prop.csv (CGCNN layout: id_prop.csv + <id>.cif)")
        df = read_id_prop(p, nrows=limit)
        if df.shape[1] - 1 < len(tasks):
            raise ScreenError(f"{id_prop}: has {df.shape[1] - 1} target columns, `tasks` names {len(tasks)}")
        df.columns = ["material_id"] + list(tasks) + [f"extra{i}" for i in range(df.shape[1] - 1 - len(tasks))]
        df["material_id"] = df["material_id"].astype(str)
        df["cif_path"] = [str(p / f"{i}.cif") for i in df.material_id]
        return df, "dir"
    if not p.is_file():
        raise ScreenError(f"{p}: no such training data file or directory")
    numeric = lambda df: "; numeric columns are " + ", ".join(  # noqa: E731
        c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]))
    df = read_crystal_csv(p, ["material_id", "cif", *tasks], nrows=limit, hint=numeric)
    for t in tasks:
        if not pd.api.types.is_numeric_dtype(df[t]):
            raise ScreenError(f"{p}: task column {t} is not numeric")
    return df, "csv"
