"""The training loop: seeded split, Adam(W) + warm-up/cosine, EMA, early stopping, checkpoints.

Readable in one sitting on purpose. Data is a `GraphSet` (screening/graphset.py):
flat CSR arrays of graphs and a (n, n_tasks) target array with NaN for missing
labels, as read from the graph store (workflows/train/training.py) or built in memory.

State that a resume needs is written every epoch: last.pt (the evaluated
weights: the EMA when on), last.opt (everything a resume needs: optimizer,
schedule, learned loss weights, raw and evaluated weights, EMA step count and
the history; written first) and metrics.csv. The shuffle of epoch e
is drawn from a generator seeded by (seed, e), so a resumed run sees exactly
the batches the uninterrupted run would have.
"""
from __future__ import annotations

import copy
import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from screening.atomic import write_atomic
from screening.checkpoint import load_checkpoint, save_checkpoint, torch_bytes
from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings
from screening.graphset import GraphSet
from screening.metrics import mae, nonmetal_auc
from screening.model import GAP_TASK, MTCGCNN
from screening.predict import predict_set
from screening.train_config import SCHEDULES, TrainSettings  # noqa: F401  (TrainSettings's home; imported from here too)
from screening.weighting import make_weighting


def validation_score(true: np.ndarray, pred: np.ndarray, std: np.ndarray) -> float:
    """Mean over tasks of MAE / target std: one number that weighs tasks fairly (metal head aside)."""
    return float(np.mean([mae(true[:, k], pred[:, k]) / std[k] for k in range(true.shape[1])]))


def lr_factor(step: int, cfg: TrainSettings, steps_per_epoch: int) -> float:
    """Multiplier of cfg.lr at an optimizer step: linear warm-up, then the schedule."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return 0.01 + 0.99 * step / warm
    if cfg.schedule == "cosine":
        s = min(step - warm, total - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * s))
    if cfg.schedule == "step":  # CGCNN default: x0.1 once, here at 2/3 of the run
        return 0.1 if step >= int(total * 2 / 3) else 1.0
    if cfg.schedule == "none":
        return 1.0
    raise ScreenError(f"`schedule` {cfg.schedule}: choose {', '.join(SCHEDULES)}")  # TrainSettings.check refuses it first


class EMA:
    """Exponential moving average of the weights; batch-norm statistics are copied.

    The decay ramps up as (1 + t) / (10 + t) so the first steps do not keep the
    random initialization alive for thousands of steps.
    """

    def __init__(self, model: MTCGCNN, decay: float):
        self.model = copy.deepcopy(model)
        self.decay = decay
        self.steps = 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: MTCGCNN) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        # foreach: one kernel for all tensors on a GPU instead of one per tensor
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1 - d)
        torch._foreach_copy_(list(self.model.buffers()), list(model.buffers()))


@dataclass
class _Run:
    """A training run's moving parts: what every step updates and what a resume restores."""
    model: MTCGCNN  # the raw weights the optimizer moves
    weighting: torch.nn.Module  # the per-task loss weights (learned ones are parameters too)
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    ema: Optional[EMA]
    steps: int  # optimizer steps per epoch

    @property
    def evaluated(self) -> MTCGCNN:
        """The weights validated and saved: the moving average when on."""
        return self.ema.model if self.ema else self.model


