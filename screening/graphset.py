"""Many crystal graphs in flat CSR arrays, with their targets: what training reads.

The layout is the graph store's (one array per field for all crystals, plus
atom and edge offsets), so a store unit becomes a GraphSet without a per-crystal
Python object, and a training batch is a few vectorized gathers:

    atomic_numbers  (N,) uint8      neighbor_counts (N,) uint8/16 (src is implicit)
    dst             (E,) int32      distances       (E,) float32
    atom_offsets    (n+1,) int64    edge_offsets    (n+1,) int64
    targets         (n, T) float32, NaN = missing
    ids             n strings

33,038 Materials Project crystals take about 45 MB this way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from screening.batch import Batch
from screening.errors import ScreenError
from screening.graph import CrystalGraph


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + l) for each (s, l), without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    new_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.arange(total, dtype=np.int64) + np.repeat(starts - new_starts, lengths)


ARRAYS = ("atomic_numbers", "neighbor_counts", "dst", "distances", "atom_offsets", "edge_offsets", "targets")


@dataclass
class GraphSet:
    atomic_numbers: np.ndarray
    neighbor_counts: np.ndarray
    dst: np.ndarray
    distances: np.ndarray
    atom_offsets: np.ndarray
    edge_offsets: np.ndarray
    targets: np.ndarray
    ids: List[str]

    def __len__(self) -> int:
        return len(self.atom_offsets) - 1

    @property
    def n_atoms(self) -> np.ndarray:
        return np.diff(self.atom_offsets)

    @classmethod
    def from_graphs(cls, graphs: Sequence[CrystalGraph], targets: Optional[np.ndarray] = None,
                    ids: Sequence[str] = ()) -> "GraphSet":
        n_atoms = np.array([g.n_atoms for g in graphs], dtype=np.int64)
        n_edges = np.array([g.n_edges for g in graphs], dtype=np.int64)
        cat = lambda arrays, dtype: np.concatenate(list(arrays) or [np.zeros(0)]).astype(dtype)
        t = np.full((len(graphs), 0), np.nan, np.float32) if targets is None else targets
        return cls(
            atomic_numbers=cat((g.atomic_numbers for g in graphs), np.uint8),
            neighbor_counts=cat((g.neighbor_counts() for g in graphs), np.int32),
            dst=cat((g.dst for g in graphs), np.int32),
            distances=cat((g.distances for g in graphs), np.float32),
            atom_offsets=np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64),
            edge_offsets=np.concatenate([[0], np.cumsum(n_edges)]).astype(np.int64),
            targets=np.asarray(t, dtype=np.float32).reshape(len(graphs), -1),
            ids=[str(i) for i in ids] if len(ids) else [str(i) for i in range(len(graphs))],
        )

    @classmethod
    def concat(cls, parts: Sequence["GraphSet"]) -> "GraphSet":
        parts = list(parts)
        if len(parts) == 1:
            return parts[0]

        def offsets(name, sizes):
            shifted = [getattr(p, name)[1:] + base for p, base in zip(parts, np.cumsum([0] + sizes[:-1]))]
            return np.concatenate([[0], *shifted]).astype(np.int64)

        atoms = [int(p.atom_offsets[-1]) for p in parts]
        edges = [int(p.edge_offsets[-1]) for p in parts]
        return cls(
            atomic_numbers=np.concatenate([p.atomic_numbers for p in parts]),
            neighbor_counts=np.concatenate([p.neighbor_counts for p in parts]),
            dst=np.concatenate([p.dst for p in parts]),
            distances=np.concatenate([p.distances for p in parts]),
            atom_offsets=offsets("atom_offsets", atoms),
            edge_offsets=offsets("edge_offsets", edges),
            targets=np.concatenate([p.targets for p in parts]),
            ids=[i for p in parts for i in p.ids],
        )

    def _rows(self, idx):
        """(idx, atoms per crystal, edges per crystal, atom positions, edge positions) of the crystals at idx."""
        idx = np.asarray(idx, dtype=np.int64)
        a0, na = self.atom_offsets[idx], np.diff(self.atom_offsets)[idx]
        e0, ne = self.edge_offsets[idx], np.diff(self.edge_offsets)[idx]
        return idx, na, ne, _ranges(a0, na), _ranges(e0, ne)

    def save(self, path, fingerprint: str, **extra) -> None:
        """One .npz file (for a GPU machine without the graph store or pymatgen): the arrays, the ids,
        the featurizer's fingerprint (checked by load) and any `extra` arrays, such as the tasks."""
        arrays = {f: getattr(self, f) for f in ARRAYS}
        np.savez_compressed(path, ids=np.array(self.ids), featurizer=np.array(fingerprint), **arrays,
                            **{k: np.array(v) for k, v in extra.items()})

    @classmethod
    def load(cls, path, fingerprint: str) -> "GraphSet":
        """The GraphSet save() wrote, made with the featurizer of this fingerprint, else ScreenError."""
        z = np.load(path)
        if str(z["featurizer"]) != fingerprint:
            raise ScreenError(f"{path}: graphs made with another featurizer than the model's")
        return cls(ids=[str(x) for x in z["ids"]], **{f: z[f] for f in ARRAYS})

    def subset(self, idx) -> "GraphSet":
        """The crystals at positions idx, in that order (a copy)."""
        idx, na, ne, atoms, edges = self._rows(idx)
        return GraphSet(
            atomic_numbers=self.atomic_numbers[atoms],
            neighbor_counts=self.neighbor_counts[atoms],
            dst=self.dst[edges],
            distances=self.distances[edges],
            atom_offsets=np.concatenate([[0], np.cumsum(na)]).astype(np.int64),
            edge_offsets=np.concatenate([[0], np.cumsum(ne)]).astype(np.int64),
            targets=self.targets[idx],
            ids=[self.ids[i] for i in idx],
        )

    def atomic_numbers_of(self, i: int) -> np.ndarray:
        return self.atomic_numbers[self.atom_offsets[i]:self.atom_offsets[i + 1]]

    def graph(self, i: int) -> CrystalGraph:
        a0, a1 = self.atom_offsets[i:i + 2]
        e0, e1 = self.edge_offsets[i:i + 2]
        return CrystalGraph.from_csr(self.atomic_numbers[a0:a1], self.neighbor_counts[a0:a1],
                                     self.dst[e0:e1], self.distances[e0:e1])

    def batch(self, idx) -> Batch:
        """The disjoint-union batch of the crystals at idx (same result as batch.collate)."""
        idx, na, ne, atoms, edges = self._rows(idx)
        new_a0 = np.concatenate([[0], np.cumsum(na)[:-1]])
        counts = self.neighbor_counts[atoms].astype(np.int64)
        src = np.repeat(np.arange(len(atoms), dtype=np.int64), counts)
        dst = self.dst[edges].astype(np.int64) + np.repeat(new_a0, ne)
        return Batch(
            atomic_numbers=torch.from_numpy(self.atomic_numbers[atoms].astype(np.int64)),
            src=torch.from_numpy(src),
            dst=torch.from_numpy(dst),
            distances=torch.from_numpy(np.ascontiguousarray(self.distances[edges])),
            crystal=torch.from_numpy(np.repeat(np.arange(len(idx), dtype=np.int64), na)),
            n_crystals=len(idx),
            targets=torch.from_numpy(np.ascontiguousarray(self.targets[idx], dtype=np.float32)),
        )
