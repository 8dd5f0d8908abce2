#!/usr/bin/env bash
# Train, or continue where it stopped, member K of the default model's ensemble.
#
#   experiments/default/train.sh K          (THREADS=n for torch threads, default 2)
#
# Every member uses the default recipe of `screen train` (TrainConfig), the same
# 80/10/10 split (split seed 0) and its own seed K. The run directory's state
# (last.pt, last.opt, best.pt, metrics.csv, split.json) is committed when a
# session stops, so any machine continues it with this same command.
set -euo pipefail
cd "$(dirname "$0")/../.."
k=${1:?usage: experiments/default/train.sh K}
dir=experiments/default/member-$k
args=(--data ../shared/data/mp_dev.csv.gz --out "$dir" --seed "$k" --split-seed 0 --epochs 150
      --threads "${THREADS:-2}" --device cpu)
if [ -f "$dir/last.pt" ]; then
  args+=(--resume "$dir/last.pt")
fi
exec screen train "${args[@]}"
