"""Train ensemble members on a lent GPU machine: torch and numpy there, no pymatgen, Zarr or Dask.

    here:   python experiments/default/train_gpu.py export .gpu/graphs.npz
    there:  PYTHONPATH=. python3 experiments/default/train_gpu.py train .gpu/graphs.npz 1 2 3 4 \
                --device cuda --seconds 470
            (--arm '{"atom_fea_len": 128, "epochs": 25}' instead of member numbers: a recipe run in arms/;
             --recipe '{"atom_fea_len": 128}' --into experiments/wide: members of another ensemble
             whose recipe is member-0's with these changes)

`export` writes the graph set of ../shared/data (read from the graph store, as
`screen train` reads it) to one compressed file. `train` runs each member in its
own process, at the same time, through the same loop `screen train` calls
(screening.train.train) with member-0's recipe (its checkpoint's train_config)
and only the seed and device changed, on the ensemble's split.json. Every member
stops at an epoch boundary before --seconds, so what comes back is the same
resumable state train.sh continues on any machine (`--resume` accepts a change of
device).

On the lent machine, bring the run folders back in the same call that trained them
(`tar czf - DIR | split -b 3M - $OUT/part.`: one file over the size limit does not come
back, and between calls the sync deletes files git does not ignore, e.g. metrics.csv),
and carry .gpu/ in every call that needs the graph file.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
DATA = "../shared/data/mp_dev.csv.gz"


def reference(root: Path):
    """member-0's checkpoint: the recipe and featurizer every member shares."""
    from screening.checkpoint import load_checkpoint

    return load_checkpoint(root / "member-0" / "last.pt")


def export(path: Path, root: Path) -> None:
    from workflows.train.training import load_training_data

    ref = reference(root)
    tasks = ref.meta["train_config"]["tasks"]
    graphs = load_training_data(DATA, tasks, ref.featurizer, "screen-cache").graphs
    path.parent.mkdir(parents=True, exist_ok=True)
    graphs.save(path, ref.featurizer.fingerprint(), tasks=tasks)
    print(f"wrote {path}: {len(graphs)} crystals, {path.stat().st_size / 2**20:.1f} MiB")


def load_graphs(path: Path, featurizer):
    from screening.graphset import GraphSet

    return GraphSet.load(path, featurizer.fingerprint())


def _arm_name(changes: dict) -> str:
    return "-".join(f"{k}{v}" for k, v in sorted(changes.items())) or "default"


class _OutOfTime(Exception):
    pass


def train_member(k: int, graphs_path: Path, root: Path, device: str, deadline: float, threads: int,
                 arm: str = "", recipe: str = "", into: Path | None = None) -> None:
    """Member k of the ensemble; with `arm` (JSON of TrainConfig settings), a recipe run in <root>/arms/;
    with `recipe` (same form), member k of the ensemble in `into` that trains with those changes."""
    import torch

    from screening.train import TrainConfig, train
    from screening.split import read_split, split_positions

    torch.set_num_threads(threads)
    ref = reference(root)
    changes = json.loads(arm or recipe or "{}")
    out = root / "arms" / _arm_name(changes) if arm else (into or root) / f"member-{k}"
    out.mkdir(parents=True, exist_ok=True)
    label = out.name
    for name in ("split.json", "domain.json"):  # one split, so one training domain, for every member
        if not (out / name).exists():
            shutil.copy(root / "member-0" / name, out / name)
    if (out / "split.json").read_bytes() != (root / "member-0" / "split.json").read_bytes():
        sys.exit(f"{out}/split.json differs from member-0's")
    cfg = TrainConfig(**{**ref.meta["train_config"], "seed": k, "device": device, **changes})
    graphs = load_graphs(graphs_path, ref.featurizer)
    split = read_split(out / "split.json")
    parts = {p: graphs.subset(split_positions(graphs, split[p], str(out / "split.json"))) for p in ("train", "val")}
    resume = out / "last.pt" if (out / "last.pt").exists() else None
    command = (f"experiments/default/train_gpu.py train (screen train's loop, member-0's recipe, seed {k}, "
               f"device {device}{', ' + (arm or recipe) if arm or recipe else ''})")
    meta = {"command": command, "data": DATA, **{f"n_{p}": len(split[p]) for p in ("train", "val", "test")}}
    last = [time.time()]

    def on_epoch(row):
        took = time.time() - last[0]
        last[0] = time.time()
        print(f"{label} epoch {row['epoch']}: {took:.1f} s, val dEf {row['val_mae_formation_energy_per_atom']:.4f}",
              flush=True)
        if time.time() + 1.3 * took > deadline:
            raise _OutOfTime

    try:
        train(parts["train"], parts["val"], cfg, out, ref.featurizer, resume=str(resume) if resume else None,
              on_epoch=on_epoch, meta=meta)
        print(f"{label}: finished", flush=True)
    except _OutOfTime:
        print(f"{label}: stopped before the deadline; resumable", flush=True)


def speed(graphs_path: Path, root: Path, device: str) -> None:
    """Inference crystals/s of one member on the whole validation part (after a warm-up)."""
    import torch

    from screening.checkpoint import load_checkpoint
    from screening.predict import predict_set
    from screening.split import read_split, split_positions

    ckpt = load_checkpoint(root / "member-0" / "best.pt")
    graphs = load_graphs(graphs_path, ckpt.featurizer)
    split = read_split(root / "member-0" / "split.json")
    val = graphs.subset(split_positions(graphs, split["val"], "split.json"))
    model = ckpt.model.to(device)
    predict_set(model, val, device=device)
    t0 = time.perf_counter()
    predict_set(model, val, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    took = time.perf_counter() - t0
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    print(f"inference on {name}: {len(val)} crystals in {took:.2f} s = {len(val) / took:.0f} crystals/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("verb", choices=["export", "train", "member", "speed"])
    ap.add_argument("graphs", type=Path)
    ap.add_argument("members", type=int, nargs="*")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seconds", type=float, default=3600.0, help="every member stops at an epoch boundary before this")
    ap.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--root", type=Path, default=ROOT, help="the ensemble's directory (member-0 holds the recipe)")
    ap.add_argument("--recipe", default="", help="members train member-0's recipe with these changes (JSON)")
    ap.add_argument("--into", type=Path, help="where those members' run folders go (default: --root)")
    ap.add_argument("--arm", action="append", default=[],
                    help='recipe run instead of members: JSON of TrainConfig changes, e.g. {"atom_fea_len": 128}; repeat')
    a = ap.parse_args()
    if a.verb == "export":
        export(a.graphs, a.root)
    elif a.verb == "member":
        train_member(a.members[0], a.graphs, a.root, a.device, a.deadline, a.threads, a.arm[0] if a.arm else "",
                     a.recipe, a.into)
    elif a.verb == "speed":
        speed(a.graphs, a.root, a.device)
    else:
        deadline = time.time() + a.seconds
        recipe = ["--recipe", a.recipe] + (["--into", str(a.into)] if a.into else []) if a.recipe else []
        runs = [(k, recipe) for k in a.members] + [(0, ["--arm", arm]) for arm in a.arm]
        procs = [subprocess.Popen([sys.executable, __file__, "member", str(a.graphs), str(k), "--device", a.device,
                                   "--deadline", str(deadline), "--threads", str(a.threads), "--root", str(a.root),
                                   *extra])
                 for k, extra in runs]
        codes = [p.wait() for p in procs]
        print(json.dumps({" ".join(map(str, [k, *extra])): c for (k, extra), c in zip(runs, codes)}))
        sys.exit(max(codes))


if __name__ == "__main__":
    main()
