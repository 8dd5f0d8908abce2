"""Processes that write to a graph store, for the concurrency and crash tests."""
import sys

import numpy as np

from cache.graph_store import GraphStore
from screening.featurize import FeaturizerConfig
from screening.graph import CrystalGraph


def synthetic_graph(i: int) -> CrystalGraph:
    """A small deterministic graph for crystal number i (no pymatgen: fast)."""
    rng = np.random.default_rng(i)
    n = int(rng.integers(2, 20))
    counts = np.full(n, 12)
    dst = rng.integers(0, n, size=12 * n).astype(np.int32)
    dist = np.sort(rng.uniform(1.5, 8.0, size=(n, 12)), axis=1).astype(np.float32).ravel()
    return CrystalGraph.from_csr(rng.integers(1, 95, size=n), counts, dst, dist)


def write_range(root: str, start: int, stop: int, unit_size: int) -> None:
    store = GraphStore.open(root, FeaturizerConfig())
    for a in range(start, stop, unit_size):
        idx = range(a, min(a + unit_size, stop))
        store.write([f"key{i:06d}" for i in idx], [f"id{i}" for i in idx], [synthetic_graph(i) for i in idx])


if __name__ == "__main__":
    write_range(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
