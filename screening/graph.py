"""The crystal graph: the unit that flows from featurizer to store to model.

A graph keeps only what cannot be recomputed cheaply: atomic numbers, the
directed edges (center `src` -> neighbor `dst`, one per periodic image inside
the cutoff, nearest first) and their distances. Atom feature vectors and the
Gaussian distance expansion are built at batch time, so stored graphs stay
small (about 9 bytes per edge).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CrystalGraph:
    atomic_numbers: np.ndarray  # (n_atoms,) uint8
    src: np.ndarray  # (n_edges,) int32, sorted ascending (CSR order)
    dst: np.ndarray  # (n_edges,) int32
    distances: np.ndarray  # (n_edges,) float32, Angstrom

    @property
    def n_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.src.shape[0])

    def neighbor_counts(self) -> np.ndarray:
        return np.bincount(self.src, minlength=self.n_atoms)

    def equals(self, other: "CrystalGraph") -> bool:
        return all(
            np.array_equal(getattr(self, f), getattr(other, f))
            for f in ("atomic_numbers", "src", "dst", "distances")
        )

    @classmethod
    def from_csr(cls, atomic_numbers, neighbor_counts, dst, distances) -> "CrystalGraph":
        """Rebuild `src` from per-atom neighbor counts (how the store keeps it)."""
        src = np.repeat(np.arange(len(atomic_numbers), dtype=np.int32), neighbor_counts)
        return cls(
            np.asarray(atomic_numbers, dtype=np.uint8),
            src,
            np.asarray(dst, dtype=np.int32),
            np.asarray(distances, dtype=np.float32),
        )
