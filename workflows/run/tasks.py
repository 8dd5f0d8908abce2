"""The run's worker tasks: fetch, relax, key and featurize, infer. Module level, so they pickle by
reference; each takes and returns the records of records.py."""
from __future__ import annotations

import time
from typing import List, Optional, Tuple

import numpy as np

from cache.cache_dir import CacheDir
from cache.graph_store import DamagedUnit, GraphStore
from cache.keys import structure_key
from screening.domain import density
from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings, featurize
from screening.sources.base import Partition
from workflows.allocator import reuse_freed_memory
from workflows.run import worker_model
from workflows.run.plan import part_key, prediction_cache, settle_budgets
from workflows.run.records import FetchCounts, Fetched, Keyed, Row

RELAX_CHUNK = 10  # candidates per relax task: a few seconds each on a CPU, so progress moves


def fetch_counts(source) -> FetchCounts:
    """What the source's last fetch rejected (the substitution source's prototypes), by reason."""
    rejected = source.rejection_counts()
    return FetchCounts(rejected_valence=rejected["valence"], rejected_distance=dict(rejected["distance"]),
                       rejected_improbable=rejected["improbable"])


def fetch_task(source, query) -> Fetched:
    """`source` was opened on the client, so its MP key and endpoint are the user's, not the worker's env.
    `query` is the parsed Query: parsed once, on the client, and shipped to the tasks as it is."""
    try:
        candidates = source.fetch(query)
        return Fetched(candidates, fetch_counts(source))
    finally:  # the request budget's leases go back before the task ends, not after the cluster closed
        settle_budgets(source)


def fetch_partition_task(source, query, part: Partition, cache_dir) -> Fetched:
    """A partition's candidates: entries of a database listing (MP) through the entry cache,
    counting those fetched in full and those it served."""
    if not part.entries:
        return Fetched(source.fetch_partition(query, part))
    entries = CacheDir(cache_dir).mp_entries()
    try:
        candidates = source.fetch_partition(query, part, entries)
    finally:
        settle_budgets(source)
    return Fetched(candidates, FetchCounts(len(part.entries) - entries.served, entries.served))


def fetched_size(fetched: Fetched) -> Tuple[int, FetchCounts]:
    return fetched.size()


def partition_task(source, query, part: Partition, description: str, cache_dir, config: FeaturizerSettings,
                   fetched: Optional[Fetched] = None) -> Keyed:
    """A partition's keyed rows: from the structure cache, else fetched (or `fetched`, its slice of a
    whole fetch), keyed and featurized, then remembered."""
    t0 = time.perf_counter()
    structures = CacheDir(cache_dir).structures()
    key = part_key(query.key(), part.label)
    hit = structures.get_keyed(key, description, config.fingerprint())
    store = CacheDir(cache_dir).graphs(config)
    # Its graphs must still be there and sound (a damaged unit is quarantined here), else the
    # partition is made again: inference may need them.
    if hit is not None:
        keyed = Keyed.from_json(hit)
        if all(_stored_isolated(store, k) is not None for k in keyed.keys):
            keyed.cached, keyed.seconds = True, time.perf_counter() - t0
            return keyed
    if fetched is None:
        fetched = fetch_partition_task(source, query, part, cache_dir)
    out = featurize_task(fetched, cache_dir, config)
    structures.put_keyed(key, description, config.fingerprint(), out.to_json())
    out.counts, out.seconds = fetched.counts, time.perf_counter() - t0
    return out


def featurize_task(fetched: Fetched, cache_dir, config: FeaturizerSettings) -> Keyed:
    """Key every candidate; featurize and store the ones the store lacks; a Row for each candidate
    that could be featurized, one line per one that could not, and the task's seconds (the run's
    profile, summary.json)."""
    from screening.formula import element_set

    t0 = time.perf_counter()
    reuse_freed_memory()
    store = CacheDir(cache_dir).graphs(config)
    out = Keyed(parsed=sum(c.structure_parsed() is False for c in fetched.candidates))  # CIF text still to parse
    new, queued = [], {}
    for i, c in enumerate(fetched.candidates):
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
            out.rows.append(Row(i, c.source, c.id, c.formula, c.known, key, n_isolated, density(s),
                                "-".join(sorted(element_set(c.formula)))))
        except ScreenError as e:
            out.errors.append(str(e))
    if new:
        store.write([k for k, _, _ in new], [i for _, i, _ in new], [g for _, _, g in new])
    out.featurized, out.seconds = len(new), time.perf_counter() - t0
    return out


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


def relax_task(fetched: Fetched, rows, cache_dir, relaxer_name, device, settings: Optional[dict] = None) -> dict:
    """Relaxed copies of a fetch's candidates[rows[0]:rows[1]] (through the relax cache) and, per
    candidate, what happened. `settings`: Relaxer's fmax, max_steps, max_atoms where not its defaults."""
    from pymatgen.core import Structure

    from cache.relax_cache import relax_key
    from screening.predict import resolve_device
    from screening.relax import Relaxer
    from screening.sources.base import Candidate
    from screening.structures import check_distances

    relaxer = Relaxer(relaxer_name, device=str(resolve_device(device)), **(settings or {}))
    cache = CacheDir(cache_dir).relaxed(relaxer.version)
    out, infos = [], []
    for c in fetched.candidates[rows[0]:rows[1]]:
        try:
            check_distances(c.structure, f"{c.source} {c.id}")  # not worth relaxing; featurize_task refuses it
            key = relax_key(c.structure)
            hit = cache.get(key)
            cached = hit is not None
            if hit is None:
                r = relaxer.relax(c.structure)
                hit = (r.structure.as_dict(), r.info())
                cache.put(key, *hit)
            structure = Structure.from_dict(hit[0])
            out.append(Candidate(c.source, c.id, c.formula, structure, known=c.known))
            infos.append(dict(hit[1], relax_cached=cached))
        except ScreenError as e:  # not relaxed: predicted as it came, and it says so
            out.append(c)
            infos.append({"relax_error": str(e)})
    return {"candidates": out, "relax": infos}


def joined_candidates(relaxed: List[dict]) -> Fetched:
    return Fetched([c for r in relaxed for c in r["candidates"]])


def infer_task(keyed: Keyed, cache_dir, model_path, device, featurizer: FeaturizerSettings, max_atoms, model_hash,
               columns) -> dict:
    """Predictions for a partition's keys; only keys missing from the prediction cache run the model,
    so a warm run never loads it."""
    t0 = time.perf_counter()
    keys = keyed.keys
    cache = prediction_cache(cache_dir, model_hash, tuple(columns))
    known = cache.get_many(keys)
    todo = sorted({k for k in keys if k not in known})
    kernel = None
    if todo:
        model = worker_model.get_model(model_path, device, expected_hash=model_hash)  # the key's weights or none
        store = CacheDir(cache_dir).graphs(featurizer)
        graphs = [store.get(k) for k in todo]
        pred = np.concatenate(model.predict_graphs(graphs, max_atoms=max_atoms), axis=1)
        cache.put_many(todo, pred)
        known.update(zip(todo, pred))
        kernel = worker_model.inference_path(device)
    return {"predictions": {k: np.asarray(known[k], dtype=np.float32) for k in keys}, "inferred": len(todo),
            "seconds": time.perf_counter() - t0, "kernel": kernel}
