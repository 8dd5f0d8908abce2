"""Fetched candidates, keyed by (query, source description): a re-run fetches nothing.

    structures/<structures_key(query, source)>.json.gz

One gzip-JSON file per key, written atomically: {"query", "source",
"candidates": [...]}. CIF text is kept as is; structures without CIF are kept
as pymatgen dicts. The source description carries the data version (file hash,
database release), so new data is a miss rather than a stale hit.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from cache import gz_json
from cache.keys import structures_key
from screening.sources import Candidate


class StructureCache:
    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, query_key: str, source_description: str) -> Path:
        return self.root / f"{structures_key(query_key, source_description)}.json.gz"

    def get(self, query_key: str, source_description: str) -> Optional[List[Candidate]]:
        """The cached candidates, or None on a miss."""
        path = self._path(query_key, source_description)
        if not path.exists():
            return None
        try:
            doc = gz_json.read(path)
            doc["candidates"]  # noqa: B018 - a KeyError here marks an entry of another layout
        except gz_json.DAMAGED:
            return None  # a damaged entry is a miss; the next put rewrites it
        from pymatgen.core import Structure

        return [Candidate(r["source"], r["id"], r["formula"],
                          Structure.from_dict(r["structure"]) if r.get("structure") else None,
                          cif=r.get("cif"), known=r["known"])
                for r in doc["candidates"]]

    def put(self, query_key: str, source_description: str, candidates: List[Candidate]) -> Path:
        rows = []
        for c in candidates:
            row = {"source": c.source, "id": c.id, "formula": c.formula, "known": c.known}
            if c.cif is not None:
                row["cif"] = c.cif
            else:
                row["structure"] = c.structure.as_dict()
            rows.append(row)
        doc = {"query": query_key, "source": source_description, "candidates": rows}
        path = self._path(query_key, source_description)
        gz_json.write(path, doc)
        return path

    def entries(self) -> List[Path]:
        return sorted(self.root.glob("*.json.gz"))

    def verify(self, repair: bool = False) -> List[str]:
        """Entries that cannot be read back (deleted with repair: the next run fetches again)."""
        def mismatch(path: Path, doc: dict):
            doc["candidates"]  # noqa: B018 - a KeyError here marks an entry of another layout
            if path.name != f"{structures_key(doc['query'], doc['source'])}.json.gz":
                return "its name does not match its query and source"
        return gz_json.verify(self.entries(), mismatch, repair)
