"""Build the reference table that ships with screen: `screening/data/references.csv.gz`.

The phases on the convex hull of ../shared/data/mp_dev.csv.gz (Materials Project DFT formation
energies): for every chemical system in the file, the entries its own phase diagram keeps
stable. A candidate's E_hull needs only these, so a pip-installed `screen`, far from
../shared, ranks against the same hull as a run beside the repository.

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


def main():
    from pymatgen.core import Composition

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "mp_dev.csv.gz"))
    args = ap.parse_args()
    df = pd.read_csv(args.data, usecols=["material_id", "formula", "formation_energy_per_atom"])
    df = df[df.formation_energy_per_atom.notna()]
    df["reduced"] = df.formula.map(lambda f: Composition(f).reduced_formula)
    table = hull_phases(df)
    sha = hashlib.sha256(Path(args.data).read_bytes()).hexdigest()[:16]
    with open(OUT, "wb") as f:  # gzip with a fixed mtime, so the same data gives the same bytes
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
            gz.write(table.to_csv(index=False).encode())
    ABOUT.write_text(json.dumps({"data": Path(args.data).name, "sha256": sha, "entries": len(table),
                                 "of": len(df), "what": "phases on the convex hull of their chemical system",
                                 "command": "python -m screening.data.build_references"}, indent=1) + "\n")
    print(f"{len(table)} of {len(df)} entries on the hull of their system; wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
