"""Reference phases for E_hull: known DFT formation energies of a chemical system and its sub-systems.

Where they come from, first match wins:
  1. `--reference SPEC` (any source spec: local:PATH, mp, ...);
  2. the run's own source, when it is a CSV (it holds every sub-system);
  3. the shared MP data beside the repository (../shared/data/mp_dev.csv.gz), if present;
  4. nothing: the hull is then made of the pure elements alone, and the run says so.
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Iterable, Optional, Tuple

import pandas as pd

from screening.query import parse_query
from screening.rank import ReferencePhases
from screening.sources import open_source

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp_dev.csv.gz"


def _csv_path(spec: Optional[str]) -> Optional[Path]:
    if spec and spec.startswith("local:"):
        p = Path(spec[len("local:"):]).expanduser()
        if p.is_file() and p.name.lower().endswith((".csv", ".csv.gz")):
            return p
    return None


def choose_reference(reference: Optional[str], source: Optional[str]) -> Optional[str]:
    if reference:
        return reference
    if _csv_path(source):
        return source
    if SHARED_DATA.exists():
        return f"local:{SHARED_DATA}"
    return None


def load_references(spec: Optional[str], systems: Iterable[frozenset]) -> Tuple[ReferencePhases, str]:
    """(phases, a one-line description) for the given chemical systems."""
    if spec is None:
        return ReferencePhases([], []), "no reference phases: E_hull is measured against the pure elements only"
    csv = _csv_path(spec)
    if csv is not None:  # one pass over two columns beats a query per sub-system
        df = pd.read_csv(csv, usecols=lambda c: c in ("material_id", "formula", "formation_energy_per_atom"))
        ids = df.material_id.astype(str) if "material_id" in df else None
        return ReferencePhases(df.formula, df.formation_energy_per_atom, ids), f"reference phases: {spec}"
    source = open_source(spec, lazy=True)
    subsystems = {frozenset(sub) for s in systems for k in range(1, len(s) + 1)
                  for sub in combinations(sorted(s), k)}
    formulas, energies, ids = [], [], []
    for sub in sorted(subsystems, key=sorted):
        for c in source.fetch(parse_query("-".join(sorted(sub)))):
            formulas.append(c.formula)
            energies.append(c.known.get("formation_energy_per_atom", float("nan")))
            ids.append(c.id)
    return ReferencePhases(formulas, energies, ids), f"reference phases: {spec} ({len(formulas)} entries)"
