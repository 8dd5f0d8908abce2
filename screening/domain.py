"""The model's domain: what its training set covered, and flags for candidates outside it.

A prediction for a crystal unlike anything the model was trained on is an
extrapolation, however small its ensemble std. A model ships `domain.json`
beside its checkpoint (written by `screen train` from its training split):

    {"n_train": 26430, "element_counts": {"O": 12345, ...}, "density_range": [1.2, 19.6]}

element_counts[X] is the number of training crystals that contain X;
density_range (g/cm3) spans the middle 99.8 % of the training densities (0.1st
to 99.9th percentile), when the training data gave cell volumes. A candidate is
flagged (one short reason each, joined by "; ") when:
  - it contains an element seen in fewer than `min_count` training crystals;
  - its density is outside density_range (a prototype rescaled to the wrong volume);
  - one of its atoms has no neighbour inside the cutoff (the graph gives that
    atom nothing to learn from);
  - it is a hypothetical structure that was never relaxed (the model was trained
    on relaxed DFT structures only).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np

DOMAIN_FILE = "domain.json"
UNRELAXED = "unrelaxed"  # the flag of a substitution candidate that was never relaxed
MIN_COUNT = 20  # training crystals an element must appear in before the model is trusted with it


@dataclass
class Domain:
    n_train: int
    element_counts: Dict[str, int] = field(default_factory=dict)
    density_range: Optional[List[float]] = None  # g/cm3

    @staticmethod
    def density_range_of(densities) -> Optional[List[float]]:
        d = np.asarray(densities, float)
        d = d[np.isfinite(d)]
        return [round(float(x), 3) for x in np.percentile(d, [0.1, 99.9])] if len(d) else None

    @classmethod
    def from_atomic_numbers(cls, per_crystal: Iterable[np.ndarray]) -> "Domain":
        from pymatgen.core.periodic_table import Element

        counts: Dict[int, int] = {}
        n = 0
        for z in per_crystal:
            n += 1
            for value in np.unique(z):
                counts[int(value)] = counts.get(int(value), 0) + 1
        return cls(n, {Element.from_Z(z).symbol: c for z, c in sorted(counts.items())})

    def to_json(self) -> str:
        return json.dumps({"n_train": self.n_train, "element_counts": self.element_counts,
                           "density_range": self.density_range}, indent=1)

    @classmethod
    def read(cls, path) -> Optional["Domain"]:
        """The domain file, or None when there is none (a model trained before they existed)."""
        try:
            raw = json.loads(Path(path).read_text())
            dr = raw.get("density_range")
            return cls(int(raw["n_train"]), {str(k): int(v) for k, v in raw["element_counts"].items()},
                       None if dr is None else [float(dr[0]), float(dr[1])])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            from screening.errors import ScreenError
            raise ScreenError(f"{path}: not a readable model domain file") from None

    def flags(self, elements: Iterable[str], isolated_atoms: int = 0, unrelaxed: bool = False,
              density: Optional[float] = None, min_count: int = MIN_COUNT) -> List[str]:
        out = [f"{el} in {self.element_counts.get(el, 0)} training crystals"
               for el in sorted(elements) if self.element_counts.get(el, 0) < min_count]
        if density is not None and self.density_range and not \
                self.density_range[0] <= density <= self.density_range[1]:
            out.append(f"density {density:.2f} g/cm3 outside {self.density_range[0]:g}-{self.density_range[1]:g}")
        if isolated_atoms:
            out.append(f"{isolated_atoms} atom(s) without neighbours")
        if unrelaxed:
            out.append(UNRELAXED)
        return out


def density(structure) -> float:
    """pymatgen's Structure.density (g/cm3), the same float, without the unit objects that
    made it a noticeable part of each crystal's featurizing (docs/run_speed.md)."""
    grams, cm3 = _factors()
    weight = 0
    for el, amount in structure.composition.items():
        weight += amount * _mass(el.symbol)
    return float(weight * grams / (structure.volume * cm3))


def densities(atomic_numbers: Iterable[np.ndarray], volumes) -> np.ndarray:
    """Densities (g/cm3) of crystals given by their atoms' atomic numbers and cell volumes (A^3),
    converted as `density` converts a structure's, so the domain's range and a candidate's density agree."""
    grams, cm3 = _factors()
    mass = _masses_by_z()
    weights = np.array([mass[np.asarray(z)].sum() for z in atomic_numbers], dtype=float)
    return weights * grams / (np.asarray(volumes, float) * cm3)


@functools.lru_cache(1)
def _masses_by_z() -> np.ndarray:
    from pymatgen.core import Element

    return np.array([0.0] + [_mass(Element.from_Z(z).symbol) for z in range(1, 119)])


@functools.lru_cache(maxsize=None)
def _mass(symbol: str) -> float:
    from pymatgen.core import Element

    return float(Element(symbol).atomic_mass)


@functools.lru_cache(1)
def _factors():
    """(g per amu, cm3 per A^3) as pymatgen converts them."""
    from pymatgen.core.units import Length, Mass

    return float(Mass(1, "amu").to("g")), float(Length(1, "ang").to("cm")) ** 3


def domain_path(model_path) -> Path:
    """domain.json beside a checkpoint, or beside an ensemble's manifest."""
    p = Path(model_path)
    if p.suffix == ".pt" and p.with_name(f"{p.stem}.{DOMAIN_FILE}").exists():
        return p.with_name(f"{p.stem}.{DOMAIN_FILE}")  # screening/models/default.domain.json
    return (p if p.is_dir() else p.parent) / DOMAIN_FILE
