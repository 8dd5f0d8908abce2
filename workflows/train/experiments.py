"""The experiment task graph: one pool task, then one training task per unfinished run.

    pool (1 task)      read the data from the graph store (featurized into the
                       cache on first use, workflows/train/training.py), draw the
                       pool; Dask ships it to each worker that trains
    train (1/run)      `train_run` in the run's own directory; result.json
                       is written last, so a run with one is finished and
                       is skipped on a re-run
    collect            on the client: every finished run's result, runs.csv

Each training task pins torch to `threads` threads, so with one thread per
worker a run gives the same numbers whichever worker picks it up.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

from cache.atomic import write_atomic
from workflows.train.results import results_table
from workflows.train.experiment_spec import RESULT, TASKS, ExperimentSpec, ArmSettings, finished, run_indices
from workflows.cluster.connection import ClusterSettings, connect
from workflows.cluster.watch import as_finished, task_error


@dataclass
class ExperimentResult:
    results: List[dict]  # one per finished run, spec order
    trained: List[str] = field(default_factory=list)  # run dirs trained this time
    skipped: List[str] = field(default_factory=list)  # already finished
    failed: List[str] = field(default_factory=list)  # "dir: error"


def load_pool(spec: ExperimentSpec, cache_dir, featurizer=None):
    """The pool of crystals (all three targets) every run draws from, seeded by pool_seed; and skipped rows."""
    from screening.featurize import FeaturizerSettings
    from workflows.train.training import load_training_data

    sample = None if spec.pool is None else (spec.pool, spec.pool_seed)
    loaded = load_training_data(spec.data, list(TASKS.values()), featurizer or FeaturizerSettings(), cache_dir,
                                sample=sample)
    return loaded.graphs, loaded.skipped


def _resumable(out: Path, run: ArmSettings) -> Optional[str]:
    """An interrupted run of the same settings continues from its last.pt instead of restarting."""
    try:
        same = json.loads((out / "run.json").read_text())["key"] == run.key
    except (OSError, ValueError, KeyError):
        return None
    return str(out / "last.pt") if same and (out / "last.pt").exists() else None


def train_run(pool, split, run: ArmSettings, run_dir, featurizer=None, device: str = "cpu",
              pool_info: Optional[dict] = None) -> dict:
    """Train one run, evaluate its best checkpoint on the test split, write result.json last."""
    from screening.checkpoint import load_checkpoint
    from screening.evaluate import evaluate_predictions
    from screening.featurize import FeaturizerSettings
    from screening.predict import predict_set
    from screening.train import train

    featurizer = featurizer or FeaturizerSettings()
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = [list(TASKS.values()).index(t) for t in run.tasks]
    tr, va, te = run_indices(len(pool), split, run)
    parts = {}
    for name, idx in (("train", tr), ("val", va), ("test", te)):
        parts[name] = pool.subset(idx)
        parts[name].targets = parts[name].targets[:, cols]
    resume = _resumable(out, run)
    write_atomic(out / "run.json", json.dumps({"key": run.key, "run": asdict(run), "split": list(split),
                                               "n_train": len(tr), "n_val": len(va), "n_test": len(te),
                                               "pool": pool_info or {}}, indent=1).encode())
    t0 = time.time()
    best = train(parts["train"], parts["val"], run.train_settings(device), out, featurizer,
                 resume=resume, meta={"run_key": run.key})
    ckpt = load_checkpoint(out / "best.pt")
    pred = predict_set(ckpt.model, parts["test"], device=device)
    metrics = evaluate_predictions(list(run.tasks), parts["test"].targets, pred)
    weights = {k[len("weight_"):]: v for k, v in best.items() if k.startswith("weight_")}
    result = {"key": run.key, "run": asdict(run), "dir": out.name, "best_epoch": best["epoch"],
              "val_score": best["score"], "test": metrics, "weights_at_best": weights,
              "n_train": len(tr), "n_val": len(va), "n_test": len(te),
              "train_seconds": round(time.time() - t0, 1), "model_hash": ckpt.hash}
    write_atomic(out / RESULT, json.dumps(result, indent=1).encode())
    return result


def pool_task(spec: ExperimentSpec, cache_dir):
    pool, skipped = load_pool(spec, cache_dir)
    return pool, {"data": spec.data, "pool": spec.pool, "pool_seed": spec.pool_seed,
                  "n": len(pool), "skipped": len(skipped)}


def train_task(pool_and_info, split, run: ArmSettings, run_dir: str, threads: int, device: str):
    import torch

    from workflows.allocator import reuse_freed_memory

    torch.set_num_threads(threads)
    reuse_freed_memory()
    pool, info = pool_and_info
    return train_run(pool, split, run, run_dir, device=device, pool_info=info)


def unfinished(spec: ExperimentSpec, out_dir) -> List[ArmSettings]:
    """The spec's runs without a result.json under out_dir, seed-major: if the work is stopped
    early, the runs finished cover whole seeds."""
    runs_dir = Path(out_dir) / "runs"
    return sorted((r for r in spec.runs if finished(runs_dir / r.dirname) is None), key=lambda r: r.seed)


def run_experiment(spec: ExperimentSpec, out_dir, cluster: ClusterSettings, cache_dir, device: str = "cpu",
                   on_done: Optional[Callable[[str, Optional[dict]], None]] = None,
                   on_connect: Optional[Callable[[str], None]] = None) -> ExperimentResult:
    """Train every run of the spec that has no result.json under out_dir; collect all results."""
    out = Path(out_dir)
    runs_dir = out / "runs"
    todo = unfinished(spec, out)
    res = ExperimentResult(results=[], skipped=[r.dirname for r in spec.runs if r not in todo])
    if todo:
        out.mkdir(parents=True, exist_ok=True)
        with connect(cluster) as client:
            if on_connect:
                on_connect(client.dashboard_link or "")
            pool = client.submit(pool_task, spec, str(cache_dir), key=f"pool-{spec.name}", pure=False)
            resources = {"GPU": 1} if device.startswith("cuda") else None
            # Explicit priorities: Dask does not otherwise keep the submission order.
            futures = {client.submit(train_task, pool, spec.split, r, str(runs_dir / r.dirname),
                                     cluster.threads_per_worker, device, key=f"train-{r.dirname}",
                                     pure=False, resources=resources, priority=len(todo) - i): r
                       for i, r in enumerate(todo)}
            for fut in as_finished(client, list(futures)):
                run = futures[fut]
                if fut.status == "finished":
                    res.trained.append(run.dirname)
                    if on_done:
                        on_done(run.dirname, fut.result())
                else:
                    res.failed.append(f"{run.dirname}: {task_error(fut, out / 'error.log')}")
                    if on_done:
                        on_done(run.dirname, None)
    res.results = collect(spec, out)
    return res


def collect(spec: ExperimentSpec, out_dir) -> List[dict]:
    """Results of the spec's finished runs; also written flat to out_dir/runs.csv."""
    out = Path(out_dir)
    results = []
    for r in spec.runs:
        got = finished(out / "runs" / r.dirname)
        if got is not None:
            got["groups"] = [g for g, keys in spec.groups.items() if r.key in keys]
            results.append(got)
    if results:
        out.mkdir(parents=True, exist_ok=True)
        results_table(results).to_csv(out / "runs.csv", index=False)
    return results
