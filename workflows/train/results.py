"""Finished experiment runs as one table, and the statistics the report compares them with.

Every number is a mean +- sample std over the seeds of runs that differ only in their seed.
Differences between two arms are paired by seed (both arms of a seed share the split), and
called "clear" only when a two-sided paired t-test over the seeds rejects "no difference" at 5%.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import pandas as pd

from workflows.train.experiment_spec import SHORT


def results_table(results: List[dict]) -> pd.DataFrame:
    """One row per finished run: its settings, test metrics (short task names) and learned weights."""
    rows = []
    for r in results:
        run = dict(r["run"])
        row = {"dir": r["dir"], "groups": "+".join(r.get("groups", [])),
               "label": "+".join(SHORT.get(t, t) for t in run.pop("tasks")), **run,
               "best_epoch": r["best_epoch"], "val_score": r["val_score"], "train_seconds": r["train_seconds"],
               "n_train": r.get("n_train"), "n_val": r.get("n_val"), "n_test": r.get("n_test")}
        row["task_weights"] = ",".join(map(str, run["task_weights"])) if run.get("task_weights") else ""
        for k, v in r["test"].items():
            for col, short in SHORT.items():
                k = k.replace(col, short)
            row[k] = v
        row["spearman_Ef"] = row.pop("spearman_formation_energy", np.nan)
        row["auc_nonmetal"] = row.get("auc_nonmetal", np.nan)
        for col, w in r.get("weights_at_best", {}).items():
            row[f"weight_{SHORT.get(col, col)}"] = w
        rows.append(row)
    return pd.DataFrame(rows)


SETTINGS = ["label", "weighting", "train_fraction", "epochs", "batch_size", "lr", "weight_decay", "schedule",
            "patience", "atom_fea_len", "n_conv", "h_fea_len", "n_h", "task_weights"]


def base_settings(df: pd.DataFrame, group: str) -> dict:
    """The shared settings of a group (e.g. epochs, model size) used to pick comparable runs."""
    g = df[df.groups.str.split("+").apply(lambda gs: group in gs)]
    keep = [c for c in SETTINGS if c not in ("label", "weighting", "train_fraction") and g[c].nunique() == 1]
    return {c: g[c].iloc[0] for c in keep} if len(g) else {}


def select(df, base: dict, **where) -> pd.DataFrame:
    m = np.ones(len(df), bool)
    for k, v in {**base, **where}.items():
        m &= np.asarray(np.isclose(df[k], v) if isinstance(v, float) else (df[k] == v))
    return df[m].sort_values("seed")


def by_seed(rows: pd.DataFrame, col: str) -> pd.Series:
    return rows.set_index("seed")[col].dropna() if col in rows else pd.Series(dtype=float)


def mean_std(values: Sequence[float]) -> Tuple[float, float, int]:
    v = np.asarray(list(values), float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v)


def fmt(mean, std, digits=4) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if np.isfinite(std) else f"{mean:.{digits}f}"


def paired(a: pd.Series, b: pd.Series) -> Tuple[float, str, int]:
    """Mean of (a - b) over shared seeds and whether it is clear of the seed-to-seed noise."""
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        return float("nan"), "no data", 0
    d = np.array([a[s] - b[s] for s in seeds])
    if len(d) < 2:
        return float(d.mean()), "one seed", 1
    from scipy.stats import t as student_t

    se = d.std(ddof=1) / np.sqrt(len(d))
    critical = student_t.ppf(0.975, len(d) - 1)  # two-sided paired t-test at 5%
    return float(d.mean()), ("clear" if abs(d.mean()) > critical * se else "within noise"), len(d)


def pct(new: float, old: float) -> str:
    return f"{100 * (new - old) / old:+.1f}%" if np.isfinite(new) and np.isfinite(old) and old else "—"


def seeds_text(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def verdict(holds: bool, clear: str) -> str:
    if clear in ("one seed", "no data"):
        return ("holds" if holds else "does not hold") + f" ({clear})"
    if clear == "clear":
        return "holds (clear)" if holds else "does not hold (clear)"
    return "holds in direction, within noise" if holds else "does not hold, within noise"