def train(train_set: GraphSet, val_set: GraphSet, cfg: TrainSettings, out_dir,
          featurizer: FeaturizerSettings, resume: Optional[str] = None,
          on_epoch: Optional[Callable[[dict], None]] = None, meta: Optional[dict] = None) -> dict:
    """Train; write best.pt, last.pt, last.opt and metrics.csv to out_dir. Returns the best epoch's row."""
    cfg.check()
    if len(train_set) < 2 or len(val_set) < 1:
        raise ScreenError(f"training needs at least 2 training and 1 validation crystal, got "
                          f"{len(train_set)} and {len(val_set)} (more data, or another `split`)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    run = _start(train_set, cfg, featurizer, device)
    start_epoch, best, history = 0, {"score": float("inf")}, []
    if resume:
        start_epoch, best, history = _resume(resume, run, featurizer, device, cfg)
    std = run.model.target_std.cpu().numpy()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        loss = _train_epoch(run, train_set, cfg, epoch, device)
        if cfg.bn_recompute:
            recompute_batch_norm(run.evaluated, train_set, cfg.bn_recompute, cfg.batch_size, cfg.seed, device)
        row = {"epoch": epoch + 1, "train_loss": loss, "lr": run.opt.param_groups[0]["lr"],
               "seconds": time.perf_counter() - t0}
        row.update(_validate(run, val_set, std, device))
        history.append(row)
        improved = row["score"] < best["score"] or "epoch" not in best  # a NaN first epoch is still the best so far
        if improved:
            best = dict(row)
        state = {"epoch": epoch + 1, "best": best, "history": history, "train_config": cfg.to_dict(),
                 **(meta or {})}
        _save(run, out, featurizer, state, improved)
        _write_metrics(out / "metrics.csv", history)
        if on_epoch:
            on_epoch(row)
        if epoch + 1 - best.get("epoch", epoch + 1) >= cfg.patience:
            break
    return best


def _start(train_set: GraphSet, cfg: TrainSettings, featurizer: FeaturizerSettings, device) -> _Run:
    """A new model (seeded), its loss weighting, optimizer, schedule and moving average."""
    torch.manual_seed(cfg.seed)
    model = MTCGCNN(cfg.model_config(featurizer))
    model.set_normalizer(train_set.targets)
    model.to(device)
    n_out = len(model.outputs)
    weights = list(cfg.task_weights) if cfg.task_weights else None
    if weights and len(weights) == len(cfg.tasks) < n_out:
        weights.append(1.0)  # the metal head's weight unless given
    weighting = make_weighting(cfg.weighting, n_out, weights).to(device)
    # The learned s_p get no weight decay: shrinking them toward 0 would pull every weight toward 1.
    groups = [{"params": list(model.parameters())}]
    if list(weighting.parameters()):  # fixed weights have none; keeps old last.opt files loadable
        groups.append({"params": list(weighting.parameters()), "weight_decay": 0.0})
    Opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = Opt(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train_set) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg, steps))
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    return _Run(model, weighting, opt, sched, ema, steps)


def _train_epoch(run: _Run, train_set: GraphSet, cfg: TrainSettings, epoch: int, device) -> float:
    """One pass over the training set in the epoch's own seeded order; the mean training loss."""
    run.model.train()
    total, seen = torch.zeros((), dtype=torch.float64, device=device), 0  # summed on the device: no sync per step
    idx = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_set))
    for s in range(run.steps):
        chunk = idx[s * cfg.batch_size:(s + 1) * cfg.batch_size]
        if len(chunk) < 2:  # batch norm needs two crystals
            continue
        batch = train_set.batch(chunk).to(device)
        loss = run.weighting(*run.model.task_losses(batch, cfg.loss))
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.sched.step()
        if run.ema:
            run.ema.update(run.model)
        total += loss.detach().double() * len(chunk)
        seen += len(chunk)
    return total.item() / max(seen, 1)


def _validate(run: _Run, val_set: GraphSet, std: np.ndarray, device) -> dict:
    """The evaluated weights' validation MAEs (and AUC), their score, and the loss weights."""
    pred = predict_set(run.evaluated, val_set, device=device)
    row = validation_metrics(run.evaluated, val_set.targets, pred)
    row["score"] = validation_score(val_set.targets, pred, std)
    for task, w in zip(run.model.outputs, run.weighting.weights()):
        row[f"weight_{task}"] = w
    return row


def _save(run: _Run, out: Path, featurizer: FeaturizerSettings, state: dict, improved: bool) -> None:
    # last.opt first: it alone holds everything a resume needs, so a kill between the
    # writes below leaves a consistent state (metrics.csv is rewritten from the history).
    extra = {"optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
             "weighting": run.weighting.state_dict(), "evaluated": run.evaluated.state_dict(), "meta": state}
    if run.ema:
        extra.update(raw_model=run.model.state_dict(), ema_steps=run.ema.steps)
    _atomic_torch_save(extra, out / "last.opt")
    if improved:
        save_checkpoint(out / "best.pt", run.evaluated, featurizer, state)
    save_checkpoint(out / "last.pt", run.evaluated, featurizer, state)


