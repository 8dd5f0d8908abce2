"""Fetched candidates, keyed by (query, source description): a re-run fetches nothing.

    structures/<structures_key(query, source)>.json.gz           candidates (CIF text or structure dicts)
    structures/<structures_key(query, source)>.plan.json.gz      a query's partitions
    structures/<structures_key(part, source)>.keys-<fp>.json.gz  a partition's keyed candidates

One gzip-JSON file per key, written atomically, each naming its query and source.
CIF text is kept as is; structures without CIF are kept as pymatgen dicts. The
source description carries the data version (file hash, database release), so
new data is a miss rather than a stale hit.

A keyed entry is what a warm run needs of a partition and nothing more: per
candidate its id, formula, known values, and the graph key, isolated atoms,
density and element set that featurizer `fp` found, so a warm run neither
fetches, parses nor re-keys a structure.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from cache import gz_json
from cache.keys import structures_key
from screening.sources import Candidate


PLAN, KEYS = ".plan", ".keys-"


class StructureCache:
    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, query_key: str, source_description: str, kind: str = "") -> Path:
        return self.root / f"{structures_key(query_key, source_description)}{kind}.json.gz"

    def _read(self, path: Path, field: str) -> Optional[dict]:
        if not path.exists():
            return None
        try:
            doc = gz_json.read(path)
            doc[field]  # noqa: B018 - a KeyError here marks an entry of another layout
            return doc
        except gz_json.DAMAGED:
            return None  # a damaged entry is a miss; the next put rewrites it

    def get_plan(self, query_key: str, source_description: str) -> Optional[List[dict]]:
        doc = self._read(self._path(query_key, source_description, PLAN), "partitions")
        return None if doc is None else doc["partitions"]

    def put_plan(self, query_key: str, source_description: str, partitions: List[dict]) -> None:
        gz_json.write(self._path(query_key, source_description, PLAN),
                      {"query": query_key, "source": source_description, "partitions": partitions})

    def has_keyed(self, part_key: str, source_description: str, featurizer_fp: str) -> bool:
        return self._path(part_key, source_description, KEYS + featurizer_fp).exists()

    def get_keyed(self, part_key: str, source_description: str, featurizer_fp: str) -> Optional[dict]:
        """{"rows": [...], "errors": [...]} of a partition, or None on a miss."""
        return self._read(self._path(part_key, source_description, KEYS + featurizer_fp), "rows")

    def put_keyed(self, part_key: str, source_description: str, featurizer_fp: str, doc: dict) -> None:
        gz_json.write(self._path(part_key, source_description, KEYS + featurizer_fp),
                      dict(doc, query=part_key, source=source_description, featurizer=featurizer_fp))

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
            kind = PLAN if "partitions" in doc else KEYS + doc["featurizer"] if "rows" in doc else ""
            doc["partitions" if kind == PLAN else "rows" if kind else "candidates"]  # noqa: B018 - layout check
            if path.name != f"{structures_key(doc['query'], doc['source'])}{kind}.json.gz":
                return "its name does not match its query and source"
        return gz_json.verify(self.entries(), mismatch, repair)
