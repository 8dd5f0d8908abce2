"""Featurizer throughput on the first 2,000 MP crystals, one core.

Prints crystals/s for:
  cif->structure : pymatgen's CIF parser (the next bottleneck)
  screen         : Structure -> CrystalGraph (vectorized, screening.featurize)
  baseline       : Structure -> expanded features the way CGCNN's data loader
                   does it (get_all_neighbors, per-site sort, Python loop over
                   sites, 92-long atom features and 41-long Gaussian expansion
                   built per crystal)
and `ratio: N` = screen / baseline.

    python benchmarks/featurize.py [--n 2000]
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from screening.elements import atom_feature_table
from screening.featurize import FeaturizerSettings, featurize
from screening.structures import structure_from_cif_text

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mp_dev.csv.gz")


def cgcnn_style(structure, radius=8.0, max_nbr=12, step=0.2):
    """Baseline: CGCNN's CIFData.__getitem__ feature construction, written plainly."""
    table = atom_feature_table()
    atom_fea = np.vstack([table[site.specie.Z] for site in structure])
    all_nbrs = structure.get_all_neighbors(radius, include_index=True)
    all_nbrs = [sorted(nbrs, key=lambda x: x[1]) for nbrs in all_nbrs]
    nbr_idx, nbr_dist = [], []
    for nbr in all_nbrs:
        if len(nbr) < max_nbr:
            nbr_idx.append([x[2] for x in nbr] + [0] * (max_nbr - len(nbr)))
            nbr_dist.append([x[1] for x in nbr] + [radius + 1.0] * (max_nbr - len(nbr)))
        else:
            nbr_idx.append([x[2] for x in nbr[:max_nbr]])
            nbr_dist.append([x[1] for x in nbr[:max_nbr]])
    nbr_idx, nbr_dist = np.array(nbr_idx), np.array(nbr_dist)
    centers = np.arange(0, radius + step, step)
    nbr_fea = np.exp(-((nbr_dist[..., None] - centers) ** 2) / step**2)
    return atom_fea, nbr_fea, nbr_idx


def rate(fn, items):
    t = time.perf_counter()
    out = [fn(x) for x in items]
    return len(items) / (time.perf_counter() - t), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--data", default=DATA)
    args = ap.parse_args()
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    warnings.simplefilter("ignore")
    df = pd.read_csv(args.data, nrows=args.n)
    atom_feature_table()  # build the table outside the timings
    cif_rate, structures = rate(lambda r: structure_from_cif_text(r[1], r[0]),
                                list(zip(df.material_id, df.cif)))
    config = FeaturizerSettings()
    screen_rate, graphs = rate(lambda s: featurize(s, config), structures)
    base_rate, _ = rate(cgcnn_style, structures)
    n_atoms = sum(g.n_atoms for g in graphs)
    print(f"crystals: {len(structures)}  atoms: {n_atoms}  (one core)")
    print(f"cif->structure: {cif_rate:8.1f} crystals/s  ({1000 / cif_rate:.2f} ms/crystal)")
    print(f"screen:         {screen_rate:8.1f} crystals/s  ({1000 / screen_rate:.2f} ms/crystal)")
    print(f"baseline:       {base_rate:8.1f} crystals/s  ({1000 / base_rate:.2f} ms/crystal)")
    whole = 1 / (1 / cif_rate + 1 / screen_rate)
    print(f"cif->graph whole path: {whole:8.1f} crystals/s  ({1000 / whole:.2f} ms/crystal, "
          f"{100 * (1 / cif_rate) / (1 / cif_rate + 1 / screen_rate):.0f}% of it in CIF parsing)")
    print(f"ratio: {screen_rate / base_rate:.1f}")


if __name__ == "__main__":
    main()
