"""Entries of a database fetched in full, one file each, keyed by what the entry is, not by the
database release (the MP source: endpoint, material_id and last_updated).

    mp_entries/<key[:2]>/<key>.json.gz   {"entry": the key's text, "structure": {...}}

A new database release in which an entry did not change (same last_updated) finds it here, so
only new and changed entries are fetched again. The text (`MPSource.entry_key`) is kept inside
and checked on read, so a file of another entry, a damaged or a foreign one is a miss, and the
next fetch rewrites it. `served` counts the hits of this object (a worker's partition).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from cache import gz_json
from cache.keys import entry_key


class EntryCache:
    def __init__(self, root):
        self.root = Path(root)
        self.served = 0

    def _path(self, entry: str) -> Path:
        key = entry_key(entry)
        return self.root / key[:2] / f"{key}.json.gz"

    def get(self, entry: str) -> Optional[dict]:
        path = self._path(entry)
        if not path.exists():
            return None
        try:
            doc = gz_json.read(path)
            if doc["entry"] != entry or not isinstance(doc["structure"], dict):
                return None
        except gz_json.DAMAGED:
            return None  # a damaged entry is a miss; the next put rewrites it
        self.served += 1
        return doc

    def put(self, entry: str, doc: dict) -> None:
        path = self._path(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        gz_json.write(path, dict(doc, entry=entry))

    def entries(self) -> List[Path]:
        return sorted(self.root.glob("*/*.json.gz"))

    def verify(self, repair: bool = False) -> List[str]:
        """Entries that cannot be read back (deleted with repair: the next run fetches them again)."""
        def mismatch(path: Path, doc: dict):
            doc["structure"]  # noqa: B018 - a KeyError here marks an entry of another layout
            if path.name != f"{entry_key(doc['entry'])}.json.gz":
                return "its name does not match its entry"
        return gz_json.verify(self.entries(), mismatch, repair)
