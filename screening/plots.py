"""The picture of a screening run: predicted E_hull vs band gap, coloured by class."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def hull_vs_gap(table: pd.DataFrame, path, title: str = "", label_top: int = 10) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    colours = {"metal": "#d95f02", "non-metal": "#1b9e77"}
    for cls, part in table.groupby("pred_class") if "pred_class" in table else [("all", table)]:
        xerr, yerr = part.get("pred_band_gap_std"), part.get("pred_e_above_hull_std")
        if xerr is not None:  # a band gap is >= 0: its bar stops there
            xerr = [np.minimum(xerr, part["pred_band_gap"].clip(lower=0)), xerr]
        if yerr is not None and (yerr > 0).any():  # ensemble std: one standard deviation each way
            ax.errorbar(part["pred_band_gap"], part["pred_e_above_hull"], xerr=xerr, yerr=yerr, fmt="none",
                        ecolor=colours.get(cls, "#7570b3"), elinewidth=0.6, alpha=0.35)
        ax.scatter(part["pred_band_gap"], part["pred_e_above_hull"], s=14, alpha=0.7,
                   c=colours.get(cls, "#7570b3"), label=f"{cls} ({len(part)})")
    if "dft_is_stable" in table:  # the source (MP) says these are on its hull: known, not discoveries
        known = table[table["dft_is_stable"].eq(True)]
        ax.scatter(known["pred_band_gap"], known["pred_e_above_hull"], s=22, marker="x", c="#333333",
                   linewidths=0.9, label=f"on MP's hull, DFT ({len(known)})")
    # the head of the ranking as the run ranked it (by P(stable) unless --rank-by e_above_hull)
    top = table.nsmallest(label_top, "rank") if "rank" in table else table.nsmallest(label_top, "pred_e_above_hull")
    ax.scatter(top["pred_band_gap"], top["pred_e_above_hull"], s=40, facecolors="none", edgecolors="black",
               linewidths=0.8, label=f"top {len(top)} of the ranking")
    for _, row in top.iterrows():
        ax.annotate(row["formula"], (row["pred_band_gap"], row["pred_e_above_hull"]),
                    fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("predicted band gap Eg (eV)")
    ax.set_ylabel("predicted energy above hull (eV/atom)")
    if "pred_e_above_hull_std" in table and (table["pred_e_above_hull_std"] > 0).any():
        ax.text(0.99, 0.01, "bars: 1 sigma (ensemble std, calibrated; E_hull of unrelaxed candidates widened)",
                transform=ax.transAxes, ha="right", va="bottom",
                fontsize=7, color="grey")
    ax.set_title(title or "screening candidates", fontsize=10)
    ax.legend(loc="best", frameon=True, framealpha=0.85, fontsize=8)
    return _save(fig, path, dpi=120)


def learning_curves(histories: dict, path, title: str = "") -> Path:
    """Validation MAE per task against epoch, one line per run ({name: metrics.csv table})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({c[len("val_mae_"):] for h in histories.values() for c in h.columns if c.startswith("val_mae_")})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for name, h in histories.items():
            if f"val_mae_{task}" in h:
                ax.plot(h["epoch"], h[f"val_mae_{task}"], lw=1, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation MAE, {task}")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi=110)


def _save(fig, path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
