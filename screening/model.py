"""MT-CGCNN (Sanyal et al. 2018): shared crystal-graph convolutions, one head per task.

    embedding   v_i = W_e x_i                       x_i: 92-long atom features
    conv (Eq 2) z_ij = v_i (+) v_j (+) u_ij          u_ij: Gaussian-expanded distance
                h = BN(z_ij W + b) = [h_f, h_s]
                v_i <- softplus(v_i + BN(sum_j sigmoid(h_f) * softplus(h_s)))
    pooling     v_G = mean_i v_i                     (Eq 3)
    heads       y_p = f_p(v_G)                       (Eq 5), one MLP per task
    loss        L = 1/|P| sum_p w_p L_p             (Eqs 6-7), NaN targets masked

Beyond the paper (ModelSettings.metal_head): a classification head beside the
regression heads gives P(metal) (Eg < 0.025 eV) by binary cross-entropy, so
the metal / non-metal class is a probability rather than a thresholded Eg.
The per-task loss may be MSE (the paper), L1 or Huber (`task_losses`).

The linear map of the concatenation splits exactly:
    z_ij W = v_i W_i + v_j W_j + u_ij W_u
so the atom parts are computed once per atom (N rows) and gathered per edge
(E ~ 12 N rows) instead of multiplying a (E, 2A+B) matrix. `ConvLayer`
does this (tests/reference.py keeps the textbook form it is tested against).

Targets are learned in normalized units: each task's mean and std (from the
training set) are buffers of the model, so a checkpoint carries them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from screening import kernels
from screening.batch import Batch
from screening.elements import atom_feature_table
from screening.properties import BAND_GAP, METAL_GAP_EV

GAP_TASK = BAND_GAP  # the column the metal label is derived from
METAL_OUTPUT = "p_metal"
LOSSES = ("mse", "l1", "huber")


@dataclass
class ModelSettings:
    tasks: List[str]
    atom_fea_len: int = 64  # length of the learned atom vector v_i
    n_conv: int = 3
    h_fea_len: int = 128  # hidden width of each task head
    n_h: int = 1  # hidden layers per task head
    cutoff: float = 8.0  # Gaussian expansion 0..cutoff (from the featurizer)
    gaussian_step: float = 0.2
    metal_head: bool = False  # extra output: logit of P(metal), trained on Eg < METAL_GAP_EV

    def to_dict(self) -> dict:
        return asdict(self)


class GaussianExpansion(nn.Module):
    """u_k(d) = exp(-(d - mu_k)^2 / step^2), mu_k = 0, step, ..., cutoff."""

    def __init__(self, cutoff: float, step: float):
        super().__init__()
        n = int(round(cutoff / step)) + 1
        self.register_buffer("centers", torch.linspace(0.0, cutoff, n), persistent=False)
        self.step = step

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        # Most (edge, center) pairs lie far apart: exponents down to -1600 whose float32
        # results are subnormal or 0, which CPU exp computes far slower than normal ones.
        # Clamped at -80 (exp = 2e-35, zero for every later sum) every result is normal.
        return torch.exp((-((d[:, None] - self.centers) ** 2) / self.step**2).clamp_(min=-80.0))

    @property
    def size(self) -> int:
        return int(self.centers.numel())

    def band_starts(self, d: torch.Tensor) -> torch.Tensor:
        """(E,) for each distance the first of the kernels.BAND centers nearest it. Beyond them
        (5.5 steps away or more) its expansion is below e^-30 of its peak: ~0 in float32 sums."""
        spacing = float(self.centers[1] - self.centers[0]) if self.size > 1 else 1.0
        first = torch.round(d / spacing).to(torch.int64) - kernels.BAND // 2
        return first.clamp_(0, max(self.size - kernels.BAND, 0))


class ConvLayer(nn.Module):
    """Edge-gated graph convolution (Eq. 2) with CGCNN's batch norms."""

    def __init__(self, atom_len: int, edge_len: int):
        super().__init__()
        self.atom_len = atom_len
        # W split by which part of z it multiplies: [v_i | v_j | u_ij].
        self.w_self = nn.Linear(atom_len, 2 * atom_len, bias=True)
        self.w_nbr = nn.Linear(atom_len, 2 * atom_len, bias=False)
        self.w_edge = nn.Linear(edge_len, 2 * atom_len, bias=False)
        self.bn_edge = nn.BatchNorm1d(2 * atom_len)
        self.bn_sum = nn.BatchNorm1d(atom_len)

    def linear_maps(self):
        """(W_i, b, W_j, W_u) of h = v_i W_i + v_j W_j + u_ij W_u + b, bn_edge included in eval mode.

        In eval mode bn_edge is the fixed affine map h * s + t, so it folds into the
        maps: W * s and b * s + t. That saves a pass over the (E, 2A) edge rows.
        In training it must see the batch's statistics, so the maps are returned as
        they are and forward applies it.
        """
        w_i, b, w_j, w_u = self.w_self.weight, self.w_self.bias, self.w_nbr.weight, self.w_edge.weight
        if self.training:
            return w_i, b, w_j, w_u
        bn = self.bn_edge
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        t = bn.bias - bn.running_mean * s
        return w_i * s[:, None], b * s + t, w_j * s[:, None], w_u * s[:, None]

    def forward(self, v, u, src, dst, k=None, band=None):
        """k: every atom's number of edges if all atoms have the same (see neighbors_per_atom), else None.
        band: GaussianExpansion.band_starts of the distances, when u is that expansion (inference only).

        The edge messages' path is chosen once per process for CPU tensors (kernels.ops: the C
        kernel where it builds, else torch's ops) and is torch's ops on any other device. What
        varies per call is the tensors' device and whether autograd is on: without it (eval mode,
        no grad) the batch norm folds into the maps and the rows of h need no backward."""
        maps = self.linear_maps()
        if _inferring(self):
            return self._update(v, kernels.ops(v.device).inference(v, u, src, dst, k, band, maps))
        h = kernels.edge_rows(v, u, src, dst, k, *maps)
        if self.training:
            h = self.bn_edge(h)
        return self._aggregate(v, h, src, k)

    def _aggregate(self, v, h, src, k=None):
        return self._update(v, kernels.ops(v.device).autograd(h, src, v.shape[0], k))

    def _update(self, v, summed):
        return F.softplus(v + self.bn_sum(summed))


