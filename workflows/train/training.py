"""The one training / evaluation recipe, used by `screen train`, `screen evaluate` and `screen experiment`.

    data file --(first use: parse, key, featurize)--> graph store + training table (cache)
              --(later uses: read the store)------> GraphSet --split--> train / validate / test

The first use of a data file featurizes every row into the graph store under
the cache (shared with screening runs) and records which graph and targets
each row has (cache/datasets.py); every later use, by any command, reads the
store and never parses a CIF. A run directory holds split.json (the ids of
each part), metrics.csv, best.pt, last.pt and last.opt; evaluation reads
split.json back, so it scores exactly the crystals training never saw.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from cache.atomic import write_atomic
from cache.cache_dir import CacheDir
from cache.datasets import TrainingTable, table_digest
from cache.graph_store import DamagedUnit, GraphStore
from cache.keys import structure_key
from screening.dataset import read_table
from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings, featurize
from screening.graphset import GraphSet
from screening.split import make_split, read_split, split_file_of, split_positions
from screening.structures import read_structure, structure_from_cif_text

_CHUNK = 2048  # rows per store unit when featurizing a data file

Progress = Optional[Callable[[int, int], None]]  # (done, total)


@dataclass
class TrainingData:
    graphs: GraphSet  # targets and ids filled in
    skipped: List[str]
    featurized: int  # graphs made by this call (0 when everything came from the store)


def load_training_data(data, tasks: Sequence[str], featurizer: FeaturizerSettings, cache_dir,
                       limit: Optional[int] = None, progress: Progress = None,
                       sample: Optional[Tuple[int, int]] = None) -> TrainingData:
    """Every usable row of `data` as a GraphSet, featurizing into the store only what it lacks.

    limit: only the first rows; sample (n, seed): n rows drawn at random (in file order),
    as experiment pools do, so only those are featurized.
    """
    data = Path(data)
    if not data.exists():
        raise ScreenError(f"{data}: no such training data file or directory")
    if data.is_dir() and not (data / "id_prop.csv").is_file():
        raise ScreenError(f"{data}: directory has no id_prop.csv (CGCNN layout: id_prop.csv + <id>.cif)")
    cache = CacheDir(cache_dir).claim()
    tables = cache.datasets()
    store = cache.graphs(featurizer)
    digest = table_digest(data, tasks, [limit, sample], featurizer)
    table = tables.get(digest)
    featurized = 0
    if table is None or not all(store.contains(k) for k in table.keys):
        table, featurized = _featurize_table(data, tasks, featurizer, store, limit, sample, progress)
        tables.put(digest, table)
    if len(set(table.ids)) != len(table.ids):
        dup = next(x for x in table.ids if table.ids.count(x) > 1)
        raise ScreenError(f"{data}: id {dup} appears more than once; ids name the rows of a split, so they must be unique")
    try:
        graphs = store.graph_set(table.keys)
    except DamagedUnit:  # every damaged unit quarantined, its crystals re-made in one pass, then read again
        store.drop_damaged(table.keys)
        table, made = _featurize_table(data, tasks, featurizer, store, limit, sample, progress)
        featurized += made
        graphs = store.graph_set(table.keys)
    graphs.targets = table.targets
    graphs.ids = table.ids
    return TrainingData(graphs, table.skipped, featurized)


def _featurize_table(data, tasks, featurizer, store: GraphStore, limit, sample,
                     progress) -> Tuple[TrainingTable, int]:
    df, kind = read_table(data, tasks, limit)
    if sample is not None and sample[0] < len(df):
        rows = np.sort(np.random.default_rng(sample[1]).choice(len(df), sample[0], replace=False))
        df = df.iloc[rows].reset_index(drop=True)
    ids, keys, rows, skipped = [], [], [], []
    made = 0
    for start in range(0, len(df), _CHUNK):
        new_keys, new_ids, new_graphs = [], [], []
        for i, row in enumerate(df.iloc[start:start + _CHUNK].itertuples(index=False), start):
            name = str(row.material_id)
            try:
                s = structure_from_cif_text(row.cif, name) if kind == "csv" else read_structure(row.cif_path)
                key = structure_key(s, featurizer)
                if not store.contains(key) and key not in new_keys:
                    new_graphs.append(featurize(s, featurizer, name=name))
                    new_keys.append(key)
                    new_ids.append(name)
            except ScreenError as e:
                skipped.append(str(e))
                continue
            ids.append(name)
            keys.append(key)
            rows.append(i)
        if new_graphs:
            store.write(new_keys, new_ids, new_graphs)
            made += len(new_graphs)
        if progress:
            progress(min(start + _CHUNK, len(df)), len(df))
    targets = df[list(tasks)].to_numpy(np.float32)[rows]
    return TrainingTable(ids, keys, targets, list(tasks), skipped), made


# ---- the recipe ----

def write_domain(out, train_set: GraphSet, data=None) -> None:
    """domain.json beside the run's checkpoints: what its training crystals cover (screening/domain.py).

    Densities come from the data's `volume` column (A^3 per cell, as in mp_dev.csv.gz) and
    the atoms of each graph; data without volumes gives a domain without a density range.
    """
    from screening.domain import DOMAIN_FILE, Domain, densities

    atoms = [train_set.atomic_numbers_of(i) for i in range(len(train_set))]
    domain = Domain.from_atomic_numbers(atoms)
    volumes = _volumes(data, train_set.ids) if data is not None else None
    if volumes is not None:
        domain.density_range = Domain.density_range_of(densities(atoms, volumes))
    Path(out).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(out) / DOMAIN_FILE, domain.to_json().encode())


def _volumes(data, ids) -> Optional[np.ndarray]:
    import pandas as pd

    path = Path(data)
    if path.is_dir():
        return None
    try:
        df = pd.read_csv(path, usecols=lambda c: c in ("material_id", "volume"))
    except (OSError, ValueError):
        return None
    if "volume" not in df:
        return None
    by_id = dict(zip(df.material_id.astype(str), df.volume.astype(float)))
    return np.array([by_id.get(i, np.nan) for i in ids])


@dataclass
class TrainHooks:
    """What train_model reports as it goes: featurizing progress, the data and split before the
    first epoch (`on_ready(data, split)`), and each epoch's row."""
    progress: Progress = None
    on_ready: Optional[Callable[[TrainingData, dict], None]] = None
    on_epoch: Optional[Callable[[dict], None]] = None


