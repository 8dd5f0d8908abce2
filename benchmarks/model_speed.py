"""Inference and training crystals/s of MT-CGCNN, side by side with a CGCNN-style baseline.

Same 1,000 random crystals of ../shared/data (graphs from the graph store under --cache),
same sizes (64 atom features, 3 convolutions, 128-wide heads, 3 regression heads), same
batches of 128 crystals, in one process, with 1 and 2 threads. Each figure is the best of
--reps alternating repetitions, so both sides see the same machine load.

  baseline : CGCNN's layout, written here: every atom padded to 12 neighbours, the
             Gaussian expansion precomputed per crystal (as CGCNN's data loader does),
             the (N, 12, 2A+B) concatenation multiplied by one weight matrix, batch norm
             over all N x 12 rows
  screen   : screening.model.MTCGCNN as `screen run` and `screen train` use it (CSR edges,
             the factorized convolution, expansion in the model). Inference is predict_set,
             as `screen run` calls it: the fused kernel of screening/kernels.c where it
             compiles, in its own CPU batches (predict._atom_budget; the baseline's speed
             hardly depends on its batch size); on 2 threads two batches at once, one
             thread each (predict._predict), where the baseline splits each op between them.
             Training uses the same batches of 128 as the baseline (batch size is part of
             the recipe). "screen @128" is inference in the baseline's batches of 128, for reference.

    python benchmarks/model_speed.py [--n 1000] [--reps 3] [--cache screen-cache]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mp_dev.csv.gz"
TASKS = ["formation_energy_per_atom", "band_gap", "efermi"]
M = 12  # neighbours per atom, CGCNN's max_num_nbr


class BaselineConv(nn.Module):
    def __init__(self, a: int, b: int):
        super().__init__()
        self.fc_full = nn.Linear(2 * a + b, 2 * a)
        self.bn1 = nn.BatchNorm1d(2 * a)
        self.bn2 = nn.BatchNorm1d(a)

    def forward(self, atom, nbr_fea, nbr_idx):
        n, m = nbr_idx.shape
        total = torch.cat([atom.unsqueeze(1).expand(n, m, atom.shape[1]), atom[nbr_idx], nbr_fea], dim=2)
        h = self.bn1(self.fc_full(total).view(-1, 2 * atom.shape[1])).view(n, m, -1)
        gate, core = h.chunk(2, dim=2)
        summed = self.bn2((torch.sigmoid(gate) * F.softplus(core)).sum(dim=1))
        return F.softplus(atom + summed)


class Baseline(nn.Module):
    def __init__(self, orig: int = 92, a: int = 64, b: int = 41, n_conv: int = 3, h: int = 128, n_out: int = 3):
        super().__init__()
        self.embedding = nn.Linear(orig, a)
        self.convs = nn.ModuleList(BaselineConv(a, b) for _ in range(n_conv))
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(a, h), nn.Softplus(), nn.Linear(h, 1)) for _ in range(n_out))

    def forward(self, atom_fea, nbr_fea, nbr_idx, crystal_idx):
        v = self.embedding(atom_fea)
        for conv in self.convs:
            v = conv(v, nbr_fea, nbr_idx)
        pooled = torch.stack([v[idx].mean(0) for idx in crystal_idx])  # CGCNN's pooling: a loop over crystals
        g = F.softplus(pooled)
        return torch.cat([head(g) for head in self.heads], dim=1)


def baseline_inputs(graph, table, centers, step=0.2, cutoff=8.0):
    """One crystal as CGCNN's loader hands it over: padded neighbours, expansion precomputed."""
    n = graph.n_atoms
    idx = np.zeros((n, M), dtype=np.int64)
    dist = np.full((n, M), cutoff + 1.0, dtype=np.float32)
    counts = graph.neighbor_counts()
    start = 0
    for i, c in enumerate(counts):
        k = min(int(c), M)
        idx[i, :k] = graph.dst[start:start + k]
        dist[i, :k] = graph.distances[start:start + k]
        start += int(c)
    nbr_fea = np.exp(-((dist[..., None] - centers) ** 2) / step**2).astype(np.float32)
    return table[graph.atomic_numbers], nbr_fea, idx


