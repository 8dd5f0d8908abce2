"""Reference phases from the Materials Project's thermo data, one file per database:

    references/<references_key(description)>.json.gz
        {"description": ..., "systems": {"Li-O": [[id, formula, eV/atom], ...], ...}}

`description` names the endpoint, database version, thermo type and the choice
of entries (MPSource.thermo_description()), so a new database release or
--gnome is another file, never a stale hit. A file grows as runs need more
chemical systems: read, add, write back atomically. A system MP has no entries
for is kept as an empty list, so it is not asked for again. Two runs adding
systems at the same moment may lose one's additions (the last writer wins);
the next run that needs them fetches them again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List

from cache import gz_json
from cache.keys import references_key


class ReferenceCache:
    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, description: str) -> Path:
        return self.root / f"{references_key(description)}.json.gz"

    def _systems(self, description: str) -> Dict[str, list]:
        path = self._path(description)
        if not path.exists():
            return {}
        try:
            doc = gz_json.read(path)
            return doc["systems"] if doc["description"] == description else {}
        except gz_json.DAMAGED:
            return {}  # a damaged file is a miss; the next add rewrites it

    def get(self, description: str, systems: Iterable[str]) -> Dict[str, List[tuple]]:
        """The cached entries of those systems that are cached ({system: [(id, formula, energy)]})."""
        have = self._systems(description)
        return {s: [tuple(r) for r in have[s]] for s in systems if s in have}

    def add(self, description: str, fetched: Dict[str, List[tuple]]) -> None:
        systems = self._systems(description)
        systems.update({s: [list(r) for r in rows] for s, rows in fetched.items()})
        doc = {"description": description, "systems": systems}
        gz_json.write(self._path(description), doc)

    def entries(self) -> List[Path]:
        return sorted(self.root.glob("*.json.gz"))

    def verify(self, repair: bool = False) -> List[str]:
        """Entries that cannot be read back (deleted with repair: the next run fetches them again)."""
        def mismatch(path: Path, doc: dict):
            if path.name != f"{references_key(doc['description'])}.json.gz" or not isinstance(doc["systems"], dict):
                return "its name does not match its description"
        return gz_json.verify(self.entries(), mismatch, repair)
