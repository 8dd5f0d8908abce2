"""pymatgen Structure -> CrystalGraph, vectorized.

Each atom is joined to its `max_neighbors` nearest periodic images inside
`cutoff` (CGCNN defaults: 12 within 8 A). One call to pymatgen's compiled
neighbor list finds every pair; sorting and the per-atom cut are numpy
operations over all pairs at once, with no Python loop over sites.

Atoms with fewer than `max_neighbors` neighbors inside the cutoff keep only
the neighbors they really have. CGCNN pads such atoms with fake neighbors at
cutoff + 1 A; we do not, because the convolution sums messages and a padded
neighbor would invent a bond. An atom with no neighbor at all inside the
cutoff still takes part through its own features (the residual in Eq. 2).
`CrystalGraph.neighbor_counts()` tells how many each atom got.

Ties at the cut (several images at the same distance) are broken by the
neighbor's atomic number, then its index, so the chosen shell does not depend
on how the input file happens to order its sites.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from screening.elements import MAX_Z
from screening.errors import ScreenError
from screening.graph import CrystalGraph
from screening.settings import setting
from screening.structures import MIN_DISTANCE, check_distances

FEATURIZER_VERSION = "1"
_DISTANCE_TIE_TOL = 1e-5  # A: images closer than this in distance count as tied


@dataclass(frozen=True)
class FeaturizerSettings:
    cutoff: float = setting(8.0, "Neighbor cutoff (A).")
    max_neighbors: int = setting(12, "Neighbors per atom at most (the nearest inside the cutoff).")
    gaussian_step: float = 0.2  # A: spacing and width of the distance expansion
    version: str = FEATURIZER_VERSION

    def __post_init__(self):
        if not self.cutoff > 0:
            raise ScreenError(f"featurizer cutoff must be > 0 A, got {self.cutoff}")
        if self.max_neighbors < 1:
            raise ScreenError(f"featurizer max_neighbors must be >= 1, got {self.max_neighbors}")
        if not 0 < self.gaussian_step < self.cutoff:
            raise ScreenError(f"featurizer gaussian_step must be in (0, cutoff), got {self.gaussian_step}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeaturizerSettings":
        return cls(**d)

    def fingerprint(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def gaussian_centers(self) -> np.ndarray:
        """0, step, ..., cutoff: 41 centers for the defaults, as in CGCNN."""
        n = int(round(self.cutoff / self.gaussian_step)) + 1
        return np.linspace(0.0, self.cutoff, n, dtype=np.float32)


def check_structure(structure, name: str) -> None:
    """Refuse what the model cannot represent, naming the input."""
    if len(structure) == 0:
        raise ScreenError(f"{name}: structure has no atoms")
    if not structure.is_ordered:
        site = next(i for i, s in enumerate(structure) if not s.is_ordered)
        raise ScreenError(
            f"{name}: disordered structure (partial occupancy on site {site}: "
            f"{structure[site].species}); screen needs an ordered crystal"
        )
    bad = sorted({el.symbol for el in structure.composition.elements if el.Z > MAX_Z or el.Z < 1},
                 key=str)
    if bad:
        raise ScreenError(
            f"{name}: element {', '.join(bad)} is outside the atom feature table (H..Pu, Z 1-{MAX_Z})"
        )


def featurize(structure, config: FeaturizerSettings = FeaturizerSettings(), name: str = "structure") -> CrystalGraph:
    """Build the crystal graph of one ordered structure."""
    check_structure(structure, name)
    z = np.fromiter((site.specie.Z for site in structure), dtype=np.uint8, count=len(structure))
    center, neighbor, _, dist = structure.get_neighbor_list(config.cutoff, exclude_self=True)
    # atoms on top of each other: refused, from the pairs found anyway (a cutoff below the floor looks again)
    check_distances(structure, name, (center, neighbor, dist) if config.cutoff >= MIN_DISTANCE else None)
    center = center.astype(np.int32)
    neighbor = neighbor.astype(np.int32)
    # Sort all pairs by (center, distance bucket, neighbor Z, neighbor index, distance).
    bucket = np.round(dist / _DISTANCE_TIE_TOL).astype(np.int64)
    order = np.lexsort((dist, neighbor, z[neighbor], bucket, center))
    center, neighbor, dist = center[order], neighbor[order], dist[order]
    # Rank of each pair within its center's run; keep the nearest max_neighbors.
    counts = np.bincount(center, minlength=len(z))
    run_start = np.repeat(np.cumsum(counts) - counts, counts)
    keep = (np.arange(len(center)) - run_start) < config.max_neighbors
    return CrystalGraph(z, center[keep], neighbor[keep], dist[keep].astype(np.float32))
