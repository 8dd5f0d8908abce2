"""Writing a file all or nothing: the one helper every layer uses (checkpoints, metrics, caches, reports).

Data goes to a private temporary name in the same folder, is flushed to disk, and
then replaces the target in one step, so a reader (or a resumed run) never sees
half a file, and a full disk leaves no partial file behind. cache/atomic.py adds
the lock-free publication primitives the caches need on top.
"""
from __future__ import annotations

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


def _write_tmp(path: Path, data: bytes, durable: bool = True) -> Path:
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
    except OSError as e:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise OSError(e.errno, e.strerror, str(path)) from None  # named: "no space left writing <path>"
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Make `path` hold `data`, all or nothing; a concurrent writer of the same path may win.
    durable=False skips the fsync: only for files whose reader detects damage and can make them again."""
    tmp = _write_tmp(Path(path), data, durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
