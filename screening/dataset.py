"""Training data: a CSV like mp_dev.csv.gz or a CGCNN-style directory -> GraphDataset.

Rows whose structure cannot be used (unparsable CIF, disorder, unknown
element) are skipped and reported, not fatal: one bad row in 33,000 should
not stop a training run, and the count tells the user what was dropped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from screening.errors import ScreenError
from screening.featurize import FeaturizerConfig, featurize
from screening.structures import read_structure, structure_from_cif_text
from screening.train import GraphDataset


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


def load_dataset(path, tasks: Sequence[str], featurizer: FeaturizerConfig, limit: Optional[int] = None,
                 progress: Optional[Callable[[int], None]] = None) -> Tuple[GraphDataset, List[str]]:
    """Featurize every usable row. Returns the dataset and one message per skipped row."""
    df, kind = read_table(path, tasks, limit)
    return dataset_from_table(df, kind, tasks, featurizer, progress)


def dataset_from_table(df: pd.DataFrame, kind: str, tasks: Sequence[str], featurizer: FeaturizerConfig,
                       progress: Optional[Callable[[int], None]] = None) -> Tuple[GraphDataset, List[str]]:
    """Featurize the rows of a table from `read_table` (or a subset of its rows)."""
    graphs, keep, skipped = [], [], []
    for i, row in enumerate(df.itertuples(index=False)):
        name = str(row.material_id)
        try:
            s = structure_from_cif_text(row.cif, name) if kind == "csv" else read_structure(row.cif_path)
            graphs.append(featurize(s, featurizer, name=name))
            keep.append(i)
        except ScreenError as e:
            skipped.append(str(e))
        if progress:
            progress(1)
    targets = df[list(tasks)].to_numpy(np.float32)[keep]
    ids = df.material_id.astype(str).to_numpy()[keep].tolist()
    return GraphDataset(graphs, targets, ids), skipped
