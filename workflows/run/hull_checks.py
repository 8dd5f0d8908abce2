"""What a run checks of each candidate's hull beyond its E_hull: known polymorphs as anchors
(screening/anchors.py) and reference coverage (thin systems: sub-systems without any reference phase).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pandas as pd

from screening import anchors as anchoring
from screening.references import SHIPPED, _csv_path
from screening.thin import DROP_TOLERANCE, PROBE_ENERGY
from workflows.run.hulls import choose_reference
from screening.uncertainty import STAGES

THIN = "thin_references"  # flag: a sub-system without reference phases may leave this E_hull too low
THIN_DROP = "thin_hull_drop"  # eV/atom: how far the hull falls with the thin sub-systems probed (screening/thin.py)


def load_anchors(opts, source, model, table: pd.DataFrame) -> Tuple[Dict[str, anchoring.Anchor], Optional[str]]:
    """(anchors of the table's hypothetical candidates, why there are none or "shipped")."""
    formulas = anchoring.candidate_formulas(table)
    if not formulas:
        return {}, None
    spec = choose_reference(opts.reference, opts.source or source.name)
    if _csv_path(spec) != SHIPPED:
        return {}, (f"anchors: none (the reference phases, {spec}, hold no model predictions of the known crystals; "
                    f"the shipped table does)")
    return anchoring.shipped_anchors(Path(SHIPPED), model.hash, formulas)


def with_anchors(table: pd.DataFrame, anchors: Dict[str, anchoring.Anchor]) -> pd.DataFrame:
    return anchoring.attach(table, anchors) if anchors else table


def flag_thin(table: pd.DataFrame, thin: Dict[str, List[str]], drops: Dict[str, float]) -> pd.DataFrame:
    """The table with THIN_DROP (where the run has thin systems), and THIN added to the flags of the
    candidates whose hull falls by more than DROP_TOLERANCE with them probed."""
    if not thin:
        return table
    t = table.copy()
    t[THIN_DROP] = [drops.get(f, 0.0) for f in t["formula"]]
    hit = t[THIN_DROP].to_numpy(float) > DROP_TOLERANCE
    t["flags"] = [("; ".join(filter(None, [f, THIN])) if h else f) for f, h in zip(t["flags"].fillna(""), hit)]
    return t


def thin_note(thin: Dict[str, List[str]], flagged: int, candidates: int) -> Optional[str]:
    """One line: the thin sub-systems, what they were probed with, and how many of the `candidates` it flags."""
    if not thin:
        return None
    subs = sorted({s for v in thin.values() for s in v})
    shown = ", ".join(subs[:12]) + (f" and {len(subs) - 12} more" if len(subs) > 12 else "")
    probed = (f"with phases there as stable as the most stable 5 % of known systems of their kind "
              f"({PROBE_ENERGY['metals']:g} eV/atom between metals, {PROBE_ENERGY['nonmetal']:g} with a nonmetal)")
    if flagged:
        verdict = (f"the hull would fall by more than {DROP_TOLERANCE:g} eV/atom under {flagged} of the {candidates} "
                   f"candidates, so their E_hull may be too low by up to their {THIN_DROP}: flagged {THIN}")
    else:
        verdict = (f"the hull would fall by at most {DROP_TOLERANCE:g} eV/atom under every candidate ({THIN_DROP}): "
                   f"none is flagged {THIN}")
    return (f"thin reference systems: {shown} {'has' if len(subs) == 1 else 'have'} no reference phase; {probed}, "
            f"{verdict} (--reference adds phases)")


def summary(everything: pd.DataFrame, anchors, anchor_why, thin: Dict[str, List[str]],
            system_of: Dict[str, str]) -> dict:
    """summary.json's counts per stage, anchors, flags and thin systems."""
    from screening.rank import BELOW_KNOWN

    stages = everything["stage"].value_counts() if "stage" in everything else pd.Series(dtype=int)
    flags = everything["flags"].fillna("").str.split("; ") if "flags" in everything else pd.Series(dtype=object)
    counts: Dict[str, int] = {}
    for fs in flags:
        for f in fs:
            if f:
                counts[f] = counts.get(f, 0) + 1
    n_anchor = int(everything["anchor_id"].notna().sum()) if "anchor_id" in everything else 0
    return {"stages": {s: int(stages.get(s, 0)) for s in STAGES},
            "with_known_polymorph": n_anchor,
            "anchor_note": anchoring.note(anchors, everything, anchor_why) if (anchors or anchor_why)
            else None,
            "below_known_ground_state": counts.get(BELOW_KNOWN, 0),
            "flag_counts": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
            "thin_systems": {s: thin[s] for s in sorted(thin) if s in set(system_of.values())},
            "thin_note": thin_note(thin, counts.get(THIN, 0), len(everything))}

