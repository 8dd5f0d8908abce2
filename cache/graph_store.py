"""Sharded Zarr v3 store of crystal graphs: concurrent, resumable, verifiable.

`GraphStore.open(parent, featurizer)` uses the store `parent/featurizer-<fp>/`,
one per featurizer fingerprint, so graphs of another cutoff are a miss rather
than a clash, and a store never mixes graphs of two configs. A store is:

    store.json                  format + featurizer config (fixed at creation)
    units/<unit>-<token>.zarr/  one Zarr v3 group per write: CSR arrays, each one shard file
    manifest/<unit>.json        the publication record: keys, ids, counts, sha256 of every file
    tmp/                        units being written

<unit> is a hash of the keys the unit holds, so re-running the same work after
a crash makes the same unit; <token> is random per writer, so two writers never
write into the same directory. A writer builds its unit under tmp/, flushes it,
renames it into units/ and publishes it by creating its manifest with os.link,
which fails if the manifest exists: the first publisher of a unit wins and the
loser deletes its copy. Readers look only at manifests, so a writer killed at
any point leaves nothing they serve (only a leftover that `stale()` lists).
There are no locks. Writers skip keys published before they start; crystals
that concurrent writers both store end up in two units, and readers serve the
copy in the first unit by name, so every key is served exactly once.

A unit's arrays and manifest: cache/graph_units.py. Checking and housekeeping
(verify, repair, stale leftovers): cache/graph_upkeep.py.

Memory: streaming readers hold the graph data of one unit; random reads keep at
most _DECODED_BYTES of decoded units. The key index (key -> unit, position;
id -> key) holds an entry per stored crystal.
"""
from __future__ import annotations

import json
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from cache.atomic import publish_once, sha256_file, write_atomic
from cache.graph_units import CSR, DamagedUnit, Record, csr_arrays, read_manifest, write_unit
from cache.graph_upkeep import StoreUpkeep
from cache.keys import STORE_FORMAT
from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings
from screening.graph import CrystalGraph

__all__ = ["GraphStore", "DamagedUnit", "Record"]

_DECODED_BYTES = 32_000_000  # decoded units a reader keeps for repeated random reads (streaming holds one)
_KEEP_HANDLES = 256  # units whose Zarr handles and offsets random reads keep open


