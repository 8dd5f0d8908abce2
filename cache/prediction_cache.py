"""Predictions keyed by (graph key, model hash): a re-run with the same model infers nothing.

    predictions/<model>-<columns>/tasks.json         column names, fixed by the first writer
    predictions/<model>-<columns>/part-<digest>.npz  one file per write: keys (n,) and values (n, n_columns)

<model> is the model's hash (24 hex digits), <columns> a hash of the column names.

A part is published whole by atomic rename. Its name is a digest of its keys
and values, so two writers of the same predictions write the same part and
either copy is right. A key found in several parts is served from the first.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from cache.atomic import publish_once, write_atomic
from screening.errors import ScreenError


class PredictionCache:
    def __init__(self, root, model_hash: str, tasks: Sequence[str]):
        # The columns are part of the name: the same model cached with other columns (say,
        # before ensembles added the std columns) is another entry, never a clash.
        columns = hashlib.sha256(json.dumps(list(tasks)).encode()).hexdigest()[:8]
        self.dir = Path(root) / f"{model_hash[:24]}-{columns}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tasks = list(tasks)
        meta = self.dir / "tasks.json"
        publish_once(meta, json.dumps(self.tasks).encode())
        stored = json.loads(meta.read_text())
        if stored != self.tasks:
            raise ScreenError(f"{self.dir}: cached predictions are for tasks {stored}, not {self.tasks}")
        self._known: Dict[str, np.ndarray] = {}
        self._parts: set = set()

    def _load(self) -> Dict[str, np.ndarray]:
        for part in sorted(self.dir.glob("part-*.npz")):
            if part.name not in self._parts:
                try:
                    keys, values = _read_part(part, len(self.tasks))
                except (zipfile.BadZipFile, ValueError, KeyError, EOFError, zlib.error):  # damaged, not busy
                    # Its predictions become misses and are recomputed; moved aside (not deleted, so
                    # `screen cache verify` can still show it) instead of failing every later run.
                    _quarantine(part)
                    continue
                for k, row in zip(keys, values):
                    self._known.setdefault(k, row)
                self._parts.add(part.name)
        return self._known

    def get_many(self, keys: Sequence[str]) -> Dict[str, np.ndarray]:
        """key -> float32 (n_tasks,) for the keys that are cached (the hits)."""
        known = self._load()
        return {k: known[k] for k in keys if k in known}

    def put_many(self, keys: Sequence[str], values: np.ndarray) -> Path:
        values = np.asarray(values, dtype=np.float32).reshape(len(keys), len(self.tasks))
        keys = np.array([str(k) for k in keys])
        digest = hashlib.sha256(keys.tobytes() + values.tobytes()).hexdigest()[:20]
        buf = io.BytesIO()
        np.savez(buf, keys=keys, values=values)
        path = self.dir / f"part-{digest}.npz"
        write_atomic(path, buf.getvalue())
        for k, row in zip(keys.tolist(), values):
            self._known.setdefault(k, row)
        return path

    def __len__(self) -> int:
        return len(self._load())


def _read_part(path: Path, n_columns: Optional[int] = None):
    with np.load(path) as z:
        keys, values = [str(k) for k in z["keys"]], z["values"]
    if values.ndim != 2 or values.shape[0] != len(keys) or values.dtype != np.float32:
        raise ValueError(f"values {values.shape} {values.dtype} do not fit {len(keys)} keys")
    if n_columns is not None and values.shape[1] != n_columns:
        raise ValueError(f"{values.shape[1]} columns for {n_columns} tasks")
    return keys, values


def _quarantine(part: Path) -> None:
    try:
        part.rename(part.with_name(part.name + ".damaged"))
    except OSError:
        pass  # another process moved it first


def verify_predictions(root, repair: bool = False) -> List[str]:
    """Problems with cached prediction parts (unreadable, wrong shape); empty when all is well.

    With repair, every part listed is deleted (its predictions are recomputed by the next run),
    and so is a model folder whose tasks.json cannot be read.
    """
    problems = []
    for model_dir in sorted(p for p in Path(root).glob("*") if p.is_dir()):
        try:
            n_tasks = len(json.loads((model_dir / "tasks.json").read_text()))
        except (OSError, ValueError) as e:
            problems.append(f"{model_dir.name}/tasks.json: unreadable ({type(e).__name__})")
            if repair:
                shutil.rmtree(model_dir, ignore_errors=True)
            continue
        bad = []
        for part in sorted(model_dir.glob("part-*.npz")):
            try:
                _, values = _read_part(part)
                if values.shape[1] != n_tasks:
                    raise ValueError(f"{values.shape[1]} columns for {n_tasks} tasks")
            except Exception as e:  # a damaged zip raises many kinds of errors; all are findings
                problems.append(f"{model_dir.name}/{part.name}: unreadable ({type(e).__name__}: {e})")
                bad.append(part)
        for part in sorted(model_dir.glob("part-*.npz.damaged")):
            problems.append(f"{model_dir.name}/{part.name}: damaged, moved aside by a run (its predictions were recomputed)")
            bad.append(part)
        if repair:
            for part in bad:
                part.unlink(missing_ok=True)
    return problems
