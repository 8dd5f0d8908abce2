"""Where the default ensemble's training stands: a Markdown table and learning curves.

The ensemble has two groups of five members: experiments/default/member-K (64 atom
features, 150 epochs) and experiments/wide/member-K (128 atom features, 100 epochs).

    python experiments/default/status.py        -> prints the table, writes learning_curves.png

Reads only the committed files of each member (metrics.csv), so it works on
any machine. Figures are validation MAEs of the evaluated (EMA) weights.
"""
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from screening.plots import learning_curves  # noqa: E402

# run folder -> (name in the table, planned epochs): train.sh and train_gpu.py --recipe
GROUPS = {HERE: ("", 150), HERE.parent / "wide": ("wide/", 100)}


def main():
    histories, planned = {}, {}
    for folder, (prefix, epochs) in GROUPS.items():
        for p in sorted(folder.glob("member-*/metrics.csv")):
            histories[prefix + p.parent.name] = pd.read_csv(p)
            planned[prefix + p.parent.name] = epochs
    if not histories:
        print("no member has started")
        return
    print("| member | epochs done | best epoch | val MAE dEf (eV/atom) | val MAE Eg (eV) | val MAE EF (eV) "
          "| val ROC-AUC metal | train hours |")
    print("|---|---|---|---|---|---|---|---|")
    for name, h in histories.items():
        b = h.loc[h.score.idxmin()]
        print(f"| {name} | {len(h)} / {planned[name]} | {int(b.epoch)} | {b.val_mae_formation_energy_per_atom:.4f} "
              f"| {b.val_mae_band_gap:.4f} | {b.val_mae_efermi:.4f} | {b.get('val_auc_metal', float('nan')):.4f} "
              f"| {h.seconds.sum() / 3600:.2f} |")
    total = sum(len(h) for h in histories.values())
    print(f"\n{total} full-data epochs so far over {len(histories)} member(s).")
    path = learning_curves(histories, HERE / "learning_curves.png",
                           title="default ensemble: validation MAE per epoch (3,304 crystals)")
    print(f"wrote {path.relative_to(HERE.parents[1])}")


if __name__ == "__main__":
    main()
