"""Sharded Zarr v3 store of crystal graphs: concurrent, resumable, verifiable.

Layout of a store directory:

    store.json                 format version + featurizer config (fixed at creation)
    units/<unit>.zarr/         one Zarr v3 group per write: CSR arrays, each one shard file
    manifest/<unit>.json       the publication record: keys, ids, sizes, sha256 of every file
    tmp/                       units being written

A writer builds its unit under tmp/, renames it into units/, then publishes
it by atomically writing its manifest entry. Readers only look at manifests,
so a writer killed at any point leaves nothing half-visible, and the unit
name is derived from the keys it holds, so re-running the same work rewrites
the same unit. No locks: each writer owns the units it writes. When
concurrent writers store the same crystal twice, readers serve the copy in
the first unit by name, so every key is served exactly once.

Per unit (n crystals, N atoms, E edges):
    atomic_numbers  uint8 (N)    neighbor_counts uint8 (N)   (src is implicit)
    dst             int32 (E)    distances       float32 (E)
    atom_offsets    int64 (n+1)  edge_offsets    int64 (n+1)
    targets         float32 (n, T), optional, NaN = missing
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

from screening.errors import ScreenError
from screening.featurize import FeaturizerConfig
from screening.graph import CrystalGraph

STORE_FORMAT = 1
_CHUNK = 8192  # elements per chunk inside the one shard of each array (random reads decode one)
_ARRAYS = ("atomic_numbers", "neighbor_counts", "dst", "distances", "atom_offsets", "edge_offsets")


@dataclass
class Record:
    key: str
    id: str
    graph: CrystalGraph
    targets: Optional[np.ndarray] = None


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _write_array(group_path: Path, name: str, data: np.ndarray) -> None:
    import zarr
    from zarr.codecs import BloscCodec

    chunks = (min(_CHUNK, max(1, data.shape[0])),) + data.shape[1:]
    shards = (max(1, data.shape[0]),) + data.shape[1:]  # one shard file per array
    shards = tuple(-(-s // c) * c for s, c in zip(shards, chunks))  # shard = whole chunks
    zarr.create_array(store=str(group_path), name=name, data=data, chunks=chunks, shards=shards,
                      compressors=[BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")])


class GraphStore:
    def __init__(self, root: Path, featurizer: FeaturizerConfig):
        self.root = Path(root)
        self.featurizer = featurizer
        self._index: Optional[Dict[str, Tuple[str, int]]] = None
        self._manifests: Dict[str, dict] = {}
        self._units: "OrderedDict[str, dict]" = OrderedDict()  # small cache of loaded units
        self._handles: "OrderedDict[str, tuple]" = OrderedDict()  # zarr handles for random reads

    # ---- opening ----
    @classmethod
    def open(cls, root, featurizer: FeaturizerConfig) -> "GraphStore":
        root = Path(root)
        for sub in ("units", "manifest", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        meta_path = root / "store.json"
        meta = {"format": STORE_FORMAT, "featurizer": featurizer.to_dict()}
        if not meta_path.exists():
            try:  # first creator wins; O_EXCL makes it race-free
                fd = os.open(meta_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(meta))
            except FileExistsError:
                pass
        for _ in range(50):  # another process may be mid-write of store.json
            try:
                existing = json.loads(meta_path.read_text())
                break
            except json.JSONDecodeError:
                time.sleep(0.05)
        else:
            raise ScreenError(f"{meta_path}: unreadable store description")
        if existing.get("format") != STORE_FORMAT:
            raise ScreenError(f"{root}: graph store format {existing.get('format')} is not {STORE_FORMAT}")
        if existing.get("featurizer") != featurizer.to_dict():
            raise ScreenError(f"{root}: graph store was built with featurizer {existing.get('featurizer')}, "
                              f"not {featurizer.to_dict()}; use another --cache directory")
        return cls(root, featurizer)

    # ---- publication index ----
    def manifests(self) -> Dict[str, dict]:
        for path in sorted((self.root / "manifest").glob("*.json")):
            unit = path.stem
            if unit not in self._manifests:
                self._manifests[unit] = json.loads(path.read_text())
        return self._manifests

    def refresh(self) -> None:
        self._index = None

    def index(self) -> Dict[str, Tuple[str, int]]:
        """key -> (unit, position); the first unit by name wins for duplicated keys."""
        if self._index is None:
            index: Dict[str, Tuple[str, int]] = {}
            for unit, m in sorted(self.manifests().items()):
                for i, key in enumerate(m["keys"]):
                    index.setdefault(key, (unit, i))
            self._index = index
        return self._index

    def contains(self, key: str) -> bool:
        return key in self.index()

    def __len__(self) -> int:
        return len(self.index())

    def ids(self) -> Dict[str, str]:
        """key -> id of every served crystal."""
        return {k: self.manifests()[u]["ids"][i] for k, (u, i) in self.index().items()}

    # ---- writing ----
    def write(self, keys: Sequence[str], ids: Sequence[str], graphs: Sequence[CrystalGraph],
              targets: Optional[np.ndarray] = None, task_names: Sequence[str] = ()) -> Optional[str]:
        """Write and publish one unit holding the given crystals not yet published. Returns its name."""
        self.refresh()
        seen = set()
        keep = []
        for i, k in enumerate(keys):
            if k not in seen and not self.contains(k):
                keep.append(i)
                seen.add(k)
        if not keep:
            return None
        keys = [keys[i] for i in keep]
        ids = [str(ids[i]) for i in keep]
        graphs = [graphs[i] for i in keep]
        unit = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:24]
        tmp = self.root / "tmp" / f"{unit}.{os.getpid()}.{uuid.uuid4().hex[:8]}.zarr"
        n_atoms = np.array([g.n_atoms for g in graphs], dtype=np.int64)
        n_edges = np.array([g.n_edges for g in graphs], dtype=np.int64)
        arrays = {
            "atomic_numbers": np.concatenate([g.atomic_numbers for g in graphs]).astype(np.uint8),
            "neighbor_counts": np.concatenate([g.neighbor_counts() for g in graphs]).astype(np.uint8),
            "dst": np.concatenate([g.dst for g in graphs]).astype(np.int32),
            "distances": np.concatenate([g.distances for g in graphs]).astype(np.float32),
            "atom_offsets": np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64),
            "edge_offsets": np.concatenate([[0], np.cumsum(n_edges)]).astype(np.int64),
        }
        if int(arrays["neighbor_counts"].max(initial=0)) > 255:
            raise ScreenError("graph store keeps at most 255 neighbors per atom")
        if targets is not None:
            arrays["targets"] = np.asarray(targets, dtype=np.float32)[keep]
        import zarr

        zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for name, data in arrays.items():
            _write_array(tmp, name, data)
        _pause_for_tests("SCREEN_STORE_PAUSE_BEFORE_PUBLISH")
        files = {str(p.relative_to(tmp)): _file_sha(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        final = self.root / "units" / f"{unit}.zarr"
        manifest_path = self.root / "manifest" / f"{unit}.json"
        if manifest_path.exists():  # someone published the same unit meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            return unit
        if final.exists():  # left by a writer killed before publishing: replace it
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent writer of the very same unit won the rename
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.exists():
                raise
        _write_json_atomic(manifest_path, {
            "keys": keys, "ids": ids, "n_atoms": int(n_atoms.sum()), "n_edges": int(n_edges.sum()),
            "task_names": list(task_names), "files": files, "written": time.time()})
        self.refresh()
        return unit

    # ---- reading ----
    def _load_unit(self, unit: str) -> dict:
        if unit in self._units:
            self._units.move_to_end(unit)
            return self._units[unit]
        import zarr

        group = zarr.open_group(str(self.root / "units" / f"{unit}.zarr"), mode="r")
        data = {name: group[name][...] for name in group.array_keys()}
        self._units[unit] = data
        while len(self._units) > 2:  # keep memory flat while streaming
            self._units.popitem(last=False)
        return data

    @staticmethod
    def _graph(data: dict, i: int) -> CrystalGraph:
        a0, a1 = data["atom_offsets"][i], data["atom_offsets"][i + 1]
        e0, e1 = data["edge_offsets"][i], data["edge_offsets"][i + 1]
        return CrystalGraph.from_csr(data["atomic_numbers"][a0:a1], data["neighbor_counts"][a0:a1],
                                     data["dst"][e0:e1], data["distances"][e0:e1])

    def get(self, key_or_id: str) -> CrystalGraph:
        return self.get_record(key_or_id).graph

    def get_record(self, key_or_id: str) -> Record:
        index = self.index()
        if key_or_id not in index:
            by_id = {m["ids"][i]: k for k, (u, i) in index.items() for m in [self.manifests()[u]]}
            if key_or_id not in by_id:
                raise ScreenError(f"{self.root}: no crystal with key or id {key_or_id}")
            key_or_id = by_id[key_or_id]
        unit, i = index[key_or_id]
        if unit in self._units:  # streaming or batch reads already hold this unit
            data = self._units[unit]
            t = data["targets"][i] if "targets" in data else None
            return Record(key_or_id, self.manifests()[unit]["ids"][i], self._graph(data, i), t)
        # Random access: read only the chunks holding crystal i (the shard index locates them).
        arrays, offsets = self._open_unit(unit)
        a0, a1 = offsets["atom_offsets"][i:i + 2]
        e0, e1 = offsets["edge_offsets"][i:i + 2]
        graph = CrystalGraph.from_csr(arrays["atomic_numbers"][a0:a1], arrays["neighbor_counts"][a0:a1],
                                      arrays["dst"][e0:e1], arrays["distances"][e0:e1])
        t = arrays["targets"][i] if "targets" in arrays else None
        return Record(key_or_id, self.manifests()[unit]["ids"][i], graph, t)

    def _open_unit(self, unit: str):
        """Array handles and the (small) offset arrays of a unit, kept for later random reads."""
        if unit not in self._handles:
            import zarr

            group = zarr.open_group(str(self.root / "units" / f"{unit}.zarr"), mode="r")
            arrays = {name: group[name] for name in group.array_keys()}
            offsets = {k: arrays[k][...] for k in ("atom_offsets", "edge_offsets")}
            self._handles[unit] = (arrays, offsets)
            while len(self._handles) > 256:
                self._handles.popitem(last=False)
        return self._handles[unit]

    def iter_records(self, keys: Optional[set] = None) -> Iterator[Record]:
        """Every served crystal once, streaming one unit at a time."""
        index = self.index()
        for unit, m in sorted(self.manifests().items()):
            data = None
            for i, key in enumerate(m["keys"]):
                if index.get(key) != (unit, i) or (keys is not None and key not in keys):
                    continue
                data = data if data is not None else self._load_unit(unit)
                t = data["targets"][i] if "targets" in data else None
                yield Record(key, m["ids"][i], self._graph(data, i), t)
            self._units.pop(unit, None)

    def iter_batches(self, max_atoms: int = 20_000, keys: Optional[set] = None) -> Iterator[List[Record]]:
        """Lists of records whose atoms add up to at most max_atoms (one big crystal may go alone)."""
        batch, total = [], 0
        for r in self.iter_records(keys):
            if batch and total + r.graph.n_atoms > max_atoms:
                yield batch
                batch, total = [], 0
            batch.append(r)
            total += r.graph.n_atoms
        if batch:
            yield batch

    # ---- checking and housekeeping ----
    def verify(self) -> List[str]:
        """Problems found in published units (checksums, counts); empty when all is well."""
        problems = []
        for unit, m in sorted(self.manifests().items()):
            udir = self.root / "units" / f"{unit}.zarr"
            if not udir.is_dir():
                problems.append(f"unit {unit}: published but its directory is missing")
                continue
            for rel, digest in m["files"].items():
                p = udir / rel
                if not p.is_file():
                    problems.append(f"unit {unit}: missing file {rel}")
                elif _file_sha(p) != digest:
                    problems.append(f"unit {unit}: checksum mismatch in {rel}")
            if any(x.startswith(f"unit {unit}:") for x in problems):
                continue
            try:
                data = self._load_unit(unit)
                n = len(m["keys"])
                ok = (len(data["atom_offsets"]) == n + 1 and data["atom_offsets"][-1] == len(data["atomic_numbers"])
                      == m["n_atoms"] and data["edge_offsets"][-1] == len(data["dst"]) == m["n_edges"]
                      == int(data["neighbor_counts"].sum()))
                if not ok:
                    problems.append(f"unit {unit}: counts do not match its manifest")
            except Exception as e:
                problems.append(f"unit {unit}: unreadable ({type(e).__name__}: {e})")
            finally:
                self._units.pop(unit, None)
        return problems

    def stale(self) -> List[Path]:
        """Leftovers of killed writers: temp units and unpublished unit directories."""
        published = set(self.manifests())
        leftovers = list((self.root / "tmp").glob("*"))
        leftovers += [p for p in (self.root / "units").glob("*.zarr") if p.name[:-5] not in published]
        return leftovers

    def clean_stale(self) -> int:
        items = self.stale()
        for p in items:
            shutil.rmtree(p, ignore_errors=True)
        return len(items)

    def info(self) -> dict:
        ms = self.manifests()
        total_keys = sum(len(m["keys"]) for m in ms.values())
        size = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return {"path": str(self.root), "crystals": len(self), "units": len(ms),
                "duplicate_copies": total_keys - len(self), "atoms": sum(m["n_atoms"] for m in ms.values()),
                "edges": sum(m["n_edges"] for m in ms.values()), "bytes": size,
                "stale_items": len(self.stale()), "featurizer": self.featurizer.to_dict()}


def _pause_for_tests(var: str) -> None:
    """Crash tests set this to hold a writer between writing and publishing."""
    seconds = float(os.environ.get(var, "0") or 0)
    if seconds:
        flag = os.environ.get(var + "_FLAG")
        if flag:
            Path(flag).write_text("paused")
        time.sleep(seconds)
