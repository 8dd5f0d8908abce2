"""Textbook forms of what the library computes faster, for the tests to compare it against."""
from typing import Sequence

import torch
import torch.nn.functional as F

from screening.model import per_task_loss


def unfactorized_conv(conv, v, u, src, dst):
    """ConvLayer's Eq. 2 as the paper writes it: z_ij = v_i (+) v_j (+) u_ij times the whole W, batch
    norm applied (not folded), and the messages summed by index_add_ in torch's ops (no C kernel)."""
    z = torch.cat([v[src], v[dst], u], dim=1)
    weight = torch.cat([conv.w_self.weight, conv.w_nbr.weight, conv.w_edge.weight], dim=1)
    gate, core = conv.bn_edge(z @ weight.T + conv.w_self.bias).chunk(2, dim=1)
    summed = torch.zeros(v.shape[0], conv.atom_len, dtype=v.dtype).index_add_(
        0, src, torch.sigmoid(gate) * F.softplus(core))
    return F.softplus(v + conv.bn_sum(summed))


def per_task_mse(pred: torch.Tensor, target: torch.Tensor):
    """Eq. 7 per task: `per_task_loss` with MSE."""
    return per_task_loss(pred, target, "mse")


def masked_multitask_mse(pred: torch.Tensor, target: torch.Tensor,
                         weights: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """L = 1/|P| sum_p w_p L_p (Eq. 6) with L_p from `per_task_mse`."""
    n_tasks = pred.shape[1]
    w = torch.ones(n_tasks, device=pred.device) if weights is None else \
        torch.as_tensor(weights, dtype=pred.dtype, device=pred.device)
    per_task, _ = per_task_mse(pred, target)
    return (w * per_task).sum() / n_tasks
