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

Per unit (n crystals, N atoms, E edges):
    atomic_numbers  uint8 (N)     neighbor_counts uint8 (N) (uint16 if needed; src is implicit)
    dst             int32 (E)     distances       float32 (E)
    atom_offsets    int64 (n+1)   edge_offsets    int64 (n+1)
    targets         float32 (n, T), optional, NaN = missing; task names in the manifest

Memory: streaming readers hold the graph data of one unit; random reads keep at
most ~32 MB of decoded units. The key index (key -> unit, position; id -> key)
takes ~250 bytes per stored crystal.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from cache.atomic import fsync_file, newest_mtime, publish_once, sha256_file, write_atomic
from cache.keys import STORE_FORMAT
from screening.errors import ScreenError
from screening.featurize import FeaturizerConfig
from screening.graph import CrystalGraph

_CHUNK = 8192  # elements per chunk inside the one shard of each array (a random read decodes one or two)
_CSR = ("atomic_numbers", "neighbor_counts", "dst", "distances", "atom_offsets", "edge_offsets")
_DECODED_BYTES = 32_000_000  # decoded units a reader keeps for repeated random reads (streaming holds one)
_KEEP_HANDLES = 256  # units whose Zarr handles and offsets random reads keep open


class DamagedUnit(ScreenError):
    """A published unit whose files no longer match their manifest's sha256."""

    def __init__(self, message: str, unit: Optional[str] = None):  # (message) first: pickles through Dask
        super().__init__(message)
        self.unit = unit