def baseline_batch(items):
    atom, nbr, idx, crystals, offset = [], [], [], [], 0
    for a, f, i in items:
        atom.append(a)
        nbr.append(f)
        idx.append(i + offset)
        crystals.append(torch.arange(offset, offset + len(a)))
        offset += len(a)
    return (torch.from_numpy(np.concatenate(atom)), torch.from_numpy(np.concatenate(nbr)),
            torch.from_numpy(np.concatenate(idx)), crystals)


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    from screening.elements import atom_feature_table
    from screening.featurize import FeaturizerSettings
    from screening.model import MTCGCNN, ModelSettings
    from screening.predict import predict_set
    from workflows.train.training import load_training_data

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--cache", default=str(ROOT / "screen-cache"))
    args = ap.parse_args()

    loaded = load_training_data(DATA, TASKS, FeaturizerSettings(), args.cache)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(loaded.graphs), size=args.n, replace=False))
    data = loaded.graphs.subset(pick)
    targets = torch.from_numpy(np.nan_to_num(data.targets.astype(np.float32)))
    table = atom_feature_table()
    centers = np.arange(0, 8.0 + 0.2, 0.2)[:41]
    base_items = [baseline_inputs(data.graph(i), table, centers) for i in range(len(data))]
    chunks = [list(range(i, min(i + args.batch, len(data)))) for i in range(0, len(data), args.batch)]
    base_batches = [baseline_batch([base_items[i] for i in c]) for c in chunks]
    from screening import kernels
    print(f"{len(data)} crystals ({int(data.n_atoms.sum())} atoms), batches of {args.batch}; "
          f"kernel: {kernels.backend()}")

    ours = MTCGCNN(ModelSettings(tasks=TASKS, metal_head=False))
    base = Baseline()

    def infer_ours():
        predict_set(ours, data)

    def infer_ours_128():
        ours.eval()
        with torch.no_grad():
            for c in chunks:
                ours.predict(data.batch(c))

    def infer_base():
        base.eval()
        with torch.no_grad():
            for b in base_batches:
                base(*b)

    opt_ours = torch.optim.Adam(ours.parameters(), 1e-3)
    opt_base = torch.optim.Adam(base.parameters(), 1e-3)

    def train_ours():
        ours.train()
        for c in chunks:
            batch = data.batch(c)
            loss = F.l1_loss(ours(batch), ours.normalize(batch.targets.nan_to_num()))
            opt_ours.zero_grad()
            loss.backward()
            opt_ours.step()

    def train_base():
        base.train()
        for c, b in zip(chunks, base_batches):
            loss = F.l1_loss(base(*b), targets[c])
            opt_base.zero_grad()
            loss.backward()
            opt_base.step()

    for threads in (1, 2):
        torch.set_num_threads(threads)
        infer_ours(), infer_base()  # warm-up
        t = {"infer base": [], "infer ours": [], "infer ours 128": [], "train base": [], "train ours": []}
        for _ in range(args.reps):  # alternate, so both see the same load
            t["infer base"].append(seconds(infer_base))
            t["infer ours"].append(seconds(infer_ours))
            t["infer ours 128"].append(seconds(infer_ours_128))
            t["train base"].append(seconds(train_base))
            t["train ours"].append(seconds(train_ours))
        b = {k: len(data) / min(v) for k, v in t.items()}
        print(f"{threads} thread(s): inference  baseline {b['infer base']:7.0f}/s  screen {b['infer ours']:7.0f}/s  "
              f"ratio {b['infer ours'] / b['infer base']:.2f}x  (screen @128 {b['infer ours 128']:.0f}/s "
              f"{b['infer ours 128'] / b['infer base']:.2f}x)   |   training  baseline {b['train base']:6.0f}/s  "
              f"screen {b['train ours']:6.0f}/s  ratio {b['train ours'] / b['train base']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
