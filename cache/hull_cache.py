"""Hull energies per chemical system, one folder per version of the reference data:

    hulls/<references_key(version)>/<system>.json.gz   screening.rank.system_hull's answer
    hulls/<references_key(version)>/meta.json.gz       {"version", "phases": number of reference phases}

`version` names the reference data and its version (a file's hash, MP's database
release and entry choice), so new reference data is another folder, never a
stale hit. A system's answer grows as runs need more compositions of it: read,
extend, write back atomically (the last of two concurrent writers wins; the
other's additions are computed again when needed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional

from cache import gz_json
from cache.keys import references_key


class HullCache:
    def __init__(self, root, version: str):
        self.dir = Path(root) / references_key(f"hulls|{version}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.version = version

    def get_many(self, systems: Iterable[str]) -> Dict[str, dict]:
        """The cached answers of those systems that have one."""
        out = {}
        for s in systems:
            path = self.dir / f"{s}.json.gz"
            if path.exists():
                try:
                    out[s] = gz_json.read(path)
                except gz_json.DAMAGED:
                    continue  # a miss: computed and written again
        return out

    def put(self, system: str, answer: dict) -> None:
        gz_json.write(self.dir / f"{system}.json.gz", answer)

    def phases(self) -> Optional[int]:
        """How many reference phases this version holds, if a run wrote it down."""
        try:
            return gz_json.read(self.dir / "meta.json.gz")["phases"]
        except (FileNotFoundError, *gz_json.DAMAGED):
            return None

    def put_phases(self, n: int) -> None:
        gz_json.write(self.dir / "meta.json.gz", {"version": self.version, "phases": n})
