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
from typing import Dict, Iterable, List, Optional

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
        # no fsync: a run writes one small entry per chemical system (a whole-database run, many
        # thousands: an fsync each would dominate), and a damaged one is computed again (get_many)
        gz_json.write(self.dir / f"{system}.json.gz", answer, durable=False)

    def phases(self) -> Optional[int]:
        """How many reference phases this version holds, if a run wrote it down."""
        try:
            return gz_json.read(self.dir / "meta.json.gz")["phases"]
        except (FileNotFoundError, *gz_json.DAMAGED):
            return None

    def put_phases(self, n: int) -> None:
        gz_json.write(self.dir / "meta.json.gz", {"version": self.version, "phases": n})


def verify_hulls(root, repair: bool = False) -> List[str]:
    """Hull entries that cannot be read back or are not a system's answer, and version folders whose
    meta names another version (deleted with repair: the next run computes them again)."""
    def mismatch(path: Path, doc: dict):
        if path.name == "meta.json.gz":
            if path.parent.name != references_key(f"hulls|{doc['version']}") or not isinstance(doc["phases"], int):
                return "its folder does not match the version it names"
        elif not (isinstance(doc["formulas"], dict) and isinstance(doc["loo"], dict)
                  and all(isinstance(v, list) and len(v) == 4 for v in doc["formulas"].values())):
            return "not a chemical system's hull answer"
    return [f"{folder.name}/{problem}" for folder in sorted(Path(root).glob("*/"))
            for problem in gz_json.verify(sorted(folder.glob("*.json.gz")), mismatch, repair)]
