"""Processes that write to a graph store, for the concurrency and crash tests."""
import os
import sys
import time
from pathlib import Path

import numpy as np

from cache.graph_store import GraphStore
from screening.featurize import FeaturizerSettings
from screening.graph import CrystalGraph


def synthetic_graph(i: int) -> CrystalGraph:
    """A small deterministic graph for crystal number i (numpy only, no pymatgen: fast)."""
    rng = np.random.default_rng(i)
    n = int(rng.integers(2, 20))
    counts = np.full(n, 12)
    dst = rng.integers(0, n, size=12 * n).astype(np.int32)
    dist = np.sort(rng.uniform(1.5, 8.0, size=(n, 12)), axis=1).astype(np.float32).ravel()
    return CrystalGraph.from_csr(rng.integers(1, 95, size=n), counts, dst, dist)


def write_range(parent: str, start: int, stop: int, unit_size: int, barrier=None) -> None:
    """Store crystals start..stop-1 under `parent` in units of unit_size (after `barrier`, if given)."""
    store = GraphStore.open(parent, FeaturizerSettings())
    if barrier is not None:
        barrier.wait(60)  # every writer starts writing at the same moment
    for a in range(start, stop, unit_size):
        idx = range(a, min(a + unit_size, stop))
        store.write([f"key{i:06d}" for i in idx], [f"id{i}" for i in idx], [synthetic_graph(i) for i in idx])


def pause_at(point: str, flag: str) -> None:
    """Hold this writer at `point` so a crash test can SIGKILL it there (the store has no hook for it).

    arrays: half the arrays of the unit written (the 4th of its array writes is about to start);
    publish: the unit's folder renamed into units/, its manifest not yet written.
    """
    import cache.graph_units as gs

    def hold():
        Path(flag).write_text(point)
        time.sleep(600)

    if point == "arrays":
        write_array, calls = gs._write_array, []

        def counting(*args, **kwargs):
            calls.append(1)
            if len(calls) == 4:
                hold()
            write_array(*args, **kwargs)

        gs._write_array = counting
    elif point == "publish":
        rename = os.rename

        def renaming(src, dst):
            rename(src, dst)
            if Path(dst).parent.name == "units":
                hold()

        os.rename = renaming


if __name__ == "__main__":
    if os.environ.get("STORE_PAUSE_AT"):
        pause_at(os.environ["STORE_PAUSE_AT"], os.environ["STORE_PAUSE_FLAG"])
    write_range(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
