"""A run's candidates in partitions that workers fetch, key and featurize themselves.

The client plans the partitions without touching a structure (a CSV: the rows the
formula column selects, in chunks; the Materials Project: its listing of the query's
entries, material_id and last_updated, in chunks; a source that cannot tell before
fetching: one worker fetches everything and the list is split on the workers), so
structures never pass through the client.

An MP partition's worker reads each entry's structure from the entry cache
(cache/entry_cache.py, keyed by material_id and last_updated, not by database
release) and fetches in full only the entries that are new or changed since.

The structure cache remembers the plan of a (query, source) and, per partition and
featurizer, each candidate's graph key and what the table needs of it (keyed
entries, cache/structure_cache.py). A warm run reads those: it neither fetches,
parses nor re-keys a structure.
"""
from __future__ import annotations

import functools
from typing import Callable, List, Optional, Tuple

from cache.cache_dir import CacheDir
from screening.sources import mp_sources
from screening.sources.base import Partition


def part_key(query_key: str, label: str) -> str:
    return f"{query_key} | {label}"


def plan(source, query, size: int, structures, description: str,
         on_fetch: Optional[Callable[[], None]] = None) -> Tuple[Optional[List[Partition]], bool]:
    """(partitions or None, whether the plan came from the cache); None: the source cannot split
    before fetching and the cache has no plan (fetch everything on one worker, then split_plan).
    `on_fetch` is called before the source is asked (MP: a listing request)."""
    cached = structures.get_plan(query.key(), description)
    if cached is not None:
        return [Partition.from_json(p) for p in cached], True
    if on_fetch:
        on_fetch()
    return source_partitions(source, query, size), False


def source_partitions(source, query, size: int) -> Optional[List[Partition]]:
    """source.partitions(query, size), its request leases (MP: the listing's) given back now,
    not when the cluster closes."""
    try:
        return source.partitions(query, size)
    finally:
        settle_budgets(source)


def split_plan(n: int, size: int) -> List[Partition]:
    """Partitions of a list of n fetched candidates (they are slices of it)."""
    return [Partition(f"[{i}:{min(i + size, n)}]") for i in range(0, n, size)]


def slice_of(part: Partition) -> slice:
    start, stop = part.label.strip("[]").split(":")
    return slice(int(start), int(stop))


def keep_plan(structures, query, description: str, parts: List[Partition]) -> None:
    structures.put_plan(query.key(), description, [p.to_json() for p in parts])


def settle_budgets(source) -> None:
    for mp_source in mp_sources(source):
        mp_source.budget.settle()


@functools.lru_cache(maxsize=8)
def cache_columns(outputs) -> tuple:
    """What the prediction cache holds per key: the model's outputs' means, then their stds."""
    return tuple(outputs) + tuple(f"{o}_std" for o in outputs)


def prediction_cache(cache_dir, model_hash: str, columns: tuple):
    """One prediction cache per worker process and model: it reads each part file once, not once a task."""
    return CacheDir(cache_dir).predictions(model_hash, list(columns))
