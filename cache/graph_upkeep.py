"""The graph store's checking and housekeeping: verify (and repair), quarantine, stale leftovers, info.

A mixin of GraphStore (cache/graph_store.py): it works on the store's manifests and index, and
keeps apart from the reading and writing path, which it never changes.
"""
from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from cache.atomic import newest_mtime, publish_once
from cache.graph_units import DamagedUnit, count_problems, file_problems


class StoreUpkeep:
    def drop_damaged(self, keys: Optional[Sequence[str]] = None) -> int:
        """Quarantine every damaged unit (of these keys, or all); returns how many."""
        index = self.index()
        units = sorted({index[k][0] for k in keys if k in index}) if keys is not None else sorted(self._manifests)
        dropped = 0
        for unit in units:
            try:
                self._check_files(unit)
            except DamagedUnit:
                self.quarantine(unit)
                dropped += 1
        return dropped

    def quarantine(self, unit: str) -> None:
        """Stop serving a damaged unit: its manifest is moved aside (kept as evidence), so its
        crystals count as missing and the next writer of them makes a fresh unit."""
        manifest = self.root / "manifest" / f"{unit}.json"
        expected = self._manifests.get(unit, {}).get("sha256")
        aside = manifest.with_name(f"{unit}.json.damaged-{uuid.uuid4().hex[:8]}")
        try:
            manifest.rename(aside)
        except FileNotFoundError:
            pass  # another reader moved it first
        except OSError as e:
            raise DamagedUnit(f"{self.root}: unit {unit} is damaged and cannot be set aside "
                              f"({e.strerror}); run `screen cache clear`", unit) from None
        else:
            try:
                moved = json.loads(aside.read_text()).get("sha256")
            except (OSError, ValueError):
                moved = None
            if expected is not None and moved is not None and moved != expected:
                # A writer re-published this unit since we read its manifest: that one is sound. Put it back.
                publish_once(manifest, aside.read_bytes())
                aside.unlink(missing_ok=True)
        self._manifests.pop(unit, None)
        self._units.pop(unit, None)
        self._handles.pop(unit, None)
        self.refresh()

    def verify(self, repair: bool = False) -> List[str]:
        """Problems in published units (manifests, checksums, counts); empty when all is well.

        With repair, what cannot be trusted is removed (damaged units and unreadable
        manifests, with their files, and manifests that runs set aside): their crystals
        count as missing, and the next run or training re-makes them.
        """
        self.refresh()
        self.index()
        problems, untrusted = [], set()
        for unit, why in sorted(self._unreadable.items()):
            problems.append(f"manifest {unit}.json: unreadable ({why})")
            untrusted.add(unit)
        for unit, m in sorted(self._manifests.items()):
            bad = self._unit_problems(unit, m)
            problems += [f"unit {unit}: {b}" for b in bad]
            if bad:
                untrusted.add(unit)
        asides = sorted((self.root / "manifest").glob("*.json.damaged-*"))
        problems += [f"manifest {a.name}: a damaged unit that a run set aside (its crystals were re-made)"
                     for a in asides]
        if repair:
            self._repair(untrusted, asides)
        return problems

    def _repair(self, untrusted: set, asides: List[Path]) -> None:
        for unit in sorted(untrusted):
            if unit in self._manifests:
                self.quarantine(unit)
            elif unit in self._unreadable:
                (self.root / "manifest" / f"{unit}.json").unlink(missing_ok=True)
        for aside in asides:
            untrusted.add(aside.name.split(".")[0])
            aside.unlink(missing_ok=True)
        for aside in (self.root / "manifest").glob("*.json.damaged-*"):  # the ones quarantine made just now
            aside.unlink(missing_ok=True)
        self._unreadable.clear()
        self.refresh()
        self.index()
        served = {m["dir"] for m in self._manifests.values()}
        for unit in untrusted:
            for d in (self.root / "units").glob(f"{unit}-*.zarr"):
                if d.name not in served:  # a sound copy re-published meanwhile stays
                    shutil.rmtree(d, ignore_errors=True)

    def _unit_problems(self, unit: str, m: dict) -> List[str]:
        udir = self._unit_path(unit)
        if not udir.is_dir():
            return ["published but its directory is missing"]
        bad = file_problems(udir, m["files"])
        if not bad:
            try:
                bad += count_problems(m, self._load_unit(unit))
            except Exception as e:  # anything zarr raises on a damaged unit is a finding, not a crash
                bad.append(f"unreadable ({type(e).__name__}: {e})")
            finally:
                self._units.pop(unit, None)
        return bad

    def stale(self, min_age_s: float = 0.0) -> List[Path]:
        """Unpublished leftovers (killed writers' units) untouched for min_age_s; never served.

        A live writer's unit is unpublished too while it is written: pass a min_age_s
        longer than a write takes before deleting what this returns while writers run.
        """
        self.refresh()
        self.index()
        kept = {m["dir"] for m in self._manifests.values()}
        out = []
        for p in sorted(list((self.root / "tmp").iterdir()) + list((self.root / "units").iterdir())):
            # A unit whose manifest exists but is unreadable is evidence for verify, not garbage.
            if p.name in kept or p.name.split("-")[0] in self._unreadable:
                continue
            try:
                if time.time() - newest_mtime(p) >= min_age_s:
                    out.append(p)
            except FileNotFoundError:  # removed meanwhile
                continue
        return out

    def clean_stale(self, min_age_s: float = 0.0) -> int:
        items = self.stale(min_age_s)
        for p in items:
            shutil.rmtree(p, ignore_errors=True)
        return len(items)

    def info(self) -> dict:
        ms = self.manifests()
        copies = sum(len(m["keys"]) for m in ms.values())
        size = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return {"path": str(self.root), "crystals": len(self), "units": len(ms),
                "duplicate_copies": copies - len(self), "atoms": sum(m["n_atoms"] for m in ms.values()),
                "edges": sum(m["n_edges"] for m in ms.values()), "bytes": size,
                "unreadable_manifests": len(self._unreadable), "stale_items": len(self.stale()),
                "featurizer": self.featurizer.to_dict()}

    def entries(self) -> Iterator[dict]:
        """id, key, unit, atoms, edges of every served crystal, from the manifests alone."""
        index = self.index()
        for unit in sorted(self._manifests):
            m = self._manifests[unit]
            for i, key in enumerate(m["keys"]):
                if index[key] == (unit, i):
                    yield {"id": m["ids"][i], "key": key, "unit": unit, "atoms": m["atoms"][i],
                           "edges": m["edges"][i]}
