"""Evaluation metrics (paper sec. 4.4-4.5): MAE, Spearman rho, metal/non-metal ROC-AUC."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from screening.properties import METAL_GAP_EV, is_metal


def _finite(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    ok = np.isfinite(y_true) & np.isfinite(y_pred)
    return y_true[ok], y_pred[ok]


def mae(y_true, y_pred) -> float:
    t, p = _finite(y_true, y_pred)
    return float(np.mean(np.abs(t - p))) if len(t) else float("nan")


def spearman(y_true, y_pred) -> float:
    """Pearson correlation of the (average-tie) ranks."""
    t, p = _finite(y_true, y_pred)
    if len(t) < 2:
        return float("nan")
    rt, rp = rankdata(t), rankdata(p)
    rt, rp = rt - rt.mean(), rp - rp.mean()
    denom = np.sqrt((rt**2).sum() * (rp**2).sum())
    return float((rt * rp).sum() / denom) if denom > 0 else float("nan")


def roc_auc(labels, scores) -> float:
    """Probability that a random positive scores above a random negative (ties count 1/2)."""
    labels = np.asarray(labels, bool)
    scores = np.asarray(scores, float)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def nonmetal_auc(true_gap, pred_gap, threshold: float = METAL_GAP_EV) -> float:
    """ROC-AUC of non-metal (true Eg >= threshold) vs metal, predicted Eg as the score."""
    t, p = _finite(true_gap, pred_gap)
    return roc_auc(~is_metal(t, threshold), p)
