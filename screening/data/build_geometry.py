"""Build the geometry table the substitution source ships with: `screening/data/geometry.json`.

Learned from the TRAINING crystals of the bundled model (screening/models/default/split.json)
in ../shared/data/mp_dev.csv.gz, so the rediscovery benchmark's test crystals stay unseen:

  * atom_volumes: {element: A^3 an atom of it takes up}, fitted by least squares so that a
    crystal's volume is about the sum over its atoms (relative errors weighted alike, no
    negative volumes). A prototype's cell is scaled to the sum for its new composition.
  * shortest: {"A-B": [shortest distance seen in A, crystals with an A-B pair within CUTOFF]}
    for every element pair (A <= B alphabetically). Candidates with a pair much shorter than
    this are rejected (screening/sources/substitution.py, MIN_DISTANCE_FRACTION).

    python -m screening.data.build_geometry [--data ../shared/data/mp_dev.csv.gz]
"""
from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).with_name("geometry.json")
SPLIT = Path(__file__).resolve().parents[1] / "models" / "default" / "split.json"
CUTOFF = 4.0  # A: pairs further apart than this in every crystal are "never seen"


def shortest_pairs(structures) -> dict:
    """{(A, B): [shortest A-B distance, crystals with such a pair within CUTOFF]}."""
    best: dict = {}
    seen: Counter = Counter()
    for s in structures:
        centre, neighbour, _, dist = s.get_neighbor_list(CUTOFF, exclude_self=True)
        if not len(dist):
            continue
        z = np.array([site.specie.Z for site in s])
        a, b = np.minimum(z[centre], z[neighbour]), np.maximum(z[centre], z[neighbour])
        key = a * 1000 + b
        order = np.lexsort((dist, key))
        key, dist = key[order], dist[order]
        first = np.r_[True, key[1:] != key[:-1]]
        for k, d in zip(key[first], dist[first]):
            seen[int(k)] += 1
            if d < best.get(int(k), np.inf):
                best[int(k)] = float(d)
    return {k: [best[k], seen[k]] for k in best}


def fit_volumes(formulas, volumes_per_atom) -> dict:
    """Per-element atomic volumes v minimising sum_i ((sum_e x_ie v_e - V_i) / V_i)^2, v >= 0,
    with x_ie the atom fraction of element e in crystal i and V_i its volume per atom."""
    from pymatgen.core import Composition
    from scipy.optimize import lsq_linear

    comps = [Composition(f).fractional_composition for f in formulas]
    elements = sorted({el.symbol for c in comps for el in c})
    col = {e: j for j, e in enumerate(elements)}
    x = np.zeros((len(comps), len(elements)))
    for i, c in enumerate(comps):
        for el, frac in c.items():
            x[i, col[el.symbol]] = frac
    v = np.asarray(volumes_per_atom, float)
    fit = lsq_linear(x / v[:, None], np.ones(len(v)), bounds=(0, np.inf))
    counts = (x > 0).sum(axis=0)
    return {e: [round(float(fit.x[j]), 4), int(counts[j])] for e, j in col.items()}


def main():
    from pymatgen.core import Element

    from screening.structures import structure_from_cif_text

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "mp_dev.csv.gz"))
    args = ap.parse_args()
    train = set(json.loads(SPLIT.read_text())["train"])
    df = pd.read_csv(args.data, usecols=["material_id", "formula", "volume", "cif"])
    df = df[df.material_id.isin(train)].reset_index(drop=True)
    structures = [structure_from_cif_text(c, i) for c, i in zip(df.cif, df.material_id)]
    atoms = np.array([len(s) for s in structures])
    volumes = fit_volumes([s.composition.formula for s in structures], df.volume.to_numpy(float) / atoms)
    pairs = shortest_pairs(structures)
    shortest = {}
    for k in sorted(pairs):
        a, b = Element.from_Z(k // 1000).symbol, Element.from_Z(k % 1000).symbol
        a, b = sorted((a, b))
        shortest[f"{a}-{b}"] = [round(pairs[k][0], 4), pairs[k][1]]
    sha = hashlib.sha256(Path(args.data).read_bytes()).hexdigest()[:16]
    about = {"data": Path(args.data).name, "sha256": sha, "crystals": len(df),
             "what": "training crystals of screening/models/default/split.json: per-element atomic volumes "
                     "(A^3, least squares; [volume, crystals]) and the shortest distance of each element pair "
                     f"(A; [distance, crystals with the pair within {CUTOFF} A])",
             "command": "python -m screening.data.build_geometry"}
    OUT.write_text(json.dumps({"about": about, "atom_volumes": volumes, "shortest": shortest},
                              separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{len(df)} training crystals: {len(volumes)} element volumes, {len(shortest)} pairs; "
          f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
