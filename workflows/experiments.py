"""The experiment task graph: one pool task, then one training task per unfinished run.

    pool (1 task)      read the data, draw the pool, featurize it once; Dask
                       ships the result to each worker that trains
    train (1/run)      screening.experiments.train_run in the run's own
                       directory; result.json is written last, so a run
                       with one is finished and is skipped on a re-run
    collect            on the client: every finished run's result, runs.csv

Each training task pins torch to `threads` threads, so with one thread per
worker a run gives the same numbers whichever worker picks it up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

from screening.experiment_report import results_table
from screening.experiments import ExperimentSpec, RunSpec, finished, load_pool, train_run
from workflows.cluster import ClusterSpec, connect


@dataclass
class ExperimentResult:
    results: List[dict]  # one per finished run, spec order
    trained: List[str] = field(default_factory=list)  # run dirs trained this time
    skipped: List[str] = field(default_factory=list)  # already finished
    failed: List[str] = field(default_factory=list)  # "dir: error"


def pool_task(spec: ExperimentSpec):
    dataset, skipped = load_pool(spec)
    return dataset, {"data": spec.data, "pool": spec.pool, "pool_seed": spec.pool_seed,
                     "n": len(dataset), "skipped": len(skipped)}


def train_task(pool_and_info, split, run: RunSpec, run_dir: str, threads: int, device: str):
    import torch

    torch.set_num_threads(threads)
    pool, info = pool_and_info
    return train_run(pool, split, run, run_dir, device=device, pool_info=info)


def unfinished(spec: ExperimentSpec, out_dir) -> List[RunSpec]:
    """The spec's runs without a result.json under out_dir, seed-major: if the work is stopped
    early, the runs finished cover whole seeds."""
    runs_dir = Path(out_dir) / "runs"
    return sorted((r for r in spec.runs if finished(runs_dir / r.dirname) is None), key=lambda r: r.seed)


def run_experiment(spec: ExperimentSpec, out_dir, cluster: ClusterSpec, device: str = "cpu",
                   on_done: Optional[Callable[[str, Optional[dict]], None]] = None,
                   on_connect: Optional[Callable[[str], None]] = None) -> ExperimentResult:
    """Train every run of the spec that has no result.json under out_dir; collect all results."""
    from distributed import as_completed

    out = Path(out_dir)
    runs_dir = out / "runs"
    todo = unfinished(spec, out)
    res = ExperimentResult(results=[], skipped=[r.dirname for r in spec.runs if r not in todo])
    if todo:
        out.mkdir(parents=True, exist_ok=True)
        with connect(cluster) as client:
            if on_connect:
                on_connect(client.dashboard_link or "")
            pool = client.submit(pool_task, spec, key=f"pool-{spec.name}", pure=False)
            resources = {"GPU": 1} if device.startswith("cuda") else None
            # Explicit priorities: Dask does not otherwise keep the submission order.
            futures = {client.submit(train_task, pool, spec.split, r, str(runs_dir / r.dirname),
                                     cluster.threads_per_worker, device, key=f"train-{r.dirname}",
                                     pure=False, resources=resources, priority=len(todo) - i): r
                       for i, r in enumerate(todo)}
            for fut in as_completed(futures):
                run = futures[fut]
                if fut.status == "finished":
                    res.trained.append(run.dirname)
                    if on_done:
                        on_done(run.dirname, fut.result())
                else:
                    res.failed.append(f"{run.dirname}: {fut.exception()}")
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
