"""Small file primitives every cache uses to publish without locks.

Readers of the caches only ever see complete files: data is written under a
private temporary name, flushed to disk, and then made visible in one step,
either by `os.replace` (last writer wins; used where every writer writes the
same content) or by `os.link` (first writer wins; used for publication
records, where a second writer must learn that it lost).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from screening.atomic import TMP_PREFIX, _write_tmp, fsync_file, write_atomic  # noqa: F401  (the caches' one helper)

def publish_once(path: Path, data: bytes) -> bool:
    """Create `path` holding `data` only if it does not exist yet (atomic); False if it did."""
    tmp = _write_tmp(Path(path), data)
    try:
        os.link(tmp, path)  # fails if path exists, unlike rename: the first publisher wins
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def newest_mtime(path: Path) -> float:
    """Latest modification time of a file or of anything inside a directory."""
    path = Path(path)
    times = [path.stat().st_mtime]
    if path.is_dir():
        times += [p.stat().st_mtime for p in path.rglob("*")]
    return max(times)
