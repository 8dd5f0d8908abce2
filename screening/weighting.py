"""How the per-task losses L_p become the one number the optimizer sees.

fixed (paper Eq. 6):   L = 1/|P| sum_p w_p L_p, with w_p chosen by hand.

uncertainty (Kendall, Gal & Cipolla 2018, homoscedastic task uncertainty;
the "dynamic weighted loss" the paper leaves for future work): each task
gets a learned s_p = log sigma_p^2 and

    L = 1/|P| sum_p 1/2 (exp(-s_p) L_p + s_p)

For a fixed L_p the minimum over s_p is at s_p = log L_p, so the effective
weight exp(-s_p) tends to 1 / L_p: a task whose loss is 100x larger ends up
weighted 100x less, and the s_p term stops the weights collapsing to 0.
The s_p are trained by the same optimizer as the network.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from screening.errors import ScreenError

WEIGHTINGS = ("fixed", "uncertainty")


class FixedWeighting(nn.Module):
    def __init__(self, weights: Sequence[float]):
        super().__init__()
        self.register_buffer("w", torch.as_tensor(list(weights), dtype=torch.float32))

    def forward(self, per_task: torch.Tensor, present: Optional[torch.Tensor] = None) -> torch.Tensor:
        return (self.w * per_task).sum() / len(self.w)

    def weights(self) -> List[float]:
        return self.w.tolist()


class UncertaintyWeighting(nn.Module):
    def __init__(self, n_tasks: int):
        super().__init__()
        self.log_var = nn.Parameter(torch.zeros(n_tasks))  # s_p; 0 = weight 1, as Eq. 6 starts

    def forward(self, per_task: torch.Tensor, present: Optional[torch.Tensor] = None) -> torch.Tensor:
        terms = 0.5 * (torch.exp(-self.log_var) * per_task + self.log_var)
        if present is not None:  # a task with no label in this batch says nothing about its noise
            terms = torch.where(present, terms, torch.zeros_like(terms))
        return terms.sum() / len(self.log_var)

    def weights(self) -> List[float]:
        """The effective weights exp(-s_p) (compare with w_p of Eq. 6)."""
        return torch.exp(-self.log_var.detach()).tolist()


def make_weighting(kind: str, n_tasks: int, weights: Optional[Sequence[float]] = None) -> nn.Module:
    if kind == "fixed":
        w = list(weights) if weights else [1.0] * n_tasks
        if len(w) != n_tasks:
            raise ScreenError(f"`task_weights`: {len(w)} weights for {n_tasks} tasks")
        return FixedWeighting(w)
    if kind == "uncertainty":
        if weights:
            raise ScreenError("`task_weights`: fixed weights cannot be combined with `weighting` uncertainty")
        return UncertaintyWeighting(n_tasks)
    raise ScreenError(f"`weighting` {kind}: choose {' or '.join(WEIGHTINGS)}")
