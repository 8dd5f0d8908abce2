"""Seconds per full-data training epoch (train + validation), 1 and 2 threads, with a baseline.

    python benchmarks/train.py [--data ../shared/data/mp_dev.csv.gz] [--cache screen-cache] [--fraction 1.0]

Data: the 80/10/10 split (split seed 0) of every crystal in --data, read from
the graph store (featurized into --cache on first use, not timed). One epoch =
one pass over the training part in batches of 128 (AdamW step, EMA update,
L1 + metal cross-entropy, as `screen train` does) and one prediction pass over
the validation part. --fraction < 1 times that share of the steps and scales up.

Baseline, in the same process: the same model and step with the code before
this benchmark existed: batches collated from per-crystal graph objects and
the convolution's gathers written as fancy indexing (v[src]), whose backward
on CPU is an accumulating index_put_ rather than an index_add_.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from screening.batch import collate  # noqa: E402
from screening.featurize import FeaturizerSettings  # noqa: E402
from screening.model import ConvLayer, MTCGCNN  # noqa: E402
from screening.predict import predict_set  # noqa: E402
from screening.train import EMA, TrainSettings  # noqa: E402
from screening.split import make_split, split_positions  # noqa: E402
from workflows.train.training import load_training_data  # noqa: E402

TASKS = ["formation_energy_per_atom", "band_gap", "efermi"]


def fancy_index_forward(self, v, u, src, dst, k=None):  # the convolution as it was written before
    h = self.w_self(v)[src] + self.w_nbr(v)[dst] + self.w_edge(u)
    return self._aggregate(v, self.bn_edge(h), src)


def epoch_seconds(train_set, val_set, graphs_list, fraction: float, baseline: bool) -> float:
    cfg = TrainSettings(tasks=TASKS)
    torch.manual_seed(0)
    model = MTCGCNN(cfg.model_config(FeaturizerSettings()))
    model.set_normalizer(train_set.targets)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_decay)
    steps = math.ceil(len(train_set) / cfg.batch_size)
    n_steps = max(1, int(steps * fraction))
    idx = np.random.default_rng(0).permutation(len(train_set))
    original = ConvLayer.forward
    if baseline:
        ConvLayer.forward = fancy_index_forward
    try:
        t0 = time.perf_counter()
        model.train()
        for s in range(n_steps):
            chunk = idx[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if baseline:
                batch = collate([graphs_list[i] for i in chunk], train_set.targets[chunk])
            else:
                batch = train_set.batch(chunk)
            loss = model.task_losses(batch, cfg.loss)[0].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update(model)
        train_s = (time.perf_counter() - t0) * steps / n_steps
        t0 = time.perf_counter()
        n_val = max(2, int(len(val_set) * fraction))
        predict_set(ema.model, val_set.subset(range(n_val)))
        val_s = (time.perf_counter() - t0) * len(val_set) / n_val
    finally:
        ConvLayer.forward = original
    return train_s + val_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/mp_dev.csv.gz"))
    ap.add_argument("--cache", default="screen-cache")
    ap.add_argument("--fraction", type=float, default=1.0, help="share of an epoch to time (then scaled)")
    args = ap.parse_args()

    data = load_training_data(args.data, TASKS, FeaturizerSettings(), args.cache).graphs
    split = make_split(data, [0.8, 0.1, 0.1], 0)
    train_set = data.subset(split_positions(data, split["train"], "split"))
    val_set = data.subset(split_positions(data, split["val"], "split"))
    graphs_list = [train_set.graph(i) for i in range(len(train_set))]  # the baseline's per-crystal objects
    n = len(train_set) + len(val_set)
    print(f"{len(data)} crystals: {len(train_set)} train + {len(val_set)} validation per epoch "
          f"(timed share {args.fraction:g}); torch {torch.__version__}, CPU")
    print(f"{'threads':>7}  {'code':<9} {'s/epoch':>8} {'crystals/s':>11}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        row = {}
        for name, baseline in (("baseline", True), ("screen", False)):
            row[name] = epoch_seconds(train_set, val_set, graphs_list, args.fraction, baseline)
            print(f"{threads:>7}  {name:<9} {row[name]:8.1f} {n / row[name]:11.0f}", flush=True)
        print(f"{threads:>7}  speed-up  {row['baseline'] / row['screen']:8.2f}x")


if __name__ == "__main__":
    main()
