"""Training tables under the cache: which graph (by key) and which targets each row of a data file has.

    DIR/datasets/<digest>.npz   ids, keys, targets (float32, NaN = missing), tasks, skipped rows

<digest> covers the data file's bytes (for a CGCNN directory: id_prop.csv),
the task columns, which rows were taken and the featurizer fingerprint, so an edited
file or another cutoff is a new entry. The graphs themselves live in the graph
store, shared with screening runs; targets belong to the data file, so they
live here, and two rows with the same structure share one stored graph.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from cache.atomic import sha256_file, write_atomic
from screening.featurize import FeaturizerSettings

FORMAT = 1


@dataclass
class TrainingTable:
    ids: List[str]
    keys: List[str]
    targets: np.ndarray  # (n, n_tasks) float32
    tasks: List[str]
    skipped: List[str]  # one message per row that could not be featurized


def table_digest(data, tasks: Sequence[str], rows, featurizer: FeaturizerSettings) -> str:
    """`rows` says which rows were taken (any JSON value: a limit, a sample's size and seed)."""
    data = Path(data)
    source = data / "id_prop.csv" if data.is_dir() else data
    recipe = json.dumps({"format": FORMAT, "data": sha256_file(source), "tasks": list(tasks),
                         "rows": rows, "featurizer": featurizer.fingerprint()}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:24]


class TrainingTables:
    def __init__(self, root):
        self.root = Path(root)

    def _path(self, digest: str) -> Path:
        return self.root / f"{digest}.npz"

    def get(self, digest: str) -> Optional[TrainingTable]:
        """The table, or None if absent or unreadable (a damaged entry is a miss, re-made by the caller)."""
        try:
            with np.load(self._path(digest), allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                table = TrainingTable([str(x) for x in z["ids"]], [str(x) for x in z["keys"]],
                                      z["targets"].astype(np.float32), meta["tasks"], meta["skipped"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None
        if not len(table.ids) == len(table.keys) == len(table.targets):
            return None
        return table

    def put(self, digest: str, table: TrainingTable) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, ids=np.array(table.ids, dtype=str), keys=np.array(table.keys, dtype=str),
                 targets=np.asarray(table.targets, np.float32),
                 meta=np.array(json.dumps({"tasks": list(table.tasks), "skipped": table.skipped})))
        write_atomic(self._path(digest), buf.getvalue())
