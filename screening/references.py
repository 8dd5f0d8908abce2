"""Reference phases for E_hull: known DFT formation energies of a chemical system and its sub-systems.

Where they come from, first match wins:
  1. the run's `reference` (any source spec: local:PATH, mp, ...);
  2. the run's own source, when it is a CSV (it holds every sub-system);
  3. the source's own thermo data (Source.thermo()), when the run's source is mp: the
     Materials Project's, of the same database version as the candidates, in one request
     per run (workflows cache it by database version);
  4. the table that ships with the package, `screening/data/references.csv.gz`: the phases on
     the hull of the project's MP data (17,167 entries; `python -m screening.data.build_references`
     rebuilds it), so an installed `screen` ranks against the same hull anywhere;
  5. nothing (only if that file is missing): the hull is the pure elements alone, and the run says so.
"""
from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import pandas as pd

from screening.errors import ScreenError
from screening.query import parse_query
from screening.rank import ReferencePhases
from screening.sources import open_source

SHIPPED = Path(__file__).with_name("data") / "references.csv.gz"


def _csv_path(spec: Optional[str]) -> Optional[Path]:
    if spec and spec.startswith("local:"):
        p = Path(spec[len("local:"):]).expanduser()
        if p.is_file() and p.name.lower().endswith((".csv", ".csv.gz")):
            return p
    return None


def check_reference(spec: str) -> None:
    """`reference` names a source that opens (its file is there), before a run does any work."""
    try:
        open_source(spec, lazy=True)
    except ScreenError as e:  # the source names itself as `source`: say which setting it was
        reason = str(e).split(": ", 1)[-1]
        raise ScreenError(f"`reference` {spec}: {reason}") from None


def load_references(spec: Optional[str], systems: Iterable[frozenset]) -> Tuple[ReferencePhases, str]:
    """(phases, a one-line description) for the given chemical systems."""
    if spec is None:
        return ReferencePhases([], []), "no reference phases: E_hull is measured against the pure elements only"
    csv = _csv_path(spec)
    if csv is not None:  # one pass over two columns beats a query per sub-system
        df = pd.read_csv(csv, usecols=lambda c: c in ("material_id", "formula", "formation_energy_per_atom"))
        ids = df.material_id.astype(str) if "material_id" in df else None
        return ReferencePhases(df.formula, df.formation_energy_per_atom, ids), csv_note(spec)
    source = open_source(spec, lazy=True)
    thermo = source.thermo()
    if thermo is not None:  # the source's own reference phases (the Materials Project's: one request)
        return from_thermo(source, thermo.fetch(subsystems(systems)), fetched=True)
    formulas, energies, ids = [], [], []
    for sub in subsystems(systems):
        for c in source.fetch(parse_query(sub)):
            if c.problem is not None:  # a reference phase that cannot be read: the hull would lack it
                raise ScreenError(f"`reference` {spec}: {c.problem}")
            formulas.append(c.formula)
            energies.append(c.known.get("formation_energy_per_atom", float("nan")))
            ids.append(c.id)
    return ReferencePhases(formulas, energies, ids), f"reference phases: {spec} ({len(formulas)} entries)"


def csv_phase_count(spec: str) -> int:
    """How many phases load_references(spec) holds for a CSV spec (its rows with a finite formation
    energy), counted without building them."""
    import numpy as np

    energies = pd.read_csv(_csv_path(spec), usecols=["formation_energy_per_atom"]).formation_energy_per_atom
    return int(np.isfinite(energies.to_numpy(float)).sum())


def csv_note(spec: str) -> str:
    """The one-line description of a CSV's reference phases (without reading them)."""
    if _csv_path(spec) == SHIPPED:
        about = json.loads(SHIPPED.with_suffix("").with_suffix(".json").read_text())
        return (f"reference phases: the table shipped with screen ({about['entries']} {about['what']} "
                f"in {about['data']} sha256={about['sha256']})")
    return f"reference phases: {spec}"


def csv_version(spec: Optional[str]) -> Optional[str]:
    """The CSV spec with its file's hash (what hulls computed from it are cached under); None if no CSV."""
    csv = _csv_path(spec)
    if csv is None:
        return None
    from screening.sources.local import LocalSource

    return f"references {LocalSource(csv).describe()}"


def subsystems(systems: Iterable[frozenset]) -> List[str]:
    """Every chemical system the hulls of `systems` need ("Li-O", "Li", ...), sorted."""
    return sorted({"-".join(sub) for s in systems for k in range(1, len(s) + 1)
                   for sub in combinations(sorted(s), k)})


def from_thermo(source, thermo: Dict[str, list], fetched: bool) -> Tuple[ReferencePhases, str]:
    """(phases, note) from an MP source's thermo().fetch() answer ({system: [(id, formula, energy)]})."""
    from screening.sources.mp import FUNCTIONALS

    rows = [r for system in sorted(thermo) for r in thermo[system]]
    settings = source.settings()
    gnome = "included" if settings["gnome"] == "included" else "left out"
    note = (f"reference phases: Materials Project thermo data (db_version {settings['db_version']}): "
            f"{len(rows)} entries in {len(thermo)} chemical systems, {FUNCTIONALS}; deprecated entries left out, "
            f"GNoME entries {gnome}; {'fetched now' if fetched else 'from the cache'}")
    return ReferencePhases([r[1] for r in rows], [r[2] for r in rows], [r[0] for r in rows]), note
