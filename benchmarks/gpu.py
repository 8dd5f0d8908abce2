"""GPU inference of the shipped ensemble, measured in one short run (issue 26).

    here:   python benchmarks/gpu.py export .gpu/graphs.npz          (every crystal of ../shared/data, from the graph store)
    there:  PYTHONPATH=. python3 benchmarks/gpu.py bench .gpu/graphs.npz [--atoms 50000 100000 200000] [--run]

`bench` prints, for the shipped ensemble on the GPU:
  - crystals/s of inference over the whole set, for each batch size in atoms (after a warm-up pass),
    in float32 and with TF32 matrix products;
  - peak GPU memory of each batch size;
  - the largest prediction difference from the CPU (torch's ops, the same crystals, every output);
and with --run (where pymatgen, Dask and Zarr import: carry them as wheels, see the device notes), the
whole `screen run --query all --device cuda`, cold then warm, with summary.json's stage_seconds.

Only torch and numpy are needed for the inference part, so it runs on a bare GPU machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "mp_dev.csv.gz"


def export(path: Path, data: Path = DATA) -> None:
    from screening.ensemble import load_model
    from screening.model_info import default_model_path
    from workflows.train.training import load_training_data

    model = load_model(default_model_path())
    graphs = load_training_data(str(data), list(model.tasks), model.featurizer, "screen-cache").graphs
    path.parent.mkdir(parents=True, exist_ok=True)
    graphs.save(path, model.featurizer.fingerprint())
    print(f"wrote {path}: {len(graphs)} crystals, {path.stat().st_size / 2**20:.1f} MiB")


def _ensemble_pass(members, graphs, atoms: int, device: str):
    import torch

    from screening.predict import predict_set_many

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    outs = predict_set_many(members, graphs, max_atoms=atoms, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0, np.stack(outs)


def bench(path: Path, atom_sizes, run: bool, device: str = "cuda", limit: int = 0) -> None:
    import torch

    from screening.ensemble import load_model
    from screening.graphset import GraphSet
    from screening.model_info import default_model_path

    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench: no CUDA GPU visible (--device cpu runs the same steps on the CPU, as a check)")
    gpu_mode = device == "cuda"
    ens = load_model(default_model_path())
    members = [m.model for m in ens.members]
    graphs = GraphSet.load(path, ens.featurizer.fingerprint())
    if limit:
        graphs = graphs.subset(np.arange(min(limit, len(graphs))))
    n = len(graphs)
    print(f"{torch.cuda.get_device_name() if gpu_mode else 'cpu check'}: {n} crystals, {int(graphs.n_atoms.sum())} atoms, "
          f"{len(members)} members, torch {torch.__version__}", flush=True)

    torch.set_num_threads(os.cpu_count() or 1)
    cpu_s, cpu = _ensemble_pass([m.cpu() for m in members], graphs, 20_000, "cpu")
    print(f"cpu (torch ops, {torch.get_num_threads()} threads): {n / cpu_s:,.0f} crystals/s", flush=True)

    results = {}
    for tf32 in (False, True) if gpu_mode else (False,):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        for atoms in atom_sizes:
            _ensemble_pass(members, graphs, atoms, device)  # warm-up: kernels, allocator
            if gpu_mode:
                torch.cuda.reset_peak_memory_stats()
            took, gpu = _ensemble_pass(members, graphs, atoms, device)
            diff = float(np.abs(gpu - cpu).max())
            peak = torch.cuda.max_memory_allocated() / 2**30 if gpu_mode else 0.0
            label = f"{'tf32' if tf32 else 'fp32'} {atoms:>7,} atoms"
            results[label] = {"crystals_per_s": n / took, "seconds": took, "peak_gib": peak, "max_abs_diff_vs_cpu": diff}
            print(f"{label}: {n / took:10,.0f} crystals/s  ({took:.2f} s)  peak {peak:5.2f} GiB  "
                  f"max |gpu - cpu| {diff:.2e}", flush=True)
    print(json.dumps(results))
    if run:
        whole_run()


def whole_run() -> None:
    """`screen run --query all --device cuda`, cold then warm (benchmarks/run.py measures each)."""
    try:
        import dask, pymatgen, zarr  # noqa: F401
    except ImportError as e:
        print(f"--run skipped: {e} (carry the run's packages as wheels)")
        return
    work = Path(tempfile.mkdtemp(prefix="screen-gpu-run-"))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--query", "all", "--work", str(work),
           "--source", f"local:{DATA}", "--runs", "cold", "warm", "--device", "cuda"]
    subprocess.run(cmd, check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("verb", choices=["export", "bench"])
    ap.add_argument("graphs", type=Path)
    ap.add_argument("--atoms", type=int, nargs="+", default=[50_000, 100_000, 200_000, 400_000])
    ap.add_argument("--run", action="store_true", help="also the whole screen run, cold and warm")
    ap.add_argument("--device", default="cuda", help="cpu: the same steps on the CPU, a check of the script")
    ap.add_argument("--data", type=Path, default=DATA, help="export: the crystals (a CSV like mp_dev.csv.gz)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N crystals (a quick check)")
    a = ap.parse_args()
    if a.verb == "export":
        export(a.graphs, a.data)
    else:
        bench(a.graphs, a.atoms, a.run, a.device, a.limit)


if __name__ == "__main__":
    main()