@torch.no_grad()
def recompute_batch_norm(model: MTCGCNN, data: GraphSet, n: int, batch_size: int, seed: int, device) -> None:
    """Replace the batch-norm running statistics by exact averages over n training crystals.

    Running statistics follow the raw weights with momentum 0.1, so they lag and jitter,
    and they do not belong to the EMA weights at all: evaluated with them, the EMA model
    scored dEf MAE 0.23 eV/atom where the same weights with recomputed statistics scored
    0.09 (validation, epoch 11 of the default recipe). The crystals are a fixed seeded
    draw, so a resumed run computes the same statistics.
    """
    idx = np.random.default_rng([seed, 7]).permutation(len(data))[:n]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for s in range(0, len(idx), batch_size):
        chunk = idx[s:s + batch_size]
        if len(chunk) >= 2:
            model(data.batch(chunk).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def validation_metrics(model: MTCGCNN, targets: np.ndarray, pred: np.ndarray) -> dict:
    """MAE per task (and the metal head's ROC-AUC) of predictions against targets."""
    row = {f"val_mae_{t}": mae(targets[:, k], pred[:, k]) for k, t in enumerate(model.tasks)}
    if model.config.metal_head:
        gap = targets[:, model.tasks.index(GAP_TASK)]
        row["val_auc_metal"] = nonmetal_auc(gap, 1.0 - pred[:, len(model.tasks)])
    return row


def _atomic_torch_save(obj, path: Path) -> None:
    write_atomic(path, torch_bytes(obj))


# Settings a resumed run may change: how long it runs, where, and how it is validated.
_MAY_CHANGE_ON_RESUME = ("epochs", "patience", "device", "bn_recompute")


def _check_same_recipe(path, saved: Optional[dict], cfg: TrainSettings) -> None:
    """A resumed run must keep its recipe; a changed default must not silently alter it."""
    if not saved:
        return
    now = cfg.to_dict()
    # Settings added after the run started count as their paper values (how older runs trained).
    paper = TrainSettings.paper(tasks=cfg.tasks).to_dict()
    changed = [f"{k} {saved.get(k, paper[k])!r} -> {v!r}" for k, v in now.items()
               if k not in _MAY_CHANGE_ON_RESUME and saved.get(k, paper[k]) != v]
    if changed:
        raise ScreenError(f"`resume` {path}: the run was trained with other settings ({'; '.join(changed)}); "
                          f"pass the run's own settings (see its checkpoint's train_config)")


def _resume(path, run: _Run, featurizer, device, cfg):
    """Load the state of a run from its last.opt (and its checkpoint for the config checks)."""
    ckpt = load_checkpoint(path, expect_featurizer=featurizer)
    model, ema = run.model, run.ema
    if ckpt.model.outputs != model.outputs:
        raise ScreenError(f"`resume` {path}: checkpoint outputs {ckpt.model.outputs} differ from {model.outputs}")
    _check_same_recipe(path, ckpt.meta.get("train_config"), cfg)
    opt_file = Path(path).with_name("last.opt")
    if not opt_file.is_file():
        raise ScreenError(f"`resume` {path}: {opt_file.name} is missing beside it; without the optimizer "
                          f"and schedule state the run cannot continue where it stopped")
    try:
        extra = torch.load(opt_file, map_location=device, weights_only=True)
        # Files written before last.opt held the whole state: the weights and history come from last.pt.
        evaluated, meta = extra.get("evaluated", ckpt.model.state_dict()), extra.get("meta", ckpt.meta)
        model.load_state_dict(extra.get("raw_model", evaluated))
        if ema:
            ema.model.load_state_dict(evaluated)
            ema.steps = int(extra.get("ema_steps", 0))
        run.opt.load_state_dict(extra["optimizer"])
        if "weighting" in extra:
            run.weighting.load_state_dict(extra["weighting"])
        run.sched.load_state_dict(extra["scheduler"])
    except Exception as e:  # a damaged or foreign file: torch, zip and state-dict errors alike
        raise ScreenError(f"`resume` {path}: {opt_file} is not a usable training state ({type(e).__name__})") from None
    model.to(device)
    return int(meta.get("epoch", 0)), meta.get("best", {"score": float("inf")}), list(meta.get("history", []))


def _write_metrics(path: Path, history: List[dict]) -> None:
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=list(history[0].keys()))
    w.writeheader()
    w.writerows(history)
    write_atomic(path, text.getvalue().encode())
