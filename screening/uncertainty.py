"""The E_hull error bar of a candidate, by how far its structure is from a DFT-relaxed one.

The ensemble's std measures how much its members disagree on a structure; it does not know
whether the structure is a relaxed known crystal, a prototype as generated, or a prototype
relaxed with CHGNet. Each of those stages carries its own structure error, measured on
rediscovered prototypes (benchmarks/rediscovery.py) and stored in the model manifest:

    "stage_std": {"unrelaxed": {"scale": s, "add": a}, "relaxed": {...}, "fitted_on": "..."}

    E_hull std = hypot(scale * model std, add)

A known crystal (stage "known") is what the model learned from: scale 1, add 0. Where the
manifest has no entry, unrelaxed candidates take the older single figure, unrelaxed_std, added
in quadrature; relaxed ones nothing. (Older manifests also hold an "anchored" entry, for an
E_hull measured from a known polymorph; runs no longer measure it so, and it is not read.)
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

KNOWN, UNRELAXED, RELAXED = "known", "unrelaxed", "relaxed"
STAGES = (KNOWN, UNRELAXED, RELAXED)


def stage_terms(stage: str, stage_std: Optional[dict] = None, unrelaxed_std: float = 0.0) -> Tuple[float, float]:
    """(scale, add) of one stage. `unrelaxed_std` (the option or the manifest's older figure) stands
    for the unrelaxed add when the manifest has no stage_std entry for it."""
    if stage == KNOWN:
        return 1.0, 0.0
    entry = (stage_std or {}).get(stage)
    if entry is not None:
        return float(entry.get("scale", 1.0)), float(entry.get("add", 0.0))
    return 1.0, float(unrelaxed_std or 0.0) if stage == UNRELAXED else 0.0


def stage_std(model_std, stage, stage_std: Optional[dict] = None, unrelaxed_std: float = 0.0) -> np.ndarray:
    """E_hull std per candidate: hypot(scale * model_std, add) with its stage's (scale, add).
    `stage` is per candidate (an array) or one value for all."""
    model_std = np.asarray(model_std, float)
    n = model_std.shape[0] if model_std.ndim else 1
    stages = np.broadcast_to(np.asarray(stage, object), (n,))
    scale, add = np.ones(n), np.zeros(n)
    for i, s in enumerate(stages):
        scale[i], add[i] = stage_terms(s, stage_std, unrelaxed_std)
    out = np.hypot(scale * model_std, add)
    return out if model_std.ndim else out[0]


def describe(stage_std: Optional[dict], unrelaxed_std: float = 0.0) -> str:
    """One line for the run's uncertainty note."""
    terms = []
    for key in (UNRELAXED, RELAXED):
        scale, add = stage_terms(key, stage_std, unrelaxed_std)
        if (scale, add) != (1.0, 0.0):
            terms.append(f"{key} ×{scale:g} ⊕ {add:g} eV/atom")
    if not terms:
        return ""
    source = (stage_std or {}).get("fitted_on")
    return "; per stage: " + ", ".join(terms) + (f" (fitted on {source})" if source else "")


# -- calibration: the (scale, add) of a stage, fitted on rediscovered prototypes (benchmarks/rediscovery.py) --

# The lines an error bar must meet (issue 25): |error| <= σ for 60-75 % of candidates, <= 2σ for >= 90 %.
# A fit first looks inside a narrower window, so that σ fitted on some chemical systems still meets the
# lines on others (the half-width of the margin is about the sampling spread of a held-out fold's coverage);
# only where nothing meets it, the lines themselves.
WINDOWS = ((0.64, 0.72, 0.92), (0.60, 0.75, 0.90))  # (1σ low, 1σ high, 2σ at least)
SCALES = np.round(np.arange(0.0, 6.001, 0.1), 3)
ADDS = np.round(np.arange(0.0, 0.5001, 0.005), 4)


def probability_below(mean, std, within: float = 0.0, df: Optional[float] = None) -> np.ndarray:
    """P(E_hull <= within) for E_hull = mean + std x a standard Normal (df None), or a Student-t of df
    degrees of freedom (heavier tails, for the benchmark's comparison). The Normal is rank.p_stable's."""
    from scipy.special import stdtr

    from screening.rank import p_stable

    if df is None:
        return p_stable(mean, std, within)
    with np.errstate(divide="ignore", invalid="ignore"):
        return stdtr(df, (within - np.asarray(mean, float)) / np.asarray(std, float))


def grouped_folds(groups, k: int = 5) -> np.ndarray:
    """Fold number (0..k-1) per row; every row of a group (a chemical system) in one fold, so a fold
    held out is a set of systems the fit never saw. Groups are dealt round-robin in the order of a
    hash of their name: the same folds on every run, whatever order the rows come in."""
    import hashlib

    names = [str(g) for g in groups]
    order = sorted(set(names), key=lambda g: (hashlib.sha256(g.encode()).hexdigest(), g))
    fold = {g: i % k for i, g in enumerate(order)}
    return np.array([fold[g] for g in names], int)


def fit_stage_std(model_std, pred_e_hull, true_e_hull, df: Optional[float] = None) -> Tuple[float, float]:
    """(scale, add) of σ = hypot(scale x model_std, add) on a grid (SCALES x ADDS): among those whose
    coverage of |pred - true| lies in the first window of WINDOWS that any meets, the lowest Brier score
    of P(true E_hull <= 0). Brier, not the likelihood: the window already fixes σ's width, and what σ is
    for beyond the bar is P(stable), which the Brier score scores directly (the likelihood would also
    weigh how well σ fits errors far from the stability line). Nothing in any window: the nearest to
    68.3 % within 1σ, with a shortfall below 90 % within 2σ weighing three times."""
    std, pred, true = (np.asarray(a, float) for a in (model_std, pred_e_hull, true_e_hull))
    sigma = np.hypot(SCALES[:, None, None] * std, ADDS[None, :, None])
    sigma[0, 0] = np.nan  # scale 0 and add 0: no error bar
    err = np.abs(pred - true)
    with np.errstate(invalid="ignore"):
        c1, c2 = np.mean(err <= sigma, -1), np.mean(err <= 2 * sigma, -1)
        brier = np.mean((probability_below(pred, sigma, 0.0, df) - (true <= 0)) ** 2, -1)
    brier[0, 0] = np.inf
    for low, high, two in WINDOWS:
        inside = (c1 >= low) & (c1 <= high) & (c2 >= two)
        if inside.any():
            i, j = np.unravel_index(np.argmin(np.where(inside, brier, np.inf)), brier.shape)
            return float(SCALES[i]), float(ADDS[j])
    miss = np.abs(c1 - 0.6827) + 3 * np.maximum(0.0, 0.90 - c2)
    miss[0, 0] = np.inf
    i, j = np.unravel_index(np.argmin(miss), miss.shape)
    return float(SCALES[i]), float(ADDS[j])


def out_of_fold_std(model_std, pred_e_hull, true_e_hull, folds, df: Optional[float] = None):
    """(σ per row, [(scale, add) per fold]): each fold's σ from the terms fitted on the other folds."""
    std, pred, true, folds = (np.asarray(a) for a in (model_std, pred_e_hull, true_e_hull, folds))
    sigma = np.full(len(std), np.nan)
    terms = []
    for f in np.unique(folds):
        held = folds == f
        scale, add = fit_stage_std(std[~held], pred[~held], true[~held], df)
        sigma[held] = np.hypot(scale * std[held].astype(float), add)
        terms.append((scale, add))
    return sigma, terms
