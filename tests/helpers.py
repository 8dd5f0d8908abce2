"""Small shared test helpers (fixtures live in conftest.py)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp_dev.csv.gz"
TASKS = ["formation_energy_per_atom", "band_gap", "efermi"]


def rocksalt(a=5.64, elements=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(elements), [[0, 0, 0], [0.5, 0.5, 0.5]])


def diamond(a=5.43) -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Si"], [[0, 0, 0]])


@functools.lru_cache(maxsize=4)
def mp_rows(n: int) -> pd.DataFrame:
    """The first n rows of the shared MP data (read from ../shared, never copied)."""
    return pd.read_csv(DATA, nrows=n)


def mp_structures(n: int):
    from screening.structures import structure_from_cif_text

    df = mp_rows(n)
    return [structure_from_cif_text(c, i) for c, i in zip(df.cif, df.material_id)], \
        df[TASKS].to_numpy(np.float32)


def warmed_model(graphs, seed=0, tasks=("a", "b", "c")):
    """A random model whose batch-norm statistics are no longer the identity."""
    import torch

    from screening.batch import collate
    from screening.model import MTCGCNN, ModelConfig

    torch.manual_seed(seed)
    model = MTCGCNN(ModelConfig(list(tasks)))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(collate(graphs))
    model.eval()
    return model
