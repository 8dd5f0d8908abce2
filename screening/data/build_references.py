"""Build the reference table that ships with screen: `screening/data/references.csv.gz`.

The phases on the convex hull of ../shared/data/mp_dev.csv.gz (Materials Project DFT formation
energies): for every chemical system in the file, the entries its own phase diagram keeps
stable. A candidate's E_hull needs only these, so a pip-installed `screen`, far from
../shared, ranks against the same hull as a run beside the repository.

It also holds the bundled model's prediction of each compound phase
(`pred_formation_energy_per_atom`; the model's hash is in references.json): a hypothetical
candidate of the same composition is then measured against the known crystal (pred_de_vs_known,
screening/anchors.py) with no structure to ship or predict at run time.

    python -m screening.data.build_references [--data ../shared/data/mp_dev.csv.gz]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path

import pandas as pd

OUT = Path(__file__).with_name("references.csv.gz")
ABOUT = Path(__file__).with_name("references.json")  # what it was built from


def hull_phases(df: pd.DataFrame) -> pd.DataFrame:
    from screening.formula import element_set
    from screening.rank import ReferencePhases

    refs = ReferencePhases(df.formula, df.formation_energy_per_atom, df.material_id)
    systems = {element_set(f) for f in df.formula.unique()}
    stable = set()
    for system in sorted(systems, key=sorted):
        stable |= {p.name for p in refs.hull(system).stable}
    keep = [f"{i}|{f}" in stable for i, f in zip(df.material_id, df.reduced)]
    return df[keep][["material_id", "formula", "formation_energy_per_atom"]].sort_values("material_id")


def model_predictions(data: str, ids, model_path=None):
    """The model's ΔEf of the crystals `ids` of the data file (CIF column), and the model's hash."""
    import numpy as np

    from screening.ensemble import load_model
    from screening.featurize import featurize
    from screening.model_info import default_model_path
    from screening.structures import structure_from_cif_text

    model = load_model(model_path or default_model_path())
    want = set(ids)
    cifs = {}
    for chunk in pd.read_csv(data, usecols=["material_id", "cif"], chunksize=4000):
        for i, cif in zip(chunk.material_id, chunk.cif):
            if i in want:
                cifs[i] = cif
    column = model.outputs.index("formation_energy_per_atom")
    out = {}
    order = sorted(cifs)
    for start in range(0, len(order), 1000):
        part = order[start:start + 1000]
        graphs = [featurize(structure_from_cif_text(cifs[i], i), model.featurizer) for i in part]
        mean, _ = model.predict_graphs(graphs)
        out.update(zip(part, mean[:, column].astype(float)))
        print(f"predicted {start + len(part)} of {len(order)}", flush=True)
    return pd.Series([out.get(i, np.nan) for i in ids], index=ids), model.hash


def main():
    from pymatgen.core import Composition

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "mp_dev.csv.gz"))
    ap.add_argument("--model", default=None, help="the model whose predictions the table holds (default: bundled)")
    args = ap.parse_args()
    df = pd.read_csv(args.data, usecols=["material_id", "formula", "formation_energy_per_atom"])
    df = df[df.formation_energy_per_atom.notna()]
    df["reduced"] = df.formula.map(lambda f: Composition(f).reduced_formula)
    table = hull_phases(df)
    compounds = [len(Composition(f)) > 1 for f in table.formula]
    pred, model_hash = model_predictions(args.data, list(table.material_id[compounds]), args.model)
    table["pred_formation_energy_per_atom"] = table.material_id.map(pred).round(5)
    sha = hashlib.sha256(Path(args.data).read_bytes()).hexdigest()[:16]
    with open(OUT, "wb") as f:  # gzip with a fixed mtime, so the same data gives the same bytes
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
            gz.write(table.to_csv(index=False).encode())
    ABOUT.write_text(json.dumps({"data": Path(args.data).name, "sha256": sha, "entries": len(table),
                                 "of": len(df), "what": "phases on the convex hull of their chemical system",
                                 "pred_model_hash": model_hash,
                                 "command": "python -m screening.data.build_references"}, indent=1) + "\n")
    print(f"{len(table)} of {len(df)} entries on the hull of their system; wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
