"""Fetched candidates, keyed by (query, source description): a re-run fetches nothing.

One gzip-JSON file per key, written atomically. CIF text is kept as is;
structures without CIF are kept as pymatgen dicts.
"""
from __future__ import annotations

import gzip
import json
import os
import uuid
from pathlib import Path
from typing import List, Optional

from cache.keys import structures_key
from screening.sources import Candidate


class StructureCache:
    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, query_key: str, source_description: str) -> Path:
        return self.root / f"{structures_key(query_key, source_description)}.json.gz"

    def get(self, query_key: str, source_description: str) -> Optional[List[Candidate]]:
        path = self._path(query_key, source_description)
        if not path.exists():
            return None
        try:
            rows = json.loads(gzip.decompress(path.read_bytes()))
        except (OSError, ValueError):
            return None  # unreadable entry: treat as a miss, it will be rewritten
        from pymatgen.core import Structure

        out = []
        for r in rows:
            s = Structure.from_dict(r["structure"]) if r.get("structure") else None
            out.append(Candidate(r["source"], r["id"], r["formula"], s, cif=r.get("cif"), known=r["known"]))
        return out

    def put(self, query_key: str, source_description: str, candidates: List[Candidate]) -> Path:
        rows = []
        for c in candidates:
            row = {"source": c.source, "id": c.id, "formula": c.formula, "known": c.known}
            if c.cif is not None:
                row["cif"] = c.cif
            else:
                row["structure"] = c.structure.as_dict()
            rows.append(row)
        path = self._path(query_key, source_description)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        tmp.write_bytes(gzip.compress(json.dumps(rows).encode(), 3))
        os.replace(tmp, path)
        return path

    def entries(self) -> List[Path]:
        return sorted(self.root.glob("*.json.gz"))