def _inferring(module: nn.Module) -> bool:
    """Eval mode without autograd: the inference paths (batch norm folded, the fused kernel) apply."""
    return not (module.training or torch.is_grad_enabled())


def neighbors_per_atom(src: torch.Tensor, n_atoms: int):
    """k if the edges are atom 0's k, then atom 1's k, ... (CSR order, every atom k neighbours), else None.

    The featurizer keeps the 12 nearest neighbours inside 8 A, and nearly every
    crystal has 12 for every atom; the convolution then works on (N, k, .) views.
    """
    if n_atoms == 0 or src.numel() % n_atoms:
        return None
    k = src.numel() // n_atoms
    rows = torch.arange(n_atoms, device=src.device)[:, None].expand(n_atoms, k)
    return k if k and torch.equal(src.view(n_atoms, k), rows) else None


def _head(in_len: int, hidden: int, n_hidden: int) -> nn.Sequential:
    layers: list = [nn.Linear(in_len, hidden), nn.Softplus()]
    for _ in range(n_hidden - 1):
        layers += [nn.Linear(hidden, hidden), nn.Softplus()]
    layers.append(nn.Linear(hidden, 1))
    return nn.Sequential(*layers)


class MTCGCNN(nn.Module):
    def __init__(self, config: ModelSettings):
        super().__init__()
        self.config = config
        self.register_buffer("atom_features", torch.from_numpy(atom_feature_table()), persistent=False)
        self.expand = GaussianExpansion(config.cutoff, config.gaussian_step)
        self.embedding = nn.Linear(self.atom_features.shape[1], config.atom_fea_len)
        self.convs = nn.ModuleList(
            ConvLayer(config.atom_fea_len, self.expand.size) for _ in range(config.n_conv))
        self.heads = nn.ModuleList(
            _head(config.atom_fea_len, config.h_fea_len, config.n_h) for _ in config.tasks)
        if config.metal_head:
            if GAP_TASK not in config.tasks:
                raise ValueError(f"metal_head needs the {GAP_TASK} task (its label is Eg < {METAL_GAP_EV} eV)")
            self.metal = _head(config.atom_fea_len, config.h_fea_len, config.n_h)
        n = len(config.tasks)
        self.register_buffer("target_mean", torch.zeros(n))
        self.register_buffer("target_std", torch.ones(n))

    @property
    def tasks(self) -> List[str]:
        """The regression targets, in column order."""
        return list(self.config.tasks)

    @property
    def outputs(self) -> List[str]:
        """Column names of `predict`: the tasks, then p_metal if the model has the metal head."""
        return self.tasks + ([METAL_OUTPUT] if self.config.metal_head else [])

    def set_normalizer(self, targets: np.ndarray) -> None:
        """Per-task mean/std over the non-missing training targets."""
        t = np.asarray(targets, dtype=np.float64)
        mean = np.nanmean(t, axis=0)
        std = np.nanstd(t, axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)
        self.target_mean.copy_(torch.as_tensor(np.nan_to_num(mean), dtype=torch.float32))
        self.target_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def crystal_embedding(self, batch: Batch) -> torch.Tensor:
        v = self.embedding(self.atom_features[batch.atomic_numbers])
        e = self.expand
        grid = (e.step, e.size, float(e.centers[-1]))  # what the expansion depends on, besides the distances
        u = batch.shared(("expansion", *grid), lambda: e(batch.distances))
        k = batch.shared("neighbors_per_atom", lambda: neighbors_per_atom(batch.src, v.shape[0]))
        band = None
        if _inferring(self) and kernels.ops(v.device).fused:  # only the fused kernel uses it
            band = batch.shared(("band", *grid), lambda: e.band_starts(batch.distances))
        for conv in self.convs:
            v = conv(v, u, batch.src, batch.dst, k, band)
        # Average pooling (Eq. 3): sum per crystal / atoms per crystal.
        pooled = torch.zeros(batch.n_crystals, v.shape[1], device=v.device, dtype=v.dtype)
        pooled.index_add_(0, batch.crystal, v)
        counts = torch.bincount(batch.crystal, minlength=batch.n_crystals).clamp(min=1)
        return pooled / counts[:, None].to(v.dtype)

    def forward(self, batch: Batch) -> torch.Tensor:
        """(B, n_outputs): regression in normalized units, then the metal logit if any."""
        g = F.softplus(self.crystal_embedding(batch))
        heads = list(self.heads) + ([self.metal] if self.config.metal_head else [])
        return torch.cat([head(g) for head in heads], dim=1)

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.target_std + self.target_mean

    def normalize(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.target_mean) / self.target_std

    @torch.no_grad()
    def predict(self, batch: Batch) -> torch.Tensor:
        """(B, n_outputs): tasks in physical units, then P(metal) if the model has the head."""
        out = self(batch)
        n = len(self.config.tasks)
        values = self.denormalize(out[:, :n])
        if self.config.metal_head:
            values = torch.cat([values, torch.sigmoid(out[:, n:])], dim=1)
        return values

    def task_losses(self, batch: Batch, loss: str = "mse"):
        """Per-output losses (n_outputs,) and which outputs had a label in this batch.

        Regression: `loss` of the normalized prediction (mse = Eq. 7); metal head:
        binary cross-entropy against Eg < METAL_GAP_EV, unlabelled where Eg is missing.
        """
        out = self(batch)
        n = len(self.config.tasks)
        per_task, present = per_task_loss(out[:, :n], self.normalize(batch.targets), loss)
        if self.config.metal_head:
            gap = batch.targets[:, self.config.tasks.index(GAP_TASK)]
            known = ~torch.isnan(gap)
            label = (torch.nan_to_num(gap) < METAL_GAP_EV).to(out.dtype)  # is_metal, on the device
            bce = F.binary_cross_entropy_with_logits(out[:, n], label, reduction="none")
            bce = torch.where(known, bce, torch.zeros_like(bce)).sum() / known.sum().clamp(min=1)
            per_task = torch.cat([per_task, bce[None]])
            present = torch.cat([present, known.any()[None]])
        return per_task, present


def per_task_loss(pred: torch.Tensor, target: torch.Tensor, loss: str = "mse"):
    """(n_tasks,) mean loss over the crystals that have each target, and which tasks had any.

    mse is the paper's Eq. 7; l1 optimizes the metric we report (MAE); huber
    (delta 0.5 in target-std units) is quadratic near zero and linear beyond.

    Eq. 7 divides by the batch size; with missing targets we divide by the
    number of crystals that actually have target p, so a task's loss does not
    shrink just because some of its labels are absent. A task with no label
    in the batch has loss 0 and `present` False.
    """
    mask = ~torch.isnan(target)
    diff = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    if loss == "mse":
        err = diff ** 2
    elif loss == "l1":
        err = diff.abs()
    elif loss == "huber":
        err = F.huber_loss(diff, torch.zeros_like(diff), reduction="none", delta=0.5)
    else:
        raise ValueError(f"loss {loss!r}: choose {', '.join(LOSSES)}")
    counts = mask.sum(0)
    return err.sum(0) / counts.clamp(min=1), counts > 0

