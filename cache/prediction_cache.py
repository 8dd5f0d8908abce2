"""Predictions keyed by (graph key, model hash): a re-run with the same model infers nothing.

predictions/<model hash>/part-<digest>.npz, one file per write (published by
atomic rename), each holding keys and an (n, n_tasks) float32 array.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Dict, Sequence

import numpy as np


class PredictionCache:
    def __init__(self, root, model_hash: str, tasks: Sequence[str]):
        self.dir = Path(root) / model_hash[:32]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tasks = list(tasks)
        meta = self.dir / "tasks.json"
        if not meta.exists():
            tmp = meta.with_name(f".tasks.{uuid.uuid4().hex}")
            tmp.write_text(json.dumps(self.tasks))
            os.replace(tmp, meta)
        self._loaded: Dict[str, np.ndarray] = {}
        self._parts: set = set()

    def _load(self) -> Dict[str, np.ndarray]:
        for part in sorted(self.dir.glob("part-*.npz")):
            if part.name in self._parts:
                continue
            with np.load(part) as z:
                for k, row in zip(z["keys"], z["values"]):
                    self._loaded.setdefault(str(k), row)
            self._parts.add(part.name)
        return self._loaded

    def get_many(self, keys: Sequence[str]) -> Dict[str, np.ndarray]:
        known = self._load()
        return {k: known[k] for k in keys if k in known}

    def put_many(self, keys: Sequence[str], values: np.ndarray) -> None:
        if not len(keys):
            return
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]
        final = self.dir / f"part-{digest}.npz"
        tmp = self.dir / f".tmp-{uuid.uuid4().hex}.npz"
        np.savez(tmp, keys=np.array(keys), values=np.asarray(values, dtype=np.float32))
        os.replace(tmp, final)
        self._loaded.update(zip(keys, np.asarray(values, dtype=np.float32)))

    def __len__(self) -> int:
        return len(self._load())
