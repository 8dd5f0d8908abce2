"""`screen cache`: what a cache directory holds, whether it is sound, and cleaning it up.

Thin on purpose: cache/cache_dir.py's CacheDir owns the layout and does the work;
this is the door the CLI goes through (cli.py imports workflows only).
"""
from __future__ import annotations

from typing import List, Tuple

import pandas as pd

from cache.cache_dir import CacheDir


def summary(cache) -> dict:
    return CacheDir(cache).summary()


def listing(cache, limit: int) -> Tuple[pd.DataFrame, int]:
    """(up to `limit` stored crystals: id, key, atoms, edges, store; how many there are in all)."""
    rows, total = [], 0
    for store in CacheDir(cache).checked().graph_stores():
        total += len(store)
        for e in store.entries():
            if len(rows) >= limit:
                break
            rows.append({"id": e["id"], "key": e["key"][:16], "atoms": e["atoms"], "edges": e["edges"],
                         "store": store.root.name})
    return pd.DataFrame(rows, columns=["id", "key", "atoms", "edges", "store"]), total


def verify(cache, repair: bool) -> Tuple[int, List[str], int]:
    """(units checked, problems (removed with repair), unpublished leftovers)."""
    units, problems = CacheDir(cache).verify(repair=repair)
    return units, problems, len(CacheDir(cache).stale())


def clear_stale(cache, min_age_s: float) -> int:
    return CacheDir(cache).checked().clean_stale(min_age_s)


def clear(cache) -> None:
    CacheDir(cache).clear()


def check(cache) -> None:
    CacheDir(cache).checked()
