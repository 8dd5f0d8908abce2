"""Cache entries stored as one gzip-compressed JSON document per file (structures, references,
relaxed structures): read, written atomically, and checked, the same way for all of them."""
from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from cache.atomic import write_atomic

# What reading a damaged or foreign entry raises (truncated gzip is an EOFError).
DAMAGED = (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError)


def read(path: Path) -> dict:
    return json.loads(gzip.decompress(Path(path).read_bytes()))


def write(path: Path, doc: dict, durable: bool = True) -> None:
    """durable=False: no fsync (see write_atomic). Safe here for an entry that is made again when
    missing: what a crash could leave of it fails gzip's CRC on reading, which is a miss (DAMAGED)."""
    write_atomic(Path(path), gzip.compress(json.dumps(doc).encode(), 3), durable)


def verify(paths: Iterable[Path], mismatch: Callable[[Path, dict], Optional[str]], repair: bool = False) -> List[str]:
    """One line per entry that cannot be read back or whose content `mismatch` rejects;
    with repair, such entries are deleted (the next run makes them again)."""
    problems = []
    for path in paths:
        try:
            why = mismatch(path, read(path))
        except DAMAGED as e:
            why = f"unreadable ({type(e).__name__})"
        if why:
            problems.append(f"{path.name}: {why}")
            if repair:
                path.unlink(missing_ok=True)
    return problems
