"""The model, loaded once per worker process and kept for every later task; and what the client
needs of it, described without loading it there.

Dask keeps worker processes alive between tasks, so a module-level cache is
enough: the first inference task on a worker loads the checkpoint, the rest
reuse it. `load_count()` lets tests check that it really happens once.

`describe(path, cache_dir)` gives the client a ModelInfo (screening/model_info.py): from
the cache, keyed by the sizes and modification times of the model's files, or made in a
short-lived child process. The client of `screen run` never imports torch, which would be
most of a warm run's memory there, and a slow import (screening/model_info.py).
"""
from __future__ import annotations

import hashlib
import json
import sys
import threading
from pathlib import Path
from typing import List, Optional, Tuple

from screening.errors import ScreenError
from screening.model_info import ModelInfo, model_file, read_manifest

_models: dict = {}
_loads = 0
_lock = threading.Lock()


def get_model(path: str, device: str, expected_hash: Optional[str] = None):
    """The model at `path` on `device`, loaded once per process. With `expected_hash` (what the run's
    predictions are cached under): a model kept from before whose file has since been replaced is
    loaded again, and weights of another hash are a ScreenError, never predictions under that key."""
    global _loads
    from screening.ensemble import load_model
    from screening.predict import resolve_device
    from workflows.allocator import reuse_freed_memory

    key = (str(path), device)
    with _lock:
        if key not in _models or expected_hash not in (None, _models[key].hash):
            reuse_freed_memory()  # the model's batch tensors reuse heap pages (workflows/allocator.py)
            ckpt = load_model(path).to(resolve_device(device))
            _models[key] = ckpt
            _loads += 1
        model = _models[key]
    if expected_hash is not None and model.hash != expected_hash:
        raise ScreenError(f"`model` {path}: the file changed after the run described it (its weights have hash "
                          f"{model.short_hash}, the run expected {expected_hash[:12]}); nothing was predicted "
                          f"with it, run again")
    return model


def load_count() -> int:
    return _loads


def inference_path(device: str) -> str:
    """What ran the model's edge work in this process on `device`: "c", or "torch (why)" (screening/kernels.py)."""
    from screening.kernels import inference_path
    from screening.predict import resolve_device

    return inference_path(resolve_device(device))


def describe(path, cache_dir=None) -> ModelInfo:
    """What a run's client needs of the model at `path`; a missing or damaged model is a ScreenError.
    A description made now is kept in the cache for the next run."""
    info, stamp = described(path, cache_dir)
    keep(cache_dir, stamp, info)
    return info


def described(path, cache_dir=None) -> Tuple[ModelInfo, Optional[str]]:
    """(describe's answer, the stamp to keep it under, or None when it came from the cache or cannot be
    kept): it writes nothing, so a run's option checks leave no trace (keep() writes it later)."""
    from cache import gz_json
    from cache.cache_dir import CacheDir

    stamp = _stamp(Path(path))
    target = CacheDir(cache_dir).model_info_path(stamp) if stamp and cache_dir is not None else None
    if target is not None:
        try:
            return ModelInfo.from_dict(gz_json.read(target)), None
        except (FileNotFoundError, *gz_json.DAMAGED):
            pass
    if "torch" in sys.modules:  # loaded here already (tests, a training run): nothing to save
        info = describe_here(str(path))
    else:
        info = _in_child(str(path))
    return info, stamp if target is not None else None


def keep(cache_dir, stamp: Optional[str], info: ModelInfo) -> None:
    """Keep a description made by described() in the cache (claimed now if it is new)."""
    if stamp is None or cache_dir is None:
        return
    from cache import gz_json
    from cache.cache_dir import CacheDir

    try:
        target = CacheDir(cache_dir).claim().model_info_path(stamp)
        target.parent.mkdir(exist_ok=True)
        gz_json.write(target, info.to_dict())
    except OSError:
        pass  # only a cache: the next run describes the model again


def describe_here(path: str) -> ModelInfo:
    from screening.ensemble import load_model

    return load_model(path).info()


def _in_child(path: str) -> ModelInfo:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(describe_here, path).result()
    except BrokenProcessPool as e:
        raise ScreenError(f"{path}: the process loading the model died ({e})") from None


def _stamp(path: Path) -> Optional[str]:
    """A digest of the model files' paths, inodes, sizes and modification and change times; None if they
    cannot all be listed (describe then loads the model, which says what is wrong). The change time and
    the inode move whenever a file is written or replaced, even by one of the same size and mtime
    (which a copy that keeps times makes); the workers check the weights' hash all the same."""
    try:
        files = _files(path)
        listed = [(str(f.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                  for f in files for st in [f.stat()]]
    except (OSError, ScreenError):
        return None
    return hashlib.sha256(json.dumps(["model-info-2", listed]).encode()).hexdigest()[:32]


def _files(path: Path) -> List[Path]:
    path = model_file(path)
    if path.suffix != ".json":
        return [path]
    return [path] + [member for member, _ in read_manifest(path)[1]]
