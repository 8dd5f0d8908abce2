"""A whole cache directory, as `screen run --cache DIR` fills it and `screen cache` inspects it.

    DIR/graphs/featurizer-<fp>/   graph stores, one per featurizer config (graph_store.py)
    DIR/structures/*.json.gz      fetched candidate lists (structure_cache.py)
    DIR/mp_entries/*/*.json.gz    MP entries fetched in full, by material_id and last_updated (entry_cache.py)
    DIR/references/*.json.gz      MP thermo reference phases per database (reference_cache.py)
    DIR/hulls/<version>/          hull energies per chemical system and reference data (hull_cache.py)
    DIR/predictions/<model>/      predictions per model hash (prediction_cache.py)
    DIR/relaxed/<relaxer>/        relaxed structures by input structure (relax_cache.py)
    DIR/datasets/<digest>.npz     training tables: graph keys and targets of a data file (datasets.py)
    DIR/models/<stamp>.json.gz    what a run needs of a model, by its files' sizes and times (workflows/run/worker_model.py)
    DIR/stats.jsonl               hit/miss counts, one line per run (stats.py)
    DIR/CACHEDIR.TAG              the marker: this folder was made by screen (and backups may skip it)

`CacheDir` is the one object that knows this layout: workflows ask it for each
cache (`CacheDir(path).graphs(featurizer)`, `.predictions(...)`, ...) and `screen
cache` for its summary, checks and cleanup; no other module spells a folder name.
`claim()` makes the folder and its marker before anything is written there;
`clear()` deletes only a folder that carries the marker and nothing foreign.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

from cache import stats
from cache.atomic import TMP_PREFIX, write_atomic
from cache.datasets import TrainingTables
from cache.entry_cache import EntryCache
from cache.graph_store import GraphStore
from cache.hull_cache import verify_hulls
from cache.prediction_cache import PredictionCache, verify_predictions
from cache.reference_cache import ReferenceCache
from cache.structure_cache import StructureCache
from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings

MARKER = "CACHEDIR.TAG"
# The Cache Directory Tagging Specification's signature (https://bford.info/cachedir/): backup tools skip the folder.
_MARKER_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                "# This folder is a cache made by screen (graphs, structures, predictions).\n"
                "# `screen cache clear` removes it; nothing in it is irreplaceable.\n")
GRAPHS, STRUCTURES, REFERENCES, PREDICTIONS, DATASETS, RELAXED, STATS, HULLS, MP_ENTRIES, MODELS = (
    "graphs", "structures", "references", "predictions", "datasets", "relaxed", "stats.jsonl", "hulls", "mp_entries",
    "models")
PARTS = (GRAPHS, STRUCTURES, REFERENCES, PREDICTIONS, DATASETS, RELAXED, STATS, MARKER, HULLS, MP_ENTRIES, MODELS)


class CacheDir:
    """One cache directory: hands out its caches and inspects, verifies and cleans the whole.

    Holds only the path, so it pickles cheaply to Dask workers, which open their caches
    from it where they run.
    """

    def __init__(self, root):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"CacheDir({str(self.root)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, CacheDir) and other.root == self.root

    # ---- the caches ----

    def claim(self) -> "CacheDir":
        """Make the folder, with its marker when it is new (or empty). A folder that already holds
        something without the marker stays unmarked: screen cannot know it made that content."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / MARKER).exists() and not any(self.root.iterdir()):
            write_atomic(self.root / MARKER, _MARKER_TEXT.encode())
        return self

    def graphs(self, featurizer: FeaturizerSettings) -> GraphStore:
        return GraphStore.open(self.root / GRAPHS, featurizer)

    def structures(self) -> StructureCache:
        return StructureCache(self.root / STRUCTURES)

    def mp_entries(self) -> EntryCache:
        return EntryCache(self.root / MP_ENTRIES)

    def references(self) -> ReferenceCache:
        return ReferenceCache(self.root / REFERENCES)

    def hulls(self, version: str):
        from cache.hull_cache import HullCache

        return HullCache(self.root / HULLS, version)

    def predictions(self, model_hash: str, columns: Sequence[str]) -> PredictionCache:
        return PredictionCache(self.root / PREDICTIONS, model_hash, columns)

    def relaxed(self, relaxer_version: str):
        from cache.relax_cache import RelaxCache  # here: it imports pymatgen, which `screen cache` never needs

        return RelaxCache(self.root / RELAXED, relaxer_version)

    def model_info_path(self, stamp: str) -> Path:
        """Where the description of the model files with this stamp is kept (a damaged one is a miss)."""
        return self.root / MODELS / f"{stamp}.json.gz"

    def datasets(self) -> TrainingTables:
        return TrainingTables(self.root / DATASETS)

    def record_run(self, **counts) -> None:
        stats.record(self.root, **counts)

    # ---- the whole (`screen cache`) ----

    def checked(self) -> "CacheDir":
        if not self.root.is_dir():
            raise ScreenError(f"{self.root}: no cache directory here (set `cache_dir` or SCREEN_CACHE)")
        return self

    def graph_stores(self) -> Iterator[GraphStore]:
        """Every graph store in the cache (also a store directory given directly, or one level down)."""
        root = self.root
        for meta in sorted([*root.glob("store.json"), *root.glob("*/store.json"), *root.glob("*/*/store.json")]):
            yield GraphStore.at(meta.parent)

    def summary(self) -> dict:
        """Counts and sizes of every part, and hit rates over all recorded runs."""
        cache = self.checked().root
        entries = sorted((cache / STRUCTURES).glob("*.json.gz"))
        mp_entries = self.mp_entries().entries()
        pred_dirs = [p for p in (cache / PREDICTIONS).glob("*") if p.is_dir()]
        parts = [p for d in pred_dirs for p in d.glob("part-*.npz")]
        totals = stats.totals(cache)
        rates: Dict[str, dict] = {}
        for part in ("structure", "graph", "prediction"):
            hits, misses = totals.get(f"{part}_hits", 0), totals.get(f"{part}_misses", 0)
            rates[part] = {"hits": hits, "misses": misses, "rate": hits / (hits + misses) if hits + misses else None}
        return {
            "graph_stores": [dict(s.info(), name=str(s.root.relative_to(cache)) if s.root != cache else ".")
                             for s in self.graph_stores()],
            "structures": {"entries": len(entries), "bytes": sum(p.stat().st_size for p in entries)},
            "mp_entries": {"entries": len(mp_entries), "bytes": sum(p.stat().st_size for p in mp_entries)},
            "predictions": {"models": len(pred_dirs), "parts": len(parts),
                            "bytes": sum(p.stat().st_size for p in parts)},
            "runs": totals.get("runs", 0), "hit_rates": rates,
        }

    def verify(self, repair: bool = False) -> tuple:
        """(units checked, problems): every graph unit's checksums and counts, every cache entry readable
        (structures, references, predictions, hulls).

        With repair, everything listed as a problem is deleted (the next run re-makes it).
        """
        cache = self.checked().root
        problems: List[str] = []
        units = 0
        for store in self.graph_stores():
            units += len(store.manifests())
            problems += [f"{store.root}: {p}" for p in store.verify(repair)]
        if (cache / STRUCTURES).is_dir():
            problems += [f"{cache / STRUCTURES}: {p}" for p in self.structures().verify(repair)]
        if (cache / MP_ENTRIES).is_dir():
            problems += [f"{cache / MP_ENTRIES}: {p}" for p in self.mp_entries().verify(repair)]
        if (cache / REFERENCES).is_dir():
            problems += [f"{cache / REFERENCES}: {p}" for p in self.references().verify(repair)]
        if (cache / PREDICTIONS).is_dir():
            problems += [f"{cache / PREDICTIONS}: {p}" for p in verify_predictions(cache / PREDICTIONS, repair)]
        if (cache / HULLS).is_dir():
            problems += [f"{cache / HULLS}: {p}" for p in verify_hulls(cache / HULLS, repair)]
        return units, problems

    def stale(self, min_age_s: float = 0.0) -> List[Path]:
        """Leftovers of interrupted writers older than min_age_s: never served, safe to delete.

        Every temporary file of the caches starts with TMP_PREFIX (cache/atomic.py), wherever it is;
        graph stores add the units their writers never published.
        """
        cache = self.checked().root
        out = [p for s in self.graph_stores() for p in s.stale(min_age_s)]
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

    def clean_stale(self, min_age_s: float = 0.0) -> int:
        items = self.stale(min_age_s)
        for p in items:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        return len(items)

    def clear(self) -> None:
        """Delete the cache folder: only one that screen made (its marker) and that holds nothing else."""
        cache = self.checked().root
        foreign = sorted(p.name for p in cache.iterdir() if p.name not in PARTS and not p.name.startswith(TMP_PREFIX))
        if foreign:
            # A mistyped cache folder (say, a home directory) must not be wiped.
            raise ScreenError(f"{cache}: holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, "
                              f"which are not cache files; not removing it")
        if not (cache / MARKER).is_file():
            raise ScreenError(f"{cache}: has no {MARKER}, so screen did not make this folder; not removing it "
                              f"(delete it yourself if it is a cache)")
        shutil.rmtree(cache)
