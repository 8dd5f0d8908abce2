"""The model, loaded once per worker process and kept for every later task.

Dask keeps worker processes alive between tasks, so a module-level cache is
enough: the first inference task on a worker loads the checkpoint, the rest
reuse it. `load_count()` lets tests check that it really happens once.
"""
from __future__ import annotations

import threading

_models: dict = {}
_loads = 0
_lock = threading.Lock()


def get_model(path: str, device: str):
    global _loads
    from screening.ensemble import load_model
    from screening.predict import resolve_device
    from workflows.allocator import reuse_freed_memory

    key = (str(path), device)
    with _lock:
        if key not in _models:
            reuse_freed_memory()  # the model's batch tensors reuse heap pages (workflows/allocator.py)
            ckpt = load_model(path).to(resolve_device(device))
            _models[key] = ckpt
            _loads += 1
        return _models[key]


def load_count() -> int:
    return _loads
