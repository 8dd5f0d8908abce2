"""Evaluation on held-out crystals: MAE per task, Spearman rho (dEf), metal/non-metal AUC, parity plots."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from screening.metrics import mae, nonmetal_auc, spearman
from screening.properties import BAND_GAP as GAP
from screening.properties import FORMATION_ENERGY as FORMATION
from screening.properties import METAL_GAP_EV, UNITS


def evaluate_predictions(tasks, true: np.ndarray, pred: np.ndarray, gap_threshold=METAL_GAP_EV,
                         p_metal=None) -> Dict[str, float]:
    """MAE per task, Spearman rho of dEf, metal/non-metal ROC-AUC.

    With a metal head (p_metal given) auc_nonmetal scores 1 - P(metal); the AUC of the
    regressed gap as the score is kept as auc_nonmetal_from_gap for comparison.
    """
    out: Dict[str, float] = {"n": int(len(true))}
    for k, t in enumerate(tasks):
        out[f"mae_{t}"] = mae(true[:, k], pred[:, k])
    if FORMATION in tasks:
        k = tasks.index(FORMATION)
        out["spearman_formation_energy"] = spearman(true[:, k], pred[:, k])
    if GAP in tasks:
        k = tasks.index(GAP)
        from_gap = nonmetal_auc(true[:, k], pred[:, k], gap_threshold)
        if p_metal is None:
            out["auc_nonmetal"] = from_gap
        else:
            out["auc_nonmetal"] = nonmetal_auc(true[:, k], 1.0 - np.asarray(p_metal, float), gap_threshold)
            out["auc_nonmetal_from_gap"] = from_gap
    return out


def calibration(tasks, true: np.ndarray, mean: np.ndarray, std: np.ndarray) -> Dict[str, float]:
    """Fraction of errors within 1 and 2 predicted std per task (a Gaussian would give 0.683 and 0.954)."""
    out: Dict[str, float] = {}
    for k, t in enumerate(tasks):
        ok = np.isfinite(true[:, k])
        err, s = np.abs(true[ok, k] - mean[ok, k]), std[ok, k]
        out[f"within_1std_{t}"] = float(np.mean(err <= s)) if ok.any() else float("nan")
        out[f"within_2std_{t}"] = float(np.mean(err <= 2 * s)) if ok.any() else float("nan")
        out[f"mean_std_{t}"] = float(np.mean(s)) if ok.any() else float("nan")
    return out


def parity_plots(tasks, true: np.ndarray, pred: np.ndarray, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4.2), squeeze=False)
    for k, (t, ax) in enumerate(zip(tasks, axes[0])):
        ok = np.isfinite(true[:, k])
        x, y = true[ok, k], pred[ok, k]
        ax.hexbin(x, y, gridsize=60, bins="log", cmap="viridis", mincnt=1)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], "r--", lw=1)
        unit = UNITS.get(t, "")
        ax.set_xlabel(f"DFT {t} ({unit})")
        ax.set_ylabel(f"predicted ({unit})")
        ax.set_title(f"{t}\nMAE {mae(x, y):.3f} {unit}, n={ok.sum()}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
