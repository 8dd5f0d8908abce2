"""Where and with what a run ran, for summary.json: batch job, nodes, package versions, the
path the model's edge work took on the workers (the C kernel or torch's ops, and why).

A result that will be compared with next month's re-run has to say which job made it, on
which machines, with which code; the model hash and the source's data version say the rest.
"""
from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from typing import Dict, Iterable, Optional

PACKAGES = ("screen", "torch", "numpy", "pandas", "pymatgen", "dask", "distributed", "dask-jobqueue", "zarr")


def batch_job() -> Optional[str]:
    """The batch job this process runs in (Slurm, or PBS), else None."""
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID")


def where() -> Dict[str, Optional[str]]:
    """This process's host and batch job (run on every worker)."""
    return {"host": socket.gethostname(), "job": batch_job()}


def versions() -> Dict[str, Optional[str]]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def kernel_paths(paths: Iterable[Optional[str]]) -> str:
    """One line for the paths the inference tasks took (None: a task that inferred nothing)."""
    ran = sorted({p for p in paths if p})
    return "; ".join(ran) if ran else "none: every prediction came from the cache"


def run_provenance(client, model_hash: str, source_description: str, kernels: Iterable[Optional[str]] = ()) -> dict:
    """kernels: each inference task's path (workflows/run/tasks.infer_task)."""
    workers = client.run(where).values()
    return {
        "batch_job": batch_job(),
        "batch_nodes": os.environ.get("SLURM_JOB_NODELIST"),
        "client_host": socket.gethostname(),
        "worker_nodes": sorted({w["host"] for w in workers}),
        "worker_jobs": sorted({w["job"] for w in workers if w["job"]}, key=lambda j: (len(j), j)),
        "versions": versions(),
        "model_hash": model_hash,
        "source_data_version": source_description,
        "kernel": kernel_paths(kernels),
    }


def version_text() -> str:
    """`screen --version`: the package's version and the bundled model's hash (its identity in
    summary.json and the prediction cache), read from the model's manifest without loading it."""
    from screening.errors import ScreenError
    from screening.model_info import default_model_path, manifest_hash

    try:
        version = metadata.version("screen")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    path = default_model_path()
    try:
        model = f"{manifest_hash(path)} ({path})"
    except ScreenError as e:
        model = f"none ({e})"
    return f"screen {version}\nmodel {model}"