class GraphStore(StoreUpkeep):
    """One store directory; get one with `GraphStore.open` (or `GraphStore.at` for a known path)."""

    def __init__(self, root: Path, featurizer: FeaturizerSettings):
        self.root = Path(root)
        self.featurizer = featurizer
        self._manifests: Dict[str, dict] = {}  # unit -> manifest, published and readable
        self._unreadable: Dict[str, str] = {}  # unit -> why its manifest could not be used
        self._checked: set = set()  # units whose files matched their manifest's sha256
        self._index: Optional[Dict[str, Tuple[str, int]]] = None
        self._by_id: Optional[Dict[str, str]] = None
        self._units: "OrderedDict[str, dict]" = OrderedDict()
        self._handles: "OrderedDict[str, tuple]" = OrderedDict()

    # ---- opening ----
    @classmethod
    def open(cls, parent, featurizer: FeaturizerSettings) -> "GraphStore":
        """The store of graphs made with `featurizer` under `parent`, created if new."""
        root = Path(parent) / f"featurizer-{featurizer.fingerprint()}"
        for sub in ("units", "manifest", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        meta = {"format": STORE_FORMAT, "featurizer": featurizer.to_dict()}
        publish_once(root / "store.json", json.dumps(meta).encode())  # first creator wins, atomically
        return cls.at(root, featurizer)

    @classmethod
    def at(cls, root, featurizer: Optional[FeaturizerSettings] = None) -> "GraphStore":
        """An existing store directory; its featurizer is read from store.json (and must match if given)."""
        root = Path(root)
        try:
            meta = json.loads((root / "store.json").read_text())
        except (OSError, ValueError) as e:
            raise ScreenError(f"{root}: not a readable graph store ({type(e).__name__})") from None
        if meta.get("format") != STORE_FORMAT:
            raise ScreenError(f"{root}: graph store format {meta.get('format')} is not {STORE_FORMAT}; "
                              f"clear the cache (screen cache clear)")
        stored = FeaturizerSettings.from_dict(meta["featurizer"])
        if featurizer is not None and stored != featurizer:
            raise ScreenError(f"{root}: graph store was built with featurizer {stored.to_dict()}, "
                              f"not {featurizer.to_dict()}")
        return cls(root, stored)

    # ---- publication index ----
    def refresh(self) -> None:
        """Forget the index so the next lookup sees units published since (by this or other writers)."""
        self._index = self._by_id = None

    def _scan(self) -> None:
        for path in sorted((self.root / "manifest").glob("*.json")):
            unit = path.stem
            if unit in self._manifests:
                continue
            try:
                self._manifests[unit] = read_manifest(path)
                self._unreadable.pop(unit, None)
            except (OSError, ValueError) as e:
                # Not served: its crystals count as missing and get re-made; verify reports it.
                self._unreadable[unit] = str(e)

    def manifests(self) -> Dict[str, dict]:
        """unit -> manifest of every published, readable unit (as of the last refresh)."""
        if self._index is None:
            self.index()
        return self._manifests

    def index(self) -> Dict[str, Tuple[str, int]]:
        """key -> (unit, position); for a key stored twice, the first unit by name wins."""
        if self._index is None:
            self._scan()
            index: Dict[str, Tuple[str, int]] = {}
            for unit in sorted(self._manifests):
                for i, key in enumerate(self._manifests[unit]["keys"]):
                    index.setdefault(key, (unit, i))
            self._index = index
        return self._index

    def contains(self, key: str) -> bool:
        return key in self.index()

    def __len__(self) -> int:
        return len(self.index())

    def ids(self) -> Dict[str, str]:
        """key -> id of every served crystal."""
        return {k: self._manifests[u]["ids"][i] for k, (u, i) in self.index().items()}

    def _key_of(self, key_or_id: str) -> str:
        index = self.index()
        if key_or_id in index:
            return key_or_id
        if self._by_id is None:
            self._by_id = {}
            for k, (u, i) in index.items():
                self._by_id.setdefault(self._manifests[u]["ids"][i], k)
        if key_or_id not in self._by_id:
            raise ScreenError(f"{self.root}: no crystal with key or id {key_or_id}")
        return self._by_id[key_or_id]

    # ---- writing ----
    def write(self, keys: Sequence[str], ids: Sequence[str], graphs: Sequence[CrystalGraph],
              targets: Optional[np.ndarray] = None, task_names: Optional[Sequence[str]] = None,
              skip_published: bool = True) -> Optional[str]:
        """Write and publish one unit with these crystals; returns its name (None if nothing to write).

        Keys already published are skipped (unless skip_published=False); a key given twice
        is stored once. The crystals are served only once this returns.
        """
        if not len(keys) == len(ids) == len(graphs) or (targets is not None and len(targets) != len(keys)):
            raise ValueError("write: keys, ids, graphs (and targets) must have the same length")
        keep = self._to_write(keys, skip_published)
        if not keep:
            return None
        graphs = [graphs[i] for i in keep]
        arrays = csr_arrays(graphs)
        if targets is not None:
            arrays["targets"] = np.asarray(targets, dtype=np.float32)[keep].reshape(len(keep), -1)
            task_names = list(task_names or [])
            if task_names and len(task_names) != arrays["targets"].shape[1]:
                raise ValueError(f"write: {len(task_names)} task names for {arrays['targets'].shape[1]} targets")
        final, body = write_unit(self.root, [str(keys[i]) for i in keep], [str(ids[i]) for i in keep], graphs,
                                 arrays, task_names if targets is not None else None)
        self._publish(final, body)
        self.refresh()
        return body["unit"]

    def _to_write(self, keys: Sequence[str], skip_published: bool) -> List[int]:
        """Positions of the keys to write: each key once, none published before (if skip_published)."""
        self.refresh()
        seen, keep = set(), []
        for i, k in enumerate(keys):
            if k not in seen and not (skip_published and self.contains(k)):
                keep.append(i)
                seen.add(k)
        return keep

    def _publish(self, final: Path, body: dict) -> None:
        unit = body["unit"]
        manifest = self.root / "manifest" / f"{unit}.json"
        if not publish_once(manifest, json.dumps(body).encode()):
            self.refresh()
            self._scan()
            if unit in self._unreadable:
                # The name is taken by a damaged manifest (truncated, say): left alone, it would block
                # this unit for good, so every later run would re-make these crystals and never publish.
                write_atomic(manifest, json.dumps(body).encode())
                self._unreadable.pop(unit, None)
            else:
                shutil.rmtree(final, ignore_errors=True)  # another writer published this very unit first

    # ---- reading ----
    def _unit_path(self, unit: str) -> Path:
        return self.root / "units" / self._manifests[unit]["dir"]

    def _load_unit(self, unit: str) -> dict:
        """Every array of a unit, decoded; kept in an LRU bounded by _DECODED_BYTES."""
        if unit in self._units:
            self._units.move_to_end(unit)
            return self._units[unit]
        import zarr

        self._check_files(unit)
        group = zarr.open_group(str(self._unit_path(unit)), mode="r")
        data = {name: group[name][...] for name in group.array_keys()}
        self._units[unit] = data
        while len(self._units) > 1 and _nbytes(self._units) > _DECODED_BYTES:
            self._units.popitem(last=False)
        return data

    def _record(self, unit: str, i: int, arrays: dict, offsets: dict) -> Record:
        a0, a1 = (int(x) for x in offsets["atom_offsets"][i:i + 2])
        e0, e1 = (int(x) for x in offsets["edge_offsets"][i:i + 2])
        # Copies, so a record kept by the caller does not pin its whole decoded unit in memory.
        graph = CrystalGraph.from_csr(*(np.array(arrays[name][a:b]) for name, a, b in (
            ("atomic_numbers", a0, a1), ("neighbor_counts", a0, a1), ("dst", e0, e1), ("distances", e0, e1))))
        t = np.array(arrays["targets"][i]) if "targets" in arrays else None
        m = self._manifests[unit]
        return Record(m["keys"][i], m["ids"][i], graph, t)

    def isolated_atoms(self, key: str) -> int:
        """Atoms without a neighbour in a stored crystal, from its manifest (older manifests: from
        the graph). Its unit's files are checked first, so a damaged unit raises DamagedUnit here."""
        unit, i = self.index()[key]
        self._check_files(unit)
        counts = self._manifests[unit].get("isolated")
        if counts is not None:
            return int(counts[i])
        return int((self.get(key).neighbor_counts() == 0).sum())

    def get(self, key_or_id: str) -> CrystalGraph:
        return self.get_record(key_or_id).graph

    def get_record(self, key_or_id: str) -> Record:
        """One crystal by key (or by id).

        The first read from a unit decodes only the chunks that hold the crystal; a second
        read from the same unit decodes the whole unit and keeps it, so reading many crystals
        of one unit (a partition's worth) is cheap while reads scattered over a big store stay
        cheap too. Decoded units are bounded in bytes.
        """
        unit, i = self.index()[self._key_of(key_or_id)]
        if unit in self._units or unit in self._handles:
            data = self._load_unit(unit)
            self._handles.pop(unit, None)
            return self._record(unit, i, data, data)
        import zarr

        self._check_files(unit)
        group = zarr.open_group(str(self._unit_path(unit)), mode="r")
        arrays = {name: group[name] for name in group.array_keys()}
        offsets = {k: arrays[k][...] for k in ("atom_offsets", "edge_offsets")}
        self._handles[unit] = (arrays, offsets)  # remembers that this unit was read once
        while len(self._handles) > _KEEP_HANDLES:
            self._handles.popitem(last=False)
        return self._record(unit, i, arrays, offsets)

    def iter_records(self, keys: Optional[set] = None) -> Iterator[Record]:
        """Every served crystal once (or those in `keys`), streaming one unit at a time."""
        index = self.index()
        for unit in sorted(self._manifests):
            data = None
            for i, key in enumerate(self._manifests[unit]["keys"]):
                if index.get(key) != (unit, i) or (keys is not None and key not in keys):
                    continue
                data = data if data is not None else self._load_unit(unit)
                yield self._record(unit, i, data, data)
            self._units.pop(unit, None)

    def graph_set(self, keys: Sequence[str]):
        """The graphs of `keys` in that order as one GraphSet (screening/graphset.py), no targets.

        Each unit is read once, whole, and its files are checked against the manifest's
        sha256 first, so a damaged unit is an error here rather than silently wrong data.
        """
        from screening.graphset import GraphSet  # here, so `screen cache` never loads torch

        index = self.index()
        missing = [k for k in keys if k not in index]
        if missing:
            raise ScreenError(f"{self.root}: {len(missing)} crystals are not in the store (first: {missing[0]})")
        by_unit: Dict[str, List[Tuple[int, int]]] = {}
        for pos, key in enumerate(keys):
            unit, i = index[key]
            by_unit.setdefault(unit, []).append((pos, i))
        parts, order = [], []
        for unit in sorted(by_unit):
            self._check_files(unit)
            data = self._load_unit(unit)
            n = len(data["atom_offsets"]) - 1
            whole = GraphSet(*(data[name] for name in CSR), targets=np.zeros((n, 0), np.float32),
                             ids=list(self._manifests[unit]["ids"]))
            positions, rows = zip(*by_unit[unit])
            parts.append(whole.subset(rows))
            order.extend(positions)
            self._units.pop(unit, None)
        if not parts:
            return GraphSet.from_graphs([])
        return GraphSet.concat(parts).subset(np.argsort(order))

    def _check_files(self, unit: str) -> None:
        """Every file of the unit against the sha256 in its manifest, once per unit and store object.

        A flipped byte would otherwise be decoded into wrong distances (wrong predictions, then
        cached) or a decompression traceback; here it is one line that names the way out.
        """
        if unit in self._checked:
            return
        udir = self._unit_path(unit)
        for rel, digest in self._manifests[unit]["files"].items():
            path = udir / rel
            if not path.is_file() or sha256_file(path) != digest:
                raise DamagedUnit(f"{self.root}: unit {unit} is damaged ({rel} does not match its "
                                  f"manifest); run `screen cache verify`, then `screen cache clear`", unit)
        self._checked.add(unit)


def _nbytes(units: dict) -> int:
    return sum(a.nbytes for data in units.values() for a in data.values())
