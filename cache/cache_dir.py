"""A whole cache directory, as `screen run --cache DIR` fills it and `screen cache` inspects it.

    DIR/graphs/featurizer-<fp>/   graph stores, one per featurizer config (graph_store.py)
    DIR/structures/*.json.gz      fetched candidate lists (structure_cache.py)
    DIR/references/*.json.gz      MP thermo reference phases per database (reference_cache.py)
    DIR/predictions/<model>/      predictions per model hash (prediction_cache.py)
    DIR/relaxed/<relaxer>/        relaxed structures by input structure (relax_cache.py)
    DIR/datasets/<digest>.npz     training tables: graph keys and targets of a data file (datasets.py)
    DIR/stats.jsonl               hit/miss counts, one line per run (stats.py)
    DIR/CACHEDIR.TAG              the marker: this folder was made by screen (and backups may skip it)

`claim()` makes the folder and its marker before anything is written there;
`clear()` deletes only a folder that carries the marker and nothing foreign.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Dict, Iterator, List

from cache import stats
from cache.atomic import TMP_PREFIX, write_atomic
from cache.graph_store import GraphStore
from cache.prediction_cache import verify_predictions
from cache.reference_cache import ReferenceCache
from cache.structure_cache import StructureCache
from screening.errors import ScreenError

MARKER = "CACHEDIR.TAG"
# The Cache Directory Tagging Specification's signature (https://bford.info/cachedir/): backup tools skip the folder.
_MARKER_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                "# This folder is a cache made by screen (graphs, structures, predictions).\n"
                "# `screen cache clear` removes it; nothing in it is irreplaceable.\n")
PARTS = ("graphs", "structures", "references", "predictions", "datasets", "relaxed", "stats.jsonl", MARKER)


def claim(cache) -> Path:
    """The cache folder, created with its marker when it is new (or empty). A folder that already
    holds something without the marker stays unmarked: screen cannot know it made that content."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / MARKER).exists() and not any(cache.iterdir()):
        write_atomic(cache / MARKER, _MARKER_TEXT.encode())
    return cache


def _foreign(cache: Path) -> List[str]:
    return sorted(p.name for p in cache.iterdir() if p.name not in PARTS and not p.name.startswith(TMP_PREFIX))


def check_cache_dir(cache) -> Path:
    cache = Path(cache)
    if not cache.is_dir():
        raise ScreenError(f"{cache}: no cache directory here (set --cache or SCREEN_CACHE)")
    return cache


def graph_stores(cache) -> Iterator[GraphStore]:
    """Every graph store in the cache (also a store directory given directly, or one level down)."""
    cache = Path(cache)
    for meta in sorted([*cache.glob("store.json"), *cache.glob("*/store.json"), *cache.glob("*/*/store.json")]):
        yield GraphStore.at(meta.parent)


def summary(cache) -> dict:
    """Counts and sizes of every part, and hit rates over all recorded runs."""
    cache = check_cache_dir(cache)
    entries = sorted((cache / "structures").glob("*.json.gz"))
    pred_dirs = [p for p in (cache / "predictions").glob("*") if p.is_dir()]
    parts = [p for d in pred_dirs for p in d.glob("part-*.npz")]
    totals = stats.totals(cache)
    rates: Dict[str, dict] = {}
    for part in ("structure", "graph", "prediction"):
        hits, misses = totals.get(f"{part}_hits", 0), totals.get(f"{part}_misses", 0)
        rates[part] = {"hits": hits, "misses": misses, "rate": hits / (hits + misses) if hits + misses else None}
    return {
        "graph_stores": [dict(s.info(), name=str(s.root.relative_to(cache)) if s.root != cache else ".")
                         for s in graph_stores(cache)],
        "structures": {"entries": len(entries), "bytes": sum(p.stat().st_size for p in entries)},
        "predictions": {"models": len(pred_dirs), "parts": len(parts),
                        "bytes": sum(p.stat().st_size for p in parts)},
        "runs": totals.get("runs", 0), "hit_rates": rates,
    }


def verify(cache, repair: bool = False) -> tuple:
    """(units checked, problems): every graph unit's checksums and counts, every cache entry readable.

    With repair, everything listed as a problem is deleted (the next run re-makes it).
    """
    cache = check_cache_dir(cache)
    problems: List[str] = []
    units = 0
    for store in graph_stores(cache):
        units += len(store.manifests())
        problems += [f"{store.root}: {p}" for p in store.verify(repair)]
    if (cache / "structures").is_dir():
        problems += [f"{cache / 'structures'}: {p}" for p in StructureCache(cache / "structures").verify(repair)]
    if (cache / "references").is_dir():
        problems += [f"{cache / 'references'}: {p}" for p in ReferenceCache(cache / "references").verify(repair)]
    if (cache / "predictions").is_dir():
        problems += [f"{cache / 'predictions'}: {p}" for p in verify_predictions(cache / "predictions", repair)]
    return units, problems


def stale(cache, min_age_s: float = 0.0) -> List[Path]:
    """Leftovers of interrupted writers older than min_age_s: never served, safe to delete.

    Every temporary file of the caches starts with TMP_PREFIX (cache/atomic.py), wherever it is;
    graph stores add the units their writers never published.
    """
    cache = check_cache_dir(cache)
    out = [p for s in graph_stores(cache) for p in s.stale(min_age_s)]
    inside = tuple(out)
    now = time.time()
    for tmp in cache.rglob(f"{TMP_PREFIX}*"):
        if any(tmp.is_relative_to(d) for d in inside):
            continue
        try:
            if now - tmp.stat().st_mtime >= min_age_s:
                out.append(tmp)
        except FileNotFoundError:
            continue
    return out


def clean_stale(cache, min_age_s: float = 0.0) -> int:
    items = stale(cache, min_age_s)
    for p in items:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return len(items)


def clear(cache) -> None:
    """Delete the cache folder: only one that screen made (its marker) and that holds nothing else."""
    cache = check_cache_dir(cache)
    foreign = _foreign(cache)
    if foreign:
        # A mistyped --cache (say, a home directory) must not be wiped.
        raise ScreenError(f"{cache}: holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, "
                          f"which are not cache files; not removing it")
    if not (cache / MARKER).is_file():
        raise ScreenError(f"{cache}: has no {MARKER}, so screen did not make this folder; not removing it "
                          f"(delete it yourself if it is a cache)")
    shutil.rmtree(cache)
