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
import uuid
from pathlib import Path

TMP_PREFIX = ".tmp-"  # temporary files start with this; globs for published names never match them


def fsync_file(path: Path) -> None:
    # Without fsync a machine crash (not just a killed process) could leave a
    # published name pointing at data that never reached the disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_tmp(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise OSError(e.errno, e.strerror, str(path)) from None  # named: "no space left writing <path>"
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(path: Path, data: bytes) -> None:
    """Make `path` hold `data`, all or nothing; a concurrent writer of the same path may win."""
    tmp = _write_tmp(Path(path), data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
