"""One unit of the graph store (cache/graph_store.py) on disk: its arrays, its manifest, their checks.

Per unit (n crystals, N atoms, E edges), a Zarr v3 group whose arrays are each one shard file:
    atomic_numbers  uint8 (N)     neighbor_counts uint8 (N) (uint16 if needed; src is implicit)
    dst             int32 (E)     distances       float32 (E)
    atom_offsets    int64 (n+1)   edge_offsets    int64 (n+1)
    targets         float32 (n, T), optional, NaN = missing; task names in the manifest

The manifest (manifest/<unit>.json) is the unit's publication record: keys, ids, per-crystal
counts and the sha256 of every file, sealed by a sha256 of its own body.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from cache.atomic import fsync_file, sha256_file
from cache.keys import STORE_FORMAT
from screening.errors import ScreenError
from screening.graph import CrystalGraph

_CHUNK = 8192  # elements per chunk inside the one shard of each array (a random read decodes one or two)
CSR = ("atomic_numbers", "neighbor_counts", "dst", "distances", "atom_offsets", "edge_offsets")


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


# Manifests this process has read and checked, by path, with the file's identity when read. A warm
# run opens a store per partition, and every store would otherwise parse and checksum every manifest
# again; a manifest is read again only if its file changed. Any write to a file gives it a new mtime,
# but within the clock's tick (milliseconds) a file written twice may keep one: only manifests older
# than MANIFEST_SETTLED seconds are remembered.
_MANIFESTS: Dict[str, Tuple[tuple, dict]] = {}
MANIFEST_SETTLED = 2.0


def read_manifest(path: Path) -> dict:
    """A unit's manifest; a ValueError when its own checksum does not match (or it is no JSON)."""
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


def csr_arrays(graphs: Sequence[CrystalGraph]) -> Dict[str, np.ndarray]:
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


def unit_name(keys: Sequence[str]) -> str:
    """A hash of the keys a unit holds: re-running the same work after a crash makes the same unit."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:24]


def write_unit(root: Path, keys: List[str], ids: List[str], graphs: Sequence[CrystalGraph],
               arrays: Dict[str, np.ndarray], task_names: Optional[List[str]]) -> Tuple[Path, dict]:
    """Build a unit under root/tmp, flush it and rename it into root/units under a name of this
    writer's alone; returns (its folder, its sealed manifest), not yet published."""
    import zarr

    unit = unit_name(keys)
    dirname = f"{unit}-{uuid.uuid4().hex[:8]}.zarr"
    tmp = root / "tmp" / dirname
    zarr.open_group(str(tmp), mode="w", zarr_format=3)
    for name, data in arrays.items():
        _write_array(tmp, name, data)
    files = {}
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            fsync_file(p)
            files[p.relative_to(tmp).as_posix()] = sha256_file(p)
    final = root / "units" / dirname
    os.rename(tmp, final)  # the name is ours alone, so this cannot collide
    body = {"format": STORE_FORMAT, "unit": unit, "dir": dirname, "keys": keys, "ids": ids,
            "atoms": [g.n_atoms for g in graphs], "edges": [g.n_edges for g in graphs],
            # atoms without a neighbour, per crystal: a domain flag that warm runs read from here
            "isolated": [int((g.neighbor_counts() == 0).sum()) for g in graphs],
            "n_atoms": int(arrays["atom_offsets"][-1]), "n_edges": int(arrays["edge_offsets"][-1]),
            "task_names": task_names, "files": files, "written": time.time()}
    body["sha256"] = _digest(body)
    return final, body


def file_problems(udir: Path, files: Dict[str, str]) -> List[str]:
    """The unit's files against the sha256 its manifest lists for each."""
    bad = []
    for rel, digest in files.items():
        p = udir / rel
        if not p.is_file():
            bad.append(f"missing file {rel}")
        elif sha256_file(p) != digest:
            bad.append(f"checksum mismatch in {rel}")
    return bad


def count_problems(m: dict, data: dict) -> List[str]:
    """Disagreements between a unit's arrays and its manifest (which were checked separately)."""
    n = len(m["keys"])
    atoms, edges = np.asarray(m["atoms"], dtype=np.int64), np.asarray(m["edges"], dtype=np.int64)
    ao, eo = data["atom_offsets"], data["edge_offsets"]
    if sorted(data) != sorted(CSR + (("targets",) if m["task_names"] is not None else ())):
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
