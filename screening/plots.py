"""The picture of a screening run: predicted E_hull vs band gap, coloured by class."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def hull_vs_gap(table: pd.DataFrame, path, title: str = "", label_top: int = 10) -> Path:
    fig = hull_vs_gap_figure(table, title, label_top)
    return _save(fig, path, dpi=fig.dpi, layout=False)  # laid out already: the labels were placed on it


def hull_vs_gap_figure(table: pd.DataFrame, title: str = "", label_top: int = 10):
    """Every candidate as a point; the head of the ranking circled, labelled (labels kept apart)
    and with its error bars (a thousand bars would hide the picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.2), dpi=120)
    colours = {"metal": "#d95f02", "non-metal": "#1b9e77"}
    for cls, part in table.groupby("pred_class") if "pred_class" in table else [("all", table)]:
        ax.scatter(part["pred_band_gap"], part["pred_e_above_hull"], s=14, alpha=0.7,
                   c=colours.get(cls, "#7570b3"), label=f"{cls} ({len(part)})")
    if "dft_is_stable" in table:  # the source (MP) says these are on its hull: known, not discoveries
        known = table[table["dft_is_stable"].eq(True)]
        ax.scatter(known["pred_band_gap"], known["pred_e_above_hull"], s=22, marker="x", c="#333333",
                   linewidths=0.9, label=f"on MP's hull, DFT ({len(known)})")
    # the head of the ranking as the run ranked it (by P(stable) unless --rank-by e_above_hull)
    top = table.nsmallest(label_top, "rank") if "rank" in table else table.nsmallest(label_top, "pred_e_above_hull")
    bars = _error_bars(ax, top, colours)
    ax.scatter(top["pred_band_gap"], top["pred_e_above_hull"], s=40, facecolors="none", edgecolors="black",
               linewidths=0.8, label=f"top {len(top)} of the ranking")
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("predicted band gap Eg (eV)")
    ax.set_ylabel("predicted energy above hull (eV/atom)")
    if bars:
        ax.text(0.99, 0.01, f"bars: 1 sigma of the top {len(top)} (ensemble std, calibrated; "
                            f"E_hull of unrelaxed candidates widened)",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="grey")
    ax.set_title(title or "screening candidates", fontsize=10)
    ax.legend(loc="best", frameon=True, framealpha=0.85, fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()  # the axes' final limits and layout, on which the labels are placed
    place_labels(ax, list(zip(top["pred_band_gap"], top["pred_e_above_hull"])), list(top["formula"]))
    return fig


def _error_bars(ax, top: pd.DataFrame, colours: dict) -> bool:
    """1 sigma bars of the highlighted candidates; False where the model gives no std."""
    yerr = top.get("pred_e_above_hull_std")
    if yerr is None or not (yerr > 0).any():
        return False
    xerr = top.get("pred_band_gap_std")
    if xerr is not None:  # a band gap is >= 0: its bar stops there
        xerr = [np.minimum(xerr, top["pred_band_gap"].clip(lower=0)), xerr]
    colour = [colours.get(c, "#7570b3") for c in top["pred_class"]] if "pred_class" in top else "#7570b3"
    ax.errorbar(top["pred_band_gap"], top["pred_e_above_hull"], xerr=xerr, yerr=yerr, fmt="none",
                ecolor=colour, elinewidth=0.8, alpha=0.6)
    return True


# Where a label may go, tried in this order: beside its point (offset in points, alignment), then
# further out with a leader line.
_SPOTS = [(dx * r, dy * r, ha, va) for r in (1, 2.5, 4.5, 7) for dx, dy, ha, va in (
    (4, 2, "left", "bottom"), (4, -2, "left", "top"), (-4, 2, "right", "bottom"), (-4, -2, "right", "top"),
    (0, 4, "center", "bottom"), (0, -4, "center", "top"), (6, 0, "left", "center"), (-6, 0, "right", "center"))]


def place_labels(ax, points, labels, fontsize: float = 7) -> list:
    """Label each point where the label overlaps no label placed before it and no labelled point's
    marker: the first free spot of _SPOTS; the first spot if none is free. Returns the annotations."""
    renderer = ax.figure.canvas.get_renderer()
    to_pixels = ax.transData.transform
    markers = []
    for x, y in points:
        px, py = to_pixels((x, y))
        markers.append((px - 5, py - 5, px + 5, py + 5))
    placed, made = [], []
    for (x, y), text in zip(points, labels):
        chosen = None
        for dx, dy, ha, va in _SPOTS:
            far = abs(dx) > 10 or abs(dy) > 10
            note = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                               fontsize=fontsize, arrowprops=dict(arrowstyle="-", lw=0.5, color="grey") if far
                               else None)
            box = _text_box(note, renderer)
            box = (box.x0 - 2, box.y0 - 2, box.x1 + 2, box.y1 + 2)
            if not any(_overlap(box, other) for other in placed + markers):
                chosen = (note, box)
                break
            note.remove()
        if chosen is None:  # crowded beyond every spot: beside the point
            dx, dy, ha, va = _SPOTS[0]
            note = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                               fontsize=fontsize)
            box = _text_box(note, renderer)
            chosen = (note, (box.x0, box.y0, box.x1, box.y1))
        placed.append(chosen[1])
        made.append(chosen[0])
    return made


def _text_box(note, renderer):
    """The label's own box (an Annotation's extent would include its leader line, which reaches the point)."""
    from matplotlib.text import Text

    note.update_positions(renderer)  # where it goes on this layout (otherwise set at draw time)
    return Text.get_window_extent(note, renderer)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


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


def _save(fig, path, dpi: int, layout: bool = True) -> Path:
    import matplotlib.pyplot as plt

    if layout:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
