"""hull_vs_gap.png stays readable with a thousand candidates: error bars on the highlighted
head of the ranking only, and its labels kept apart even when the points crowd together."""
import numpy as np
import pandas as pd
from matplotlib.container import ErrorbarContainer
from matplotlib.text import Text

from screening.plots import hull_vs_gap, hull_vs_gap_figure


def crowded(n=1000, seed=0):
    """n candidates with error bars; the top ten all within 0.02 eV and 0.005 eV/atom of each other."""
    rng = np.random.default_rng(seed)
    t = pd.DataFrame({"rank": np.arange(1, n + 1), "formula": [f"Li{i}FeO{i % 7 + 1}" for i in range(n)],
                      "pred_band_gap": rng.uniform(0, 5, n), "pred_e_above_hull": rng.uniform(-0.2, 2, n),
                      "pred_band_gap_std": rng.uniform(0.1, 1, n), "pred_e_above_hull_std": rng.uniform(0.05, 0.2, n),
                      "pred_class": rng.choice(["metal", "non-metal"], n)})
    t.loc[:9, "pred_band_gap"] = 1.5 + rng.uniform(0, 0.02, 10)
    t.loc[:9, "pred_e_above_hull"] = -0.1 + rng.uniform(0, 0.005, 10)
    return t


def label_boxes(fig):
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [a for a in ax.texts if a.get_text().startswith("Li")]
    return labels, [Text.get_window_extent(a, renderer) for a in labels]


def test_only_the_top_ten_have_error_bars_and_their_labels_do_not_overlap(tmp_path):
    t = crowded()
    fig = hull_vs_gap_figure(t, title="crowded", label_top=10)
    fig.canvas.draw()  # the positions as saved
    bars = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1
    x_bars, y_bars = bars[0].lines[2]
    assert len(x_bars.get_segments()) == len(y_bars.get_segments()) == 10
    labels, boxes = label_boxes(fig)
    assert sorted(a.get_text() for a in labels) == sorted(t.formula[:10])
    overlapping = [(a.get_text(), b.get_text()) for i, (a, p) in enumerate(zip(labels, boxes))
                   for b, q in zip(labels[i + 1:], boxes[i + 1:]) if p.overlaps(q)]
    assert overlapping == []
    # each label still points at its own candidate
    for a in labels:
        row = t[t.formula == a.get_text()].iloc[0]
        assert a.xy == (row.pred_band_gap, row.pred_e_above_hull)
    assert hull_vs_gap(t, tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_single_model_draws_no_error_bars():
    t = crowded(50).assign(pred_band_gap_std=0.0, pred_e_above_hull_std=0.0)
    fig = hull_vs_gap_figure(t)
    assert not [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert not any("bars: 1 sigma" in a.get_text() for a in fig.axes[0].texts)
