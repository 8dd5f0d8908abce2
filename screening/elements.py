"""92-long atom feature vectors, computed from pymatgen's element data.

The table ships as screening/data/atom_features.csv (one 0/1 row per element,
written by `python -m screening.elements`), so a model is built without
importing pymatgen: a GPU machine or a fresh worker needs torch and numpy only.
tests/screening/test_featurize.py checks the shipped table against pymatgen's data.

Nine properties, each one-hot encoded as in CGCNN (Xie & Grossman 2018,
Table S2). Continuous properties are cut into 10 equal bins over a fixed
range (log scale where noted); values outside the range fall in the end bins.

    property                   bins  range / categories
    group                        18  1..18 (lanthanides/actinides -> 3)
    period                        7  1..7
    electronegativity (Pauling)  10  0.5..4.0, plus 1 bin "none" (noble gases)
    covalent radius (pm)         10  25..250
    valence electrons            12  1..12
    first ionization energy (eV) 10  log, 3.5..25
    electron affinity (eV)       10  -3..3.7
    block                         4  s, p, d, f
    atomic volume (cm3/mol)      10  log, 1.5..75
                                 --
                                 92

The table covers Z = 1..94 (H..Pu), every element the Materials Project
training data holds. Anything else is refused with a clear error by the
featurizer instead of getting a made-up vector.
"""
from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import numpy as np

MAX_Z = 94
N_FEATURES = 92
_BLOCKS = "spdf"


def _one_hot(index: int, n: int) -> np.ndarray:
    v = np.zeros(n, dtype=np.float32)
    v[min(max(index, 0), n - 1)] = 1.0
    return v


def _binned(value: float, lo: float, hi: float, n: int = 10, log: bool = False) -> np.ndarray:
    if log:
        value, lo, hi = math.log(value), math.log(lo), math.log(hi)
    return _one_hot(int((value - lo) / (hi - lo) * n), n)


def _valence_electrons(el) -> int:
    """Electrons outside the closed noble-gas core and closed inner d/f shells."""
    if el.block in ("s", "p"):
        return 2 if el.Z == 2 else (el.group if el.group <= 2 else el.group - 10)
    if el.block == "d":
        return el.group
    # f block: outer s + d + f electrons, capped at the last bin
    outer = [occ for (_, orb, occ) in el.full_electronic_structure[-3:] if orb in "sdf"]
    return min(sum(outer), 12)


def _element_vector(z: int) -> np.ndarray:
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core import Element

    el = Element.from_Z(z)
    group = 3 if el.block == "f" else el.group
    x = el.X
    en = np.zeros(11, dtype=np.float32)
    if math.isnan(x):
        en[10] = 1.0  # no Pauling electronegativity (He, Ne, Ar)
    else:
        en[:10] = _binned(x, 0.5, 4.0)
    radius_pm = 100.0 * CovalentRadius.radius[el.symbol]
    ea = el.electron_affinity
    ea = 0.0 if ea is None or math.isnan(ea) else float(ea)
    volume = el.molar_volume
    if volume is None:  # no measured solid density: use the atomic radius sphere
        volume = 4 / 3 * math.pi * float(el.atomic_radius or 1.75) ** 3 * 0.6022
    parts = [
        _one_hot(group - 1, 18),
        _one_hot(el.row - 1, 7),
        en,
        _binned(radius_pm, 25, 250),
        _one_hot(_valence_electrons(el) - 1, 12),
        _binned(el.ionization_energies[0], 3.5, 25, log=True),
        _binned(ea, -3.0, 3.7),
        _one_hot(_BLOCKS.index(el.block), 4),
        _binned(float(volume), 1.5, 75, log=True),
    ]
    return np.concatenate(parts)


SHIPPED = Path(__file__).parent / "data" / "atom_features.csv"


@functools.lru_cache(maxsize=1)
def atom_feature_table() -> np.ndarray:
    """(MAX_Z + 1, 92) float32; row Z is element Z's vector, row 0 is unused."""
    rows = np.loadtxt(SHIPPED, delimiter=",", dtype=np.int64, skiprows=1)
    table = np.zeros((MAX_Z + 1, N_FEATURES), dtype=np.float32)
    table[rows[:, 0]] = rows[:, 1:]
    return table


def computed_atom_feature_table() -> np.ndarray:
    """The table from pymatgen's element data (what SHIPPED holds)."""
    table = np.zeros((MAX_Z + 1, N_FEATURES), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about estimated data
        for z in range(1, MAX_Z + 1):
            table[z] = _element_vector(z)
    return table


def write_shipped_table() -> None:
    table = computed_atom_feature_table().astype(np.int64)
    lines = ["z," + ",".join(f"f{i}" for i in range(N_FEATURES))]
    lines += [f"{z}," + ",".join(map(str, table[z])) for z in range(1, MAX_Z + 1)]
    SHIPPED.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    write_shipped_table()
    print(f"wrote {SHIPPED}")