def train_model(data, out, cfg, featurizer: FeaturizerSettings, cache_dir, limit: Optional[int] = None,
                resume: Optional[Path] = None, command: str = "", hooks: Optional[TrainHooks] = None) -> dict:
    """Load (or featurize) the data, split it (or reuse the run's split.json on --resume), train.

    Returns the best epoch's row.
    """
    from screening.train import train

    hooks = hooks or TrainHooks()
    cfg.check()
    out = Path(out)
    loaded = load_training_data(data, cfg.tasks, featurizer, cache_dir, limit, hooks.progress)
    split_file = out / "split.json"
    if resume and split_file.exists():
        split = read_split(split_file)
    else:
        if resume:
            raise ScreenError(f"--resume {resume}: {split_file} is missing, so the run's split is unknown")
        split = dict(make_split(loaded.graphs, cfg.split, cfg.split_seed), data=str(data),
                     split_seed=cfg.split_seed, fractions=list(cfg.split))
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(split_file, json.dumps(split).encode())
    parts = {k: loaded.graphs.subset(split_positions(loaded.graphs, split[k], str(split_file)))
             for k in ("train", "val")}
    write_domain(out, parts["train"], data)
    if hooks.on_ready:
        hooks.on_ready(loaded, split)
    meta = {"command": command, "data": str(data), "n_train": len(split["train"]),
            "n_val": len(split["val"]), "n_test": len(split["test"])}
    return train(parts["train"], parts["val"], cfg, out, featurizer,
                 resume=str(resume) if resume else None, on_epoch=hooks.on_epoch, meta=meta)


def write_ensemble(path, member_paths: Sequence, meta: Optional[dict] = None, calibrate=None,
                   cache_dir="screen-cache"):
    """Check the members (one split, one featurizer, same outputs, no duplicates), then write the manifest.

    calibrate: the training data file; each task's std scale is then fitted on the
    members' validation split (never the test split) and written into the manifest.
    """
    import os

    from screening.ensemble import Ensemble, load_model, manifest
    from screening.rank import check_unrelaxed_std

    check_unrelaxed_std((meta or {}).get("unrelaxed_std"))
    if len(member_paths) < 1:
        raise ScreenError("an ensemble needs at least one checkpoint")
    members = [load_model(p) for p in member_paths]
    hashes = [m.hash for m in members]
    if len(set(hashes)) < len(hashes):
        raise ScreenError("the same checkpoint is listed twice; members must differ (train them with other --seed)")
    Ensemble([m.members[0] for m in members], str(path)).check([str(p) for p in member_paths])
    path = Path(path)
    splits = [Path(p).parent / "split.json" for p in member_paths]
    present = [f.exists() for f in splits]
    if any(present) and not all(present):
        missing = splits[present.index(False)]
        raise ScreenError(f"{missing}: not found, while other members have a split.json; "
                          f"an ensemble is evaluated on the split its members share")
    if all(present):
        parts = [{k: read_split(f)[k] for k in ("train", "val", "test")} for f in splits]
        if any(p != parts[0] for p in parts[1:]):
            raise ScreenError("ensemble members were trained on different splits; train them with one --split-seed")
        meta = dict(meta or {}, split=os.path.relpath(splits[0].resolve(), path.resolve().parent))
    path.parent.mkdir(parents=True, exist_ok=True)
    from screening.domain import DOMAIN_FILE
    domain = Path(member_paths[0]).parent / DOMAIN_FILE  # one split, so one domain for every member
    if domain.exists() and domain.resolve() != (path.parent / DOMAIN_FILE).resolve():
        write_atomic(path.parent / DOMAIN_FILE, domain.read_bytes())
    write_atomic(path, manifest(path, member_paths, meta))
    if calibrate is not None:
        scale = _fit_std_scale(load_model(path), calibrate, cache_dir)
        write_atomic(path, manifest(path, member_paths, dict(meta or {}, **scale)))
    return load_model(path)


