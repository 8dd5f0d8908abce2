"""Graph store throughput and size on the first 5,000 MP crystals, vs torch.save of CGCNN features.

Prints write and read throughput (graphs/s) and bytes per graph for
  store      : screen's sharded Zarr v3 graph store (atomic numbers, CSR edges, float32 distances)
  torch.save : the same graphs with CGCNN's expanded features per crystal
               (92-long atom features, 12 x 41 Gaussian-expanded neighbor features, neighbor indices)
and a `ratio:` line (torch.save bytes / store bytes; store speed / torch.save speed).
Store writes include fsync and sha256 of every file (what makes them crash-safe).

    python benchmarks/store.py [--n 5000] [--unit 500]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cache.graph_store import GraphStore
from cache.keys import structure_key
from screening.elements import atom_feature_table
from screening.featurize import FeaturizerSettings, featurize
from screening.structures import structure_from_cif_text

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp_dev.csv.gz"


def cgcnn_features(g, centers, step=0.2, max_nbr=12, radius=8.0):
    """CGCNN's stored tensors for one crystal (padding short neighbor lists like CGCNN)."""
    table = atom_feature_table()
    n = g.n_atoms
    idx = np.zeros((n, max_nbr), dtype=np.int64)
    dist = np.full((n, max_nbr), radius + 1.0, dtype=np.float32)
    counts = g.neighbor_counts()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for i in range(n):
        k = counts[i]
        idx[i, :k] = g.dst[starts[i]:starts[i] + k]
        dist[i, :k] = g.distances[starts[i]:starts[i] + k]
    nbr_fea = np.exp(-((dist[..., None] - centers) ** 2) / step**2).astype(np.float32)
    return (torch.from_numpy(table[g.atomic_numbers]), torch.from_numpy(nbr_fea), torch.from_numpy(idx))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--unit", type=int, default=500, help="crystals per store unit (one Dask partition)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    df = pd.read_csv(DATA, nrows=args.n)
    cfg = FeaturizerSettings()
    structures = [structure_from_cif_text(c, i) for c, i in zip(df.cif, df.material_id)]
    graphs = [featurize(s, cfg) for s in structures]
    keys = [structure_key(s, cfg) for s in structures]
    ids = df.material_id.tolist()
    work = Path(tempfile.mkdtemp(prefix="screen-bench-"))
    try:
        # store: write in units, read back by streaming and by random access
        store = GraphStore.open(work / "store", cfg)
        t = time.perf_counter()
        for a in range(0, len(graphs), args.unit):
            store.write(keys[a:a + args.unit], ids[a:a + args.unit], graphs[a:a + args.unit])
        w_store = len(graphs) / (time.perf_counter() - t)
        store = GraphStore.open(work / "store", cfg)
        t = time.perf_counter()
        n_read = sum(1 for _ in store.iter_records())
        r_store = n_read / (time.perf_counter() - t)
        rng = np.random.default_rng(0)
        sample = [keys[i] for i in rng.choice(len(keys), 500, replace=False)]
        store = GraphStore.open(work / "store", cfg)
        t = time.perf_counter()
        for k in sample:
            store.get(k)
        r_random = len(sample) / (time.perf_counter() - t)
        b_store = dir_bytes(work / "store")
        files = sum(1 for p in (work / "store").rglob("*") if p.is_file())

        # torch.save of CGCNN's expanded features, one file per crystal as CGCNN caches them
        centers = cfg.gaussian_centers()
        tdir = work / "torch"
        tdir.mkdir()
        t = time.perf_counter()
        for i, g in zip(ids, graphs):
            torch.save(cgcnn_features(g, centers), tdir / f"{i}.pt")
        w_torch = len(graphs) / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in ids:
            torch.load(tdir / f"{i}.pt")
        r_torch = len(ids) / (time.perf_counter() - t)
        b_torch = dir_bytes(tdir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(graphs)
    print(f"crystals: {n}  atoms: {sum(g.n_atoms for g in graphs)}  edges: {sum(g.n_edges for g in graphs)}  (one core)")
    print(f"store:      write {w_store:8.0f} graphs/s   read (stream) {r_store:8.0f} graphs/s   "
          f"read (random) {r_random:6.0f} graphs/s   {b_store / n:8.0f} bytes/graph   {files} files")
    print(f"torch.save: write {w_torch:8.0f} graphs/s   read          {r_torch:8.0f} graphs/s   "
          f"{'':28s}{b_torch / n:8.0f} bytes/graph   {n} files")
    print(f"ratio: size {b_torch / b_store:.1f}x smaller, write {w_store / w_torch:.1f}x, "
          f"stream read {r_store / r_torch:.1f}x, random read {r_random / r_torch:.1f}x (store / torch.save)")


if __name__ == "__main__":
    main()
