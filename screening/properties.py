"""The properties screen predicts, named once, and the metal / non-metal rule.

The three regression tasks of the MT-CGCNN paper, in its order, with the short
names its tables use; every module that names a task or decides "metal" takes
it from here.
"""
from __future__ import annotations

import numpy as np

FORMATION_ENERGY = "formation_energy_per_atom"  # ΔEf, eV/atom
BAND_GAP = "band_gap"  # Eg, eV
FERMI_ENERGY = "efermi"  # EF, eV
TASKS = (FORMATION_ENERGY, BAND_GAP, FERMI_ENERGY)
SHORT_NAMES = {"Ef": FORMATION_ENERGY, "Eg": BAND_GAP, "EF": FERMI_ENERGY}  # the paper's tables
UNITS = {FORMATION_ENERGY: "eV/atom", BAND_GAP: "eV", FERMI_ENERGY: "eV"}

METAL_GAP_EV = 0.025  # k_B T at 300 K: Eg below this counts as a metal (paper sec. 4.5)


def is_metal(gap, threshold: float = METAL_GAP_EV) -> np.ndarray:
    """The metal label of a band gap (NaN, an unknown gap, is not a metal here; callers mask it)."""
    return np.asarray(gap, dtype=float) < threshold
