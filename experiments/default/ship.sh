#!/usr/bin/env bash
# Ship the finished ensemble as the package's default model, then score it on its test split.
#
#   experiments/default/ship.sh
#
# Each member's best.pt (the EMA weights of its best validation epoch) is copied to
# screening/models/default/member-K.pt (64 atom features, experiments/default/member-K) and
# wide-K.pt (128 atom features, experiments/wide/member-K) beside the members' shared split.json and
# domain.json; `screen ensemble` writes the manifest (member hashes, and each task's
# std scale fitted on the validation split), and
# `screen evaluate` scores the ensemble, each member and the calibration of its std
# on the 3,304 test crystals into experiments/default/test/.
set -euo pipefail
cd "$(dirname "$0")/../.."
dst=screening/models/default
mkdir -p "$dst"
for run in experiments/default/member-*/; do
  run=${run%/}
  cp "$run/best.pt" "$dst/${run##*/}.pt"
done
for run in experiments/wide/member-*/; do
  run=${run%/}
  k=${run##*-}
  cp "$run/best.pt" "$dst/wide-$k.pt"
done
cp experiments/default/member-0/split.json experiments/default/member-0/domain.json "$dst/"
# --unrelaxed-std: benchmarks/relax_robustness.py --n 300 --max-atoms 12 on this ensemble's test split,
# "68 % of the moves are within 0.0556 eV/atom" (experiments/default/relax-robustness.log) (the model card gives the run)
screen ensemble "$dst"/member-*.pt "$dst"/wide-*.pt --out "$dst/ensemble.json" --calibrate ../shared/data/mp_dev.csv.gz \
  --unrelaxed-std 0.0556
screen evaluate --model "$dst/ensemble.json" --data ../shared/data/mp_dev.csv.gz --out experiments/default/test
