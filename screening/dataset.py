"""Training data tables: a CSV like mp_dev.csv.gz or a CGCNN-style directory -> rows.

Each row has an id, the targets, and either CIF text (CSV) or a CIF path
(directory). workflows/training.py featurizes them into the graph store once;
rows whose structure cannot be used (unparsable CIF, disorder, unknown
element) are skipped and reported there, not fatal.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import pandas as pd

from screening.errors import ScreenError


def read_table(path, tasks: Sequence[str], limit: Optional[int] = None) -> Tuple[pd.DataFrame, str]:
    """Rows with an id, the targets, and either CIF text or a CIF file path. Returns (table, kind)."""
    p = Path(path)
    if p.is_dir():
        id_prop = p / "id_prop.csv"
        if not id_prop.exists():
            raise ScreenError(f"{p}: directory has no id_prop.csv (CGCNN layout: id_prop.csv + <id>.cif)")
        df = pd.read_csv(id_prop, header=None, nrows=limit)
        if df.shape[1] - 1 < len(tasks):
            raise ScreenError(f"{id_prop}: has {df.shape[1] - 1} target columns, --tasks names {len(tasks)}")
        df.columns = ["material_id"] + list(tasks) + [f"extra{i}" for i in range(df.shape[1] - 1 - len(tasks))]
        df["material_id"] = df["material_id"].astype(str)
        df["cif_path"] = [str(p / f"{i}.cif") for i in df.material_id]
        return df, "dir"
    if not p.is_file():
        raise ScreenError(f"{p}: no such training data file or directory")
    try:
        df = pd.read_csv(p, nrows=limit)
    except Exception as e:
        raise ScreenError(f"{p}: could not read CSV ({e})") from None
    missing = [c for c in ["material_id", "cif", *tasks] if c not in df.columns]
    if missing:
        numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
        raise ScreenError(f"{p}: missing column(s) {', '.join(missing)}; numeric columns are {', '.join(numeric)}")
    for t in tasks:
        if not pd.api.types.is_numeric_dtype(df[t]):
            raise ScreenError(f"{p}: task column {t} is not numeric")
    return df, "csv"
