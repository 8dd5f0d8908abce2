"""Collate crystal graphs into one disjoint-union batch.

Atoms of all crystals are stacked; each edge's indices are shifted by its
crystal's atom offset, so one tensor operation per layer covers the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from screening.graph import CrystalGraph


@dataclass
class Batch:
    atomic_numbers: torch.Tensor  # (N,) long
    src: torch.Tensor  # (E,) long, global atom index of the center
    dst: torch.Tensor  # (E,) long, global atom index of the neighbor
    distances: torch.Tensor  # (E,) float32
    crystal: torch.Tensor  # (N,) long, which crystal each atom belongs to
    n_crystals: int
    targets: Optional[torch.Tensor] = None  # (B, n_tasks) float32, NaN = missing
    memo: dict = field(default_factory=dict, repr=False, compare=False)  # see `shared`

    def to(self, device) -> "Batch":
        moved = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
                 for k, v in self.__dict__.items() if k != "memo"}
        return Batch(**moved)

    def shared(self, key, compute: Callable):
        """compute(), once per batch and key: the members of an ensemble that run on one batch
        share what depends on it alone (its Gaussian expansion, its neighbour layout)."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


def collate(graphs: Sequence[CrystalGraph], targets: Optional[np.ndarray] = None) -> Batch:
    n_atoms = np.array([g.n_atoms for g in graphs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
    n_edges = np.array([g.n_edges for g in graphs], dtype=np.int64)
    edge_shift = np.repeat(offsets, n_edges)
    src = np.concatenate([g.src for g in graphs]).astype(np.int64) + edge_shift
    dst = np.concatenate([g.dst for g in graphs]).astype(np.int64) + edge_shift
    return Batch(
        atomic_numbers=torch.from_numpy(np.concatenate([g.atomic_numbers for g in graphs]).astype(np.int64)),
        src=torch.from_numpy(src),
        dst=torch.from_numpy(dst),
        distances=torch.from_numpy(np.concatenate([g.distances for g in graphs])),
        crystal=torch.from_numpy(np.repeat(np.arange(len(graphs)), n_atoms)),
        n_crystals=len(graphs),
        targets=None if targets is None else torch.as_tensor(np.asarray(targets, dtype=np.float32)),
    )


def atom_budget_chunks(items: Iterable, max_atoms: int, size: Callable = lambda item: item) -> Iterator[list]:
    """Group consecutive items into lists whose total `size(item)` atoms stay <= max_atoms.

    Lazy, so it also batches a stream. A single crystal larger than the budget
    gets a batch of its own.
    """
    chunk, total = [], 0
    for item in items:
        n = size(item)
        if chunk and total + n > max_atoms:
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += n
    if chunk:
        yield chunk
