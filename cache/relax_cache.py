"""Relaxed structures, keyed by (input structure, relaxer version): a re-run relaxes nothing.

    relaxed/<relaxer version hash>/<input key>.json.gz   {"structure": Structure.as_dict(), "info": {...}}
    relaxed/<relaxer version hash>/graph-<graph key>.json.gz   the funnel's link (workflows/run/funnel.py)

A link goes from an unrelaxed candidate's graph key (cache/keys.structure_key: structure and
featurizer) to what its relaxation gave: the input key, the relaxed structure's graph key and what
the table needs of it. A warm funnel reads links only: it neither fetches nor relaxes.

The input key is the canonical structure's hash (cache/keys.py), so the same crystal
from another source or query is a hit. Written atomically; a damaged entry is a miss
(and is re-made), never served.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Tuple

from cache import gz_json
from cache.atomic import write_atomic
from cache.keys import canonical_structure


def relax_key(structure) -> str:
    return hashlib.sha256(canonical_structure(structure).encode()).hexdigest()[:32]


class RelaxCache:
    def __init__(self, root, relaxer_version: str):
        self.dir = Path(root) / hashlib.sha256(relaxer_version.encode()).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "relaxer.txt").exists():  # what made these entries, for a person reading the cache
            write_atomic(self.dir / "relaxer.txt", relaxer_version.encode())

    def get(self, key: str) -> Optional[Tuple[dict, dict]]:
        """(structure dict, info) or None on a miss (also for a damaged entry)."""
        path = self.dir / f"{key}.json.gz"
        try:
            doc = gz_json.read(path)
            return doc["structure"], doc["info"]
        except FileNotFoundError:
            return None
        except gz_json.DAMAGED:
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, structure_dict: dict, info: dict) -> None:
        gz_json.write(self.dir / f"{key}.json.gz", {"structure": structure_dict, "info": info})

    def get_link(self, graph_key: str) -> Optional[dict]:
        """The funnel's link of an unrelaxed graph key, or None (also for a damaged one)."""
        path = self.dir / f"graph-{graph_key}.json.gz"
        try:
            return gz_json.read(path)
        except FileNotFoundError:
            return None
        except gz_json.DAMAGED:
            path.unlink(missing_ok=True)
            return None

    def put_link(self, graph_key: str, link: dict) -> None:
        gz_json.write(self.dir / f"graph-{graph_key}.json.gz", link)
