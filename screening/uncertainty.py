"""The E_hull error bar of a candidate, by how far its structure is from a DFT-relaxed one.

The ensemble's std measures how much its members disagree on a structure; it does not know
whether the structure is a relaxed known crystal, a prototype as generated, or a prototype
relaxed with CHGNet. Each of those stages carries its own structure error, measured on
rediscovered prototypes (benchmarks/rediscovery.py) and stored in the model manifest:

    "stage_std": {"unrelaxed": {"scale": s, "add": a}, "relaxed": {...}, "anchored": {...},
                  "fitted_on": "..."}

    E_hull std = hypot(scale * model std, add)

with the "anchored" entry for a candidate whose E_hull is measured from a known crystal of
its composition (screening/anchors.py), else its stage's. A known crystal (stage "known")
is what the model learned from: scale 1, add 0. Where the manifest has no entry, a candidate
takes its stage's (an anchored one too: anchoring does not make a prototype's structure any
better), and unrelaxed candidates without an entry the older single figure, unrelaxed_std,
added in quadrature; relaxed ones nothing.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

KNOWN, UNRELAXED, RELAXED, ANCHORED = "known", "unrelaxed", "relaxed", "anchored"
STAGES = (KNOWN, UNRELAXED, RELAXED)


def stage_terms(stage: str, anchored: bool, stage_std: Optional[dict] = None,
                unrelaxed_std: float = 0.0) -> Tuple[float, float]:
    """(scale, add) of one stage. `unrelaxed_std` (the option or the manifest's older figure) stands
    for the unrelaxed add when the manifest has no stage_std entry for it."""
    if stage == KNOWN:
        return 1.0, 0.0
    entry = (stage_std or {}).get(ANCHORED if anchored else stage)
    if entry is None and anchored:  # no anchored terms: its stage's, so an anchored prototype is no surer
        entry = (stage_std or {}).get(stage)
    if entry is not None:
        return float(entry.get("scale", 1.0)), float(entry.get("add", 0.0))
    return 1.0, float(unrelaxed_std or 0.0) if stage == UNRELAXED else 0.0


def stage_std(model_std, stage, anchored=False, stage_std: Optional[dict] = None,
              unrelaxed_std: float = 0.0) -> np.ndarray:
    """E_hull std per candidate: hypot(scale * model_std, add) with its stage's (scale, add).
    `stage` and `anchored` are per candidate (arrays) or one value for all."""
    model_std = np.asarray(model_std, float)
    n = model_std.shape[0] if model_std.ndim else 1
    stages = np.broadcast_to(np.asarray(stage, object), (n,))
    anchors = np.broadcast_to(np.asarray(anchored, bool), (n,))
    scale, add = np.ones(n), np.zeros(n)
    for i, (s, a) in enumerate(zip(stages, anchors)):
        scale[i], add[i] = stage_terms(s, bool(a), stage_std, unrelaxed_std)
    out = np.hypot(scale * model_std, add)
    return out if model_std.ndim else out[0]


def describe(stage_std: Optional[dict], unrelaxed_std: float = 0.0) -> str:
    """One line for the run's uncertainty note."""
    terms = []
    for key in (UNRELAXED, RELAXED, ANCHORED):
        scale, add = stage_terms(key if key != ANCHORED else RELAXED, key == ANCHORED, stage_std, unrelaxed_std)
        if (scale, add) != (1.0, 0.0):
            terms.append(f"{key} ×{scale:g} ⊕ {add:g} eV/atom")
    if not terms:
        return ""
    source = (stage_std or {}).get("fitted_on")
    return "; per stage: " + ", ".join(terms) + (f" (fitted on {source})" if source else "")
