#!/usr/bin/env bash
# Issue 26, one device call on a lent GPU machine (about 9 minutes): the GPU benchmark of the shipped
# ensemble, then members of the v3 recipe (256 atom features, 4 convolutions) trained side by side,
# resumable, brought back as tar parts.
#
#   here, once:  echo /.gpu/ >> .git/info/exclude
#                python benchmarks/gpu.py export .gpu/graphs.npz
#                python experiments/default/train_gpu.py export .gpu/train-graphs.npz
#   device run:  command "bash experiments/v3/gpu_session.sh", carry [".gpu"], timeout_s 600
#   back here:   cat <files_at>/part.* | tar xzf -     (experiments/v3/member-K/: last.pt, last.opt, best.pt,
#                metrics.csv), commit them, then the next session runs this script again: members resume.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" experiments/v3
[ -d experiments/v3/restore ] && for f in experiments/v3/restore/part.*; do cat "$f"; done | tar xzf - 2>/dev/null
timeout 150 python3 benchmarks/gpu.py bench .gpu/graphs.npz 2>&1 | tee "$OUT/gpu-bench.log"
python3 experiments/default/train_gpu.py train .gpu/train-graphs.npz 0 1 2 3 4 --device cuda --seconds 330 \
    --recipe '{"atom_fea_len": 256, "n_conv": 4, "epochs": 150}' --into experiments/v3 2>&1 | tee "$OUT/gpu-train.log"
tar czf - experiments/v3/member-* | split -b 15M - "$OUT/part."