@dataclass
class Record:
    key: str
    id: str
    graph: CrystalGraph
    targets: Optional[np.ndarray] = None  # float32 (n_tasks,), NaN = missing


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _write_array(group_path: Path, name: str, data: np.ndarray) -> None:
    import zarr
    from zarr.codecs import BloscCodec

    chunks = (min(_CHUNK, max(1, data.shape[0])),) + data.shape[1:]
    shards = (-(-max(1, data.shape[0]) // chunks[0]) * chunks[0],) + data.shape[1:]  # whole array, whole chunks
    zarr.create_array(store=str(group_path), name=name, data=data, chunks=chunks, shards=shards,
                      compressors=[BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")])


# Manifests this process has read and checked, by path, with the file's identity when read, so that
# each task's store (a warm run opens one per partition: 133 manifests of 250 crystals each for
# ../shared/data, 45 ms of parsing and checksums a task) reads a manifest again only if it changed.
# Any write to a file gives it a new mtime, but within the clock's tick (milliseconds) a file
# written twice may keep one: only manifests older than MANIFEST_SETTLED seconds are remembered.
_MANIFESTS: Dict[str, Tuple[tuple, dict]] = {}
MANIFEST_SETTLED = 2.0


def _read_manifest(path: Path) -> dict:
    st = path.stat()
    identity = (st.st_ino, st.st_size, st.st_mtime_ns)
    known = _MANIFESTS.get(str(path))
    if known is not None and known[0] == identity:
        return known[1]
    m = json.loads(path.read_text())
    body = {k: v for k, v in m.items() if k != "sha256"}
    if m.get("sha256") != _digest(body):
        raise ValueError("its own checksum does not match")
    if time.time() - st.st_mtime > MANIFEST_SETTLED:
        _MANIFESTS[str(path)] = (identity, m)
    return m


class GraphStore:
    """One store directory; get one with `GraphStore.open` (or `GraphStore.at` for a known path)."""

    def __init__(self, root: Path, featurizer: FeaturizerConfig):
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
    def open(cls, parent, featurizer: FeaturizerConfig) -> "GraphStore":
        """The store of graphs made with `featurizer` under `parent`, created if new."""
        root = Path(parent) / f"featurizer-{featurizer.fingerprint()}"
        for sub in ("units", "manifest", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        meta = {"format": STORE_FORMAT, "featurizer": featurizer.to_dict()}
        publish_once(root / "store.json", json.dumps(meta).encode())  # first creator wins, atomically
        return cls.at(root, featurizer)

    @classmethod
    def at(cls, root, featurizer: Optional[FeaturizerConfig] = None) -> "GraphStore":
        """An existing store directory; its featurizer is read from store.json (and must match if given)."""
        root = Path(root)
        try:
            meta = json.loads((root / "store.json").read_text())
        except (OSError, ValueError) as e:
            raise ScreenError(f"{root}: not a readable graph store ({type(e).__name__})") from None
        if meta.get("format") != STORE_FORMAT:
            raise ScreenError(f"{root}: graph store format {meta.get('format')} is not {STORE_FORMAT}; "
                              f"clear the cache (screen cache clear)")
        stored = FeaturizerConfig.from_dict(meta["featurizer"])
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
                self._manifests[unit] = _read_manifest(path)
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
        self.refresh()
        seen = set()
        keep = []
        for i, k in enumerate(keys):
            if k not in seen and not (skip_published and self.contains(k)):
                keep.append(i)
                seen.add(k)
        if not keep:
            return None
        keys = [str(keys[i]) for i in keep]
        ids = [str(ids[i]) for i in keep]
        graphs = [graphs[i] for i in keep]
        arrays = self._csr_arrays(graphs)
        if targets is not None:
            arrays["targets"] = np.asarray(targets, dtype=np.float32)[keep].reshape(len(keep), -1)
            task_names = list(task_names or [])
            if task_names and len(task_names) != arrays["targets"].shape[1]:
                raise ValueError(f"write: {len(task_names)} task names for {arrays['targets'].shape[1]} targets")

        unit = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:24]
        dirname = f"{unit}-{uuid.uuid4().hex[:8]}.zarr"
        tmp = self.root / "tmp" / dirname
        import zarr

        zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for name, data in arrays.items():
            _write_array(tmp, name, data)
        files = {}
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                fsync_file(p)
                files[p.relative_to(tmp).as_posix()] = sha256_file(p)
        final = self.root / "units" / dirname
        os.rename(tmp, final)  # the name is ours alone, so this cannot collide
        body = {"format": STORE_FORMAT, "unit": unit, "dir": dirname, "keys": keys, "ids": ids,
                "atoms": [g.n_atoms for g in graphs], "edges": [g.n_edges for g in graphs],
                # atoms without a neighbour, per crystal: a domain flag that warm runs read from here
                "isolated": [int((g.neighbor_counts() == 0).sum()) for g in graphs],
                "n_atoms": int(arrays["atom_offsets"][-1]), "n_edges": int(arrays["edge_offsets"][-1]),
                "task_names": task_names if targets is not None else None, "files": files,
                "written": time.time()}
        body["sha256"] = _digest(body)
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
        self.refresh()
        return unit

    @staticmethod
    def _csr_arrays(graphs: Sequence[CrystalGraph]) -> Dict[str, np.ndarray]:
        counts = np.concatenate([g.neighbor_counts() for g in graphs])
        n_atoms = np.array([g.n_atoms for g in graphs], dtype=np.int64)
        n_edges = np.array([g.n_edges for g in graphs], dtype=np.int64)
        return {
            "atomic_numbers": np.concatenate([g.atomic_numbers for g in graphs]).astype(np.uint8),
            "neighbor_counts": counts.astype(np.uint8 if counts.max(initial=0) <= 255 else np.uint16),
            "dst": np.concatenate([g.dst for g in graphs]).astype(np.int32),
            "distances": np.concatenate([g.distances for g in graphs]).astype(np.float32),
            "atom_offsets": np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64),
            "edge_offsets": np.concatenate([[0], np.cumsum(n_edges)]).astype(np.int64),
        }

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
        read from the same unit decodes the whole unit (about four single reads' worth) and
        keeps it, so reading many crystals of one unit (a partition's worth) is cheap while
        reads scattered over a big store stay cheap too. Decoded units are bounded in bytes.
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
            whole = GraphSet(*(data[name] for name in _CSR), targets=np.zeros((n, 0), np.float32),
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

    # ---- checking and housekeeping ----
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
        return problems

    def _unit_problems(self, unit: str, m: dict) -> List[str]:
        udir = self._unit_path(unit)
        bad = []
        if not udir.is_dir():
            return ["published but its directory is missing"]
        for rel, digest in m["files"].items():
            p = udir / rel
            if not p.is_file():
                bad.append(f"missing file {rel}")
            elif sha256_file(p) != digest:
                bad.append(f"checksum mismatch in {rel}")
        if not bad:
            try:
                bad += _count_problems(m, self._load_unit(unit))
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


def _nbytes(units: dict) -> int:
    return sum(a.nbytes for data in units.values() for a in data.values())


def _count_problems(m: dict, data: dict) -> List[str]:
    """Disagreements between a unit's arrays and its manifest (which were checked separately)."""
    n = len(m["keys"])
    atoms, edges = np.asarray(m["atoms"], dtype=np.int64), np.asarray(m["edges"], dtype=np.int64)
    ao, eo = data["atom_offsets"], data["edge_offsets"]
    if sorted(data) != sorted(_CSR + (("targets",) if m["task_names"] is not None else ())):
        return [f"arrays {sorted(data)} do not match the manifest"]
    if not (len(m["ids"]) == len(atoms) == len(edges) == n and len(set(m["keys"])) == n):
        return ["manifest lists differ in length or repeat a key"]
    if not (len(ao) == len(eo) == n + 1 and np.array_equal(np.diff(ao), atoms)
            and np.array_equal(np.diff(eo), edges)):
        return ["offsets do not match the per-crystal counts in the manifest"]
    out = []
    if not (ao[-1] == len(data["atomic_numbers"]) == len(data["neighbor_counts"]) == m["n_atoms"]):
        out.append("atom arrays do not match the atom count")
    if not (eo[-1] == len(data["dst"]) == len(data["distances"]) == m["n_edges"]
            == int(data["neighbor_counts"].sum())):
        out.append("edge arrays do not match the edge count")
    elif n and len(data["dst"]):
        csum = np.concatenate([[0], np.cumsum(data["neighbor_counts"], dtype=np.int64)])
        if not np.array_equal(csum[ao[1:]] - csum[ao[:-1]], edges):
            out.append("neighbor counts do not add up to each crystal's edges")
        per_edge = np.repeat(atoms, edges)  # atoms of the crystal each edge belongs to
        if (data["dst"] < 0).any() or (data["dst"] >= per_edge).any():
            out.append("a neighbor index points outside its crystal")
    if "targets" in data and data["targets"].shape[0] != n:
        out.append("targets do not have one row per crystal")
    return out
