"""Batched inference: crystal graphs -> property predictions in physical units."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import List, Sequence

import numpy as np
import torch

from screening import kernels
from screening.batch import atom_budget_chunks, collate
from screening.graph import CrystalGraph
from screening.model import MTCGCNN
from screening.model_info import check_device  # (its home: torch-free, for the run's option checks)

# On a CPU, batches in torch's ops get slower per crystal, not faster, once their
# (E, 2A) edge buffers (12 edges per atom) outgrow the caches: they come back from the
# allocator as fresh pages, whose faults cost as much as the arithmetic. The fused kernel
# (screening.kernels) makes no edge buffers beyond the expansion, so its batches may be
# bigger, up to where a worker's peak memory, not its speed, sets the limit
# (docs/model_speed.md has the measurements behind both caps).
# A GPU wants the big batches, so the caps are for the CPU only.
CPU_MAX_ATOMS = 1_000
FUSED_CPU_MAX_ATOMS = 2_000


def _atom_budget(max_atoms: int, device: torch.device) -> int:
    if device.type != "cpu":
        return max_atoms
    return min(max_atoms, FUSED_CPU_MAX_ATOMS if kernels.ops(device).fused else CPU_MAX_ATOMS)


def resolve_device(device: str = "auto") -> torch.device:
    if check_device(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from screening.errors import ScreenError
        raise ScreenError("`device` cuda: no CUDA GPU is visible to this process")
    return torch.device(device)


def predict_graphs(model: MTCGCNN, graphs: Sequence[CrystalGraph], max_atoms: int = 20_000,
                   device="cpu") -> np.ndarray:
    """(n, n_outputs) float32 (see MTCGCNN.outputs). Batches hold at most `max_atoms` atoms
    (on a CPU at most CPU_MAX_ATOMS, or FUSED_CPU_MAX_ATOMS with the fused kernel)."""
    return predict_graphs_many([model], graphs, max_atoms, device)[0]


def predict_set(model: MTCGCNN, data, max_atoms: int = 20_000, device="cpu") -> np.ndarray:
    """(n, n_outputs) float32 for a GraphSet, in batches of at most `max_atoms` atoms (CPU: see _atom_budget)."""
    return predict_set_many([model], data, max_atoms, device)[0]


def predict_graphs_many(models: Sequence[MTCGCNN], graphs: Sequence[CrystalGraph], max_atoms: int = 20_000,
                        device="cpu") -> List[np.ndarray]:
    """predict_graphs of each model, from the same batches (see _predict)."""
    return _predict(models, len(graphs), [g.n_atoms for g in graphs], lambda idx: collate([graphs[i] for i in idx]),
                    max_atoms, device)


def predict_set_many(models: Sequence[MTCGCNN], data, max_atoms: int = 20_000, device="cpu") -> List[np.ndarray]:
    """predict_set of each model, from the same batches (see _predict)."""
    return _predict(models, len(data), data.n_atoms, data.batch, max_atoms, device)


def _predict(models, n: int, sizes, make_batch, max_atoms: int, device) -> List[np.ndarray]:
    """Each model's (n, n_outputs) float32. Every batch is made once for all the models, which
    also share its Gaussian expansion (Batch.shared): an ensemble's members differ in weights only.

    With the fused kernel on a CPU of T > 1 torch threads, T batches run at once, each on one
    thread: a batch's small torch ops (the linear layers, batch norm, pooling) gain little from
    torch's threads, whose spinning also slows the kernel's second thread. Same numbers either way."""
    device = torch.device(device)
    for model in models:
        model.eval()
        model.to(device)
    outs = [np.empty((n, len(model.outputs)), dtype=np.float32) for model in models]
    chunks = list(atom_budget_chunks(range(n), _atom_budget(max_atoms, device), size=lambda i: sizes[i]))

    @torch.no_grad()
    def run(idx):
        batch = make_batch(idx).to(device)
        for model, out in zip(models, outs):
            out[idx] = model.predict(batch).float().cpu().numpy()

    torch_threads = torch.get_num_threads()
    threads = min(torch_threads, len(chunks)) if kernels.ops(device).fused else 1
    if threads <= 1:
        for idx in chunks:
            run(idx)
        return outs

    def one_thread(idx):
        torch.set_num_threads(1)  # this thread's OpenMP setting (and torch's default for new threads)
        run(idx)

    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="screen-predict") as pool:
            for done in [pool.submit(one_thread, idx) for idx in chunks]:
                done.result()
    finally:
        torch.set_num_threads(torch_threads)  # torch's default for new threads back to what it was
    return outs