def _fit_std_scale(model, data, cache_dir) -> dict:
    from screening.ensemble import calibration_scale

    if len(model.members) < 2:
        raise ScreenError("--calibrate needs at least two members: one checkpoint has no spread to scale")
    if "split" not in model.meta:
        raise ScreenError("--calibrate needs the members' split.json (the scale is fitted on their validation split)")
    graphs = load_training_data(data, model.tasks, model.featurizer, cache_dir).graphs
    split_file = split_file_of(model)
    val = graphs.subset(split_positions(graphs, read_split(split_file)["val"], str(split_file)))
    mean, std = model.predict_set(val)
    scale = {t: round(calibration_scale(val.targets[:, k], mean[:, k], std[:, k]), 4)
             for k, t in enumerate(model.tasks)}
    return {"std_scale": scale, "std_scale_fitted_on": f"validation split of {data} ({len(val)} crystals)"}


def evaluate_model(model_path, data, cache_dir, split_name: str = "test", out: Optional[Path] = None,
                   limit: Optional[int] = None, device: str = "cpu") -> Tuple[dict, Path]:
    """Score a checkpoint or ensemble on a part of its split (or on every row: split_name "all").

    Returns (metrics, directory written): metrics.json and parity.png. For an ensemble,
    the metrics are of the member mean, plus each member's own MAEs and the calibration
    of the std (fraction of errors within 1 and 2 std).
    """
    from screening.ensemble import load_model
    from screening.evaluate import calibration, evaluate_predictions, parity_plots
    from screening.model import METAL_OUTPUT
    from screening.predict import predict_set, resolve_device

    device = str(resolve_device(device))
    if split_name not in ("train", "val", "test", "all"):
        raise ScreenError(f"--split {split_name}: choose test, val, train or all")
    model = load_model(model_path)
    split_file = split_file_of(model) if split_name != "all" else None
    loaded = load_training_data(data, model.tasks, model.featurizer, cache_dir, limit)
    graphs = loaded.graphs
    if split_file is not None:
        ids = read_split(split_file)[split_name]
        if limit is not None:  # --limit keeps the first rows: score the split's crystals among them
            kept = set(graphs.ids)
            ids = [x for x in ids if x in kept]
        graphs = graphs.subset(split_positions(graphs, ids, str(split_file)))
    if len(graphs) == 0:
        raise ScreenError(f"{data}: no crystals of the {split_name} split found")
    mean, std = model.predict_set(graphs, device=device)
    n = len(model.tasks)
    p_metal = mean[:, n] if METAL_OUTPUT in model.outputs else None
    metrics = evaluate_predictions(model.tasks, graphs.targets, mean[:, :n], p_metal=p_metal)
    if len(model.members) > 1:
        metrics.update(calibration(model.tasks, graphs.targets, mean[:, :n], std[:, :n]))
        for i, member in enumerate(model.members):
            own = predict_set(member.model, graphs, device=device)
            one = evaluate_predictions(model.tasks, graphs.targets, own[:, :n],
                                       p_metal=own[:, n] if p_metal is not None else None)
            metrics.update({f"member{i}_{k}": v for k, v in one.items() if k != "n"})
    metrics.update({"split": split_name, "model": str(model_path), "model_hash": model.hash,
                    "members": len(model.members), "data": str(data)})
    out = Path(out) if out else Path(model.path).parent
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2).encode())
    parity_plots(model.tasks, graphs.targets, mean[:, :n], out / "parity.png")
    return metrics, out
