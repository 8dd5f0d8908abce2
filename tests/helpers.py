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
    from screening.model import MTCGCNN, ModelSettings

    torch.manual_seed(seed)
    model = MTCGCNN(ModelSettings(list(tasks)))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(collate(graphs))
    model.eval()
    return model


def tiny_ensemble(out: Path, meta=None) -> str:
    """Two tiny members of the default recipe (with the metal head) on one split, seeds 0 and 1, as one ensemble."""
    from screening.featurize import FeaturizerSettings, featurize
    from screening.graphset import GraphSet
    from screening.train import TrainSettings, train
    from workflows.train.training import write_ensemble

    structures, targets = mp_structures(40)
    data = GraphSet.from_graphs([featurize(s) for s in structures], targets)
    for seed in (0, 1):
        train(data, data, TrainSettings(tasks=TASKS, epochs=2, batch_size=20, atom_fea_len=16, h_fea_len=16,
                                        n_conv=1, seed=seed), out / f"m{seed}", FeaturizerSettings())
    return str(write_ensemble(out / "ensemble.json", [out / "m0/best.pt", out / "m1/best.pt"], meta=meta).path)
