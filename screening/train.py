"""The training loop: seeded split, Adam + LR schedule, early stopping, checkpoints.

Readable in one sitting on purpose. Data is a `GraphDataset`: graphs and a
(n, n_tasks) target array with NaN for missing labels. Anything that yields
graphs by index works (an in-memory list, or a store reader).
"""
from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from screening.batch import collate
from screening.checkpoint import load_checkpoint, save_checkpoint
from screening.errors import ScreenError
from screening.featurize import FeaturizerConfig
from screening.graph import CrystalGraph
from screening.metrics import mae
from screening.model import MTCGCNN, ModelConfig, per_task_mse
from screening.predict import predict_graphs
from screening.weighting import make_weighting


@dataclass
class GraphDataset:
    graphs: Sequence[CrystalGraph]
    targets: np.ndarray  # (n, n_tasks) float32, NaN = missing
    ids: Sequence[str] = ()

    def __len__(self):
        return len(self.graphs)

    def subset(self, idx) -> "GraphDataset":
        ids = [self.ids[i] for i in idx] if len(self.ids) else ()
        return GraphDataset([self.graphs[i] for i in idx], self.targets[idx], ids)


@dataclass
class TrainConfig:
    tasks: List[str]
    task_weights: Optional[List[float]] = None  # w_p of Eq. 6; default all 1
    weighting: str = "fixed"  # fixed (Eq. 6) | uncertainty (learned, see screening/weighting.py)
    epochs: int = 100
    batch_size: int = 256  # crystals per step (CGCNN default)
    lr: float = 0.01  # paper: Adam, 0.01
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | step | none
    patience: int = 30  # epochs without a better validation score before stopping
    seed: int = 0
    split: List[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])  # train/val/test
    atom_fea_len: int = 64
    n_conv: int = 3
    h_fea_len: int = 128
    n_h: int = 1
    device: str = "cpu"

    def to_dict(self):
        return asdict(self)


def split_indices(n: int, fractions: Sequence[float], seed: int):
    """Seeded random train/val/test split (paper: 60/20/20)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ScreenError(f"--split {list(fractions)}: need three fractions >= 0 summing to at most 1")
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:n_train + n_val + n_test]


def validation_score(true: np.ndarray, pred: np.ndarray, std: np.ndarray) -> float:
    """Mean over tasks of MAE / target std: one number that weighs tasks fairly."""
    return float(np.mean([mae(true[:, k], pred[:, k]) / std[k] for k in range(true.shape[1])]))


def _make_scheduler(opt, cfg: TrainConfig, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    if cfg.schedule == "step":  # CGCNN default: x0.1 once, here at 2/3 of the run
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, int(total * 2 / 3)), gamma=0.1)
    if cfg.schedule == "none":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    raise ScreenError(f"--schedule {cfg.schedule}: choose cosine, step or none")


def train(train_set: GraphDataset, val_set: GraphDataset, cfg: TrainConfig, out_dir,
          featurizer: FeaturizerConfig, resume: Optional[str] = None,
          on_epoch: Optional[Callable[[dict], None]] = None, meta: Optional[dict] = None) -> dict:
    """Train; write best.pt, last.pt and metrics.csv to out_dir. Returns the best epoch's row."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    weighting = make_weighting(cfg.weighting, len(cfg.tasks), cfg.task_weights)

    model = MTCGCNN(ModelConfig(cfg.tasks, cfg.atom_fea_len, cfg.n_conv, cfg.h_fea_len, cfg.n_h,
                                featurizer.cutoff, featurizer.gaussian_step))
    model.set_normalizer(train_set.targets)
    model.to(device)
    weighting.to(device)
    # The learned s_p get no weight decay: shrinking them toward 0 would pull every weight toward 1.
    groups = [{"params": list(model.parameters())}]
    if list(weighting.parameters()):  # fixed weights have none; keeps old last.opt files loadable
        groups.append({"params": list(weighting.parameters()), "weight_decay": 0.0})
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train_set) / cfg.batch_size)
    sched = _make_scheduler(opt, cfg, steps)
    start_epoch, best, history = 0, {"score": float("inf")}, []
    if resume:
        start_epoch, best, history = _resume(resume, model, weighting, opt, sched, featurizer, device)

    rng = np.random.default_rng(cfg.seed)
    for _ in range(start_epoch):  # keep the shuffle sequence identical after a resume
        rng.permutation(len(train_set))
    std = model.target_std.cpu().numpy()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        total, seen = 0.0, 0
        idx = rng.permutation(len(train_set))
        for s in range(steps):
            chunk = idx[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if len(chunk) < 2:  # batch norm needs two crystals
                continue
            batch = collate([train_set.graphs[i] for i in chunk], train_set.targets[chunk]).to(device)
            loss = weighting(*per_task_mse(model(batch), model.normalize(batch.targets)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(chunk)
            seen += len(chunk)
        pred = predict_graphs(model, val_set.graphs, device=device)
        row = {"epoch": epoch + 1, "train_loss": total / max(seen, 1),
               "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        for k, task in enumerate(cfg.tasks):
            row[f"val_mae_{task}"] = mae(val_set.targets[:, k], pred[:, k])
        row["score"] = validation_score(val_set.targets, pred, std)
        for task, w in zip(cfg.tasks, weighting.weights()):
            row[f"weight_{task}"] = w
        history.append(row)
        improved = row["score"] < best["score"]
        if improved:
            best = dict(row)
        state = {"epoch": epoch + 1, "best": best, "history": history, "train_config": cfg.to_dict(),
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), **(meta or {})}
        if improved:
            save_checkpoint(out / "best.pt", model, featurizer, _public(state))
        save_checkpoint(out / "last.pt", model, featurizer, _public(state))
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "weighting": weighting.state_dict()}, out / "last.opt")
        _write_metrics(out / "metrics.csv", history)
        if on_epoch:
            on_epoch(row)
        if epoch + 1 - best["epoch"] >= cfg.patience:
            break
    return best


def _public(state: dict) -> dict:
    """Checkpoint meta without optimizer state (that lives in last.opt)."""
    return {k: v for k, v in state.items() if k not in ("optimizer", "scheduler")}


def _resume(path, model, weighting, opt, sched, featurizer, device):
    ckpt = load_checkpoint(path, expect_featurizer=featurizer)
    if ckpt.model.tasks != model.tasks:
        raise ScreenError(f"--resume {path}: checkpoint tasks {ckpt.model.tasks} differ from {model.tasks}")
    model.load_state_dict(ckpt.model.state_dict())
    model.to(device)
    opt_file = Path(path).with_name("last.opt")
    if opt_file.exists():
        extra = torch.load(opt_file, map_location=device, weights_only=True)
        opt.load_state_dict(extra["optimizer"])
        if "weighting" in extra:
            weighting.load_state_dict(extra["weighting"])
        sched.load_state_dict(extra["scheduler"])
    meta = ckpt.meta
    return int(meta.get("epoch", 0)), meta.get("best", {"score": float("inf")}), list(meta.get("history", []))


def _write_metrics(path: Path, history: List[dict]) -> None:
    keys = list(history[0].keys())
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    tmp.replace(path)
