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
import time
from typing import Callable, List, Optional, Tuple

from cache.cache_dir import CacheDir
from cache.graph_store import DamagedUnit, GraphStore
from cache.keys import structure_key
from screening.domain import density
from screening.errors import ScreenError
from screening.featurize import FeaturizerConfig, featurize
from screening.sources import mp_sources
from screening.sources.base import Partition
from workflows.allocator import reuse_freed_memory

# A keyed row: (position in its partition, source, id, formula, known values, graph key,
# atoms without neighbours, density g/cm3, element set "Fe-Li-O").
ROW_FIELDS = ("i", "source", "id", "formula", "known", "key", "isolated", "density", "system")


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


def fetch_partition(source, query, part: Partition, cache_dir) -> Tuple[list, dict]:
    """(a partition's candidates, {"mp_fetched", "mp_cached"}): entries of a database listing
    (MP) through the entry cache, counting those fetched in full and those it served."""
    if not part.entries:
        return source.fetch_partition(query, part), {}
    entries = CacheDir(cache_dir).mp_entries()
    try:
        candidates = source.fetch_partition(query, part, entries)
    finally:
        settle_budgets(source)
    return candidates, {"mp_fetched": len(part.entries) - entries.served, "mp_cached": entries.served}


FETCH_COUNTS = ("mp_fetched", "mp_cached")


def total_fetch_counts(counts) -> dict:
    """fetch_partition's counts summed over partitions (each a dict, maybe without them)."""
    return {k: sum(c.get(k, 0) for c in counts) for k in FETCH_COUNTS}


# ---- tasks (run on workers; module-level so they pickle by reference) ----

def partition_task(source, query, part: Partition, description: str, cache_dir, config: FeaturizerConfig,
                   fetched=None):
    """A partition's keyed rows: from the structure cache, else fetched (or `fetched`, its slice of a
    whole fetch), keyed and featurized, then remembered."""
    t0 = time.perf_counter()
    structures = CacheDir(cache_dir).structures()
    key = part_key(query.key(), part.label)
    hit = structures.get_keyed(key, description, config.fingerprint())
    store = CacheDir(cache_dir).graphs(config)
    # Its graphs must still be there and sound (a damaged unit is quarantined here), else the
    # partition is made again: inference may need them.
    if hit is not None and all(_stored_isolated(store, row[5]) is not None for row in hit["rows"]):
        return {"rows": hit["rows"], "errors": hit["errors"], "featurized": 0, "parsed": 0, "cached": True,
                "seconds": time.perf_counter() - t0}
    counts = {}
    if fetched is None:
        fetched, counts = fetch_partition(source, query, part, cache_dir)
    out = featurize_task(fetched, cache_dir, config)
    structures.put_keyed(key, description, config.fingerprint(), {"rows": out["rows"], "errors": out["errors"]})
    return dict(out, cached=False, **counts, seconds=time.perf_counter() - t0)


def featurize_task(candidates, cache_dir, config: FeaturizerConfig):
    """Key every candidate; featurize and store the ones the store lacks; a keyed row for each
    candidate that could be featurized (ROW_FIELDS), one line per one that could not, and the
    task's seconds (the run's profile, summary.json)."""
    from screening.formula import element_set

    t0 = time.perf_counter()
    reuse_freed_memory()
    store = CacheDir(cache_dir).graphs(config)
    rows, errors, new, queued = [], [], [], {}
    parsed = sum(c.structure_parsed() is False for c in candidates)  # CIF text still to parse
    for i, c in enumerate(candidates):
        try:
            s = c.structure
            key = structure_key(s, config)
            # atoms without neighbours, for the domain flags (screening/domain.py)
            n_isolated = _stored_isolated(store, key) if key not in queued else None
            if n_isolated is None:
                graph = queued.get(key) or featurize(s, config, name=f"{c.source} {c.id}")
                if key not in queued:
                    new.append((key, c.id, graph))
                    queued[key] = graph
                n_isolated = int((graph.neighbor_counts() == 0).sum())
            rows.append([i, c.source, c.id, c.formula, c.known, key, n_isolated, density(s),
                         "-".join(sorted(element_set(c.formula)))])
        except ScreenError as e:
            errors.append(str(e))
    if new:
        store.write([k for k, _, _ in new], [i for _, i, _ in new], [g for _, _, g in new])
    return {"rows": rows, "errors": errors, "featurized": len(new), "parsed": parsed,
            "seconds": time.perf_counter() - t0}


def _stored_isolated(store: GraphStore, key: str):
    """A stored crystal's atoms without neighbours (its manifest says; its graph is not decoded),
    or None if absent; a damaged unit is quarantined, so its crystals are re-made."""
    if not store.contains(key):
        return None
    try:
        return store.isolated_atoms(key)
    except DamagedUnit as e:
        store.quarantine(e.unit)
        return None


@functools.lru_cache(maxsize=8)
def cache_columns(outputs) -> tuple:
    """What the prediction cache holds per key: the model's outputs' means, then their stds."""
    return tuple(outputs) + tuple(f"{o}_std" for o in outputs)


def prediction_cache(cache_dir, model_hash: str, columns: tuple):
    """One prediction cache per worker process and model: it reads each part file once, not once a task."""
    return CacheDir(cache_dir).predictions(model_hash, list(columns))
