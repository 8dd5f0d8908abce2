"""Known polymorphs as anchors for hypothetical candidates.

Where the reference phases hold a known crystal of a candidate's reduced composition, the
lowest-energy one is its anchor. A run reports the candidate's energy against it
(pred_de_vs_known, screening/rank.py) and flags a candidate predicted more than 2σ below an
anchor on the hull: a new polymorph that far below a known ground state is far more often a
model error than a discovery.

The bias-cancelled estimate, anchored_formation_energy, would be the better one if the model's
error on a prototype were a bias the known crystal shares. benchmarks/rediscovery.py scores it
against the model's own ΔEf of the same candidates, and it separates stable from unstable ones
worse (the errors of a candidate and of its anchor hardly correlate, so subtracting the anchor's
adds its error), and no σ fitted on it meets the calibration lines out of fold. So a run's E_hull
never uses it.

The model's prediction of the anchor is stored beside the reference phase when the table is built
(screening/data/build_references.py), with the hash of the model that made it: a run with another
model has no anchors (it says so) rather than mixing two models' biases.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import numpy as np
import pandas as pd

from screening.formula import formula_info
from screening.rank import ANCHOR_DFT, ANCHOR_ID, ANCHOR_ON_HULL, ANCHOR_PRED, BELOW_KNOWN
from screening.uncertainty import KNOWN

PRED = "pred_formation_energy_per_atom"  # the reference table's column of the model's predictions
_SYMBOL = re.compile(r"[A-Z][a-z]?")


@dataclass
class Anchor:
    id: str
    dft: float  # DFT ΔEf, eV/atom
    pred: float  # the model's ΔEf of the same crystal
    on_hull: bool


def anchors_from_table(df: pd.DataFrame, formulas: Iterable[str], on_hull: bool) -> Dict[str, Anchor]:
    """{reduced formula: lowest-DFT-energy phase of it} for the candidates' formulas, from a
    reference table with material_id, formula, formation_energy_per_atom and PRED columns."""
    wanted = {info[1]: info[0] for info in map(formula_info, set(formulas)) if info is not None}
    systems = set(wanted.values())
    out: Dict[str, Anchor] = {}
    for i, f, dft, pred in zip(df.material_id, df.formula, df.formation_energy_per_atom, df[PRED]):
        if not (np.isfinite(dft) and np.isfinite(pred)) or frozenset(_SYMBOL.findall(f)) not in systems:
            continue  # the cheap test first: a regex, not a parse
        reduced = formula_info(f)[1]
        if reduced in wanted and (reduced not in out or dft < out[reduced].dft):
            out[reduced] = Anchor(str(i), float(dft), float(pred), on_hull)
    return out


def shipped_anchors(path: Path, model_hash: str, formulas: Iterable[str]) -> Tuple[Dict[str, Anchor], str]:
    """(anchors, a one-line note) from the shipped reference table, if its predictions are this model's."""
    about = json.loads(path.with_suffix("").with_suffix(".json").read_text())
    if about.get("pred_model_hash") != model_hash:
        return {}, ("anchors: none (the shipped reference table holds another model's predictions; "
                    "E_hull from this model's ΔEf alone)")
    df = pd.read_csv(path, usecols=["material_id", "formula", "formation_energy_per_atom", PRED])
    # every phase of the shipped table is on the hull of its system (build_references.py)
    return anchors_from_table(df, formulas, on_hull=True), "shipped"


def attach(table: pd.DataFrame, anchors: Dict[str, Anchor]) -> pd.DataFrame:
    """The table with the anchor columns filled for rows that are not known crystals themselves."""
    t = table.copy()
    reduced = [None if s == KNOWN else (formula_info(f) or (None, None))[1] for f, s in zip(t.formula, t.stage)]
    found = [anchors.get(r) for r in reduced]
    t[ANCHOR_ID] = [a.id if a else np.nan for a in found]
    t[ANCHOR_DFT] = [a.dft if a else np.nan for a in found]
    t[ANCHOR_PRED] = [a.pred if a else np.nan for a in found]
    t[ANCHOR_ON_HULL] = [a.on_hull if a else False for a in found]
    return t


def anchored_formation_energy(anchor_dft, anchor_pred, pred):
    """The bias-cancelled ΔEf of a candidate: DFT ΔEf(anchor) + [pred ΔEf(candidate) - pred ΔEf(anchor)]
    (arrays or numbers). Measured by benchmarks/rediscovery.py; runs do not use it (see above)."""
    return np.asarray(anchor_dft, float) + (np.asarray(pred, float) - np.asarray(anchor_pred, float))


def note(anchors: Dict[str, Anchor], table: pd.DataFrame, why: Optional[str] = None) -> str:
    n = int(table[ANCHOR_ID].notna().sum()) if ANCHOR_ID in table else 0
    if why and why != "shipped":
        return why
    return (f"anchors: {n} hypothetical candidates have a known crystal of their composition among the reference "
            f"phases ({len(anchors)} compositions); pred_de_vs_known is their predicted ΔEf minus the model's ΔEf "
            f"of it, and those more than 2σ below one on the hull are flagged {BELOW_KNOWN}")


def candidate_formulas(table: pd.DataFrame) -> list:
    return sorted(set(table.loc[table["stage"] != KNOWN, "formula"])) if len(table) else []

