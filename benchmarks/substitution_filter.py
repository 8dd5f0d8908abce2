"""The substitution source's plausibility filter (`min_substitution_probability`,
screening/sources/plausibility.py): what each threshold keeps and removes.

  kept    of the prototype-rediscovery set (benchmarks/rediscovery.py generate: candidates that are the
          same structure as a real crystal of ../shared/data of the test or validation split, which the
          model did not train on; experiments/default/rediscovery/matched*.json), the share the filter
          keeps. Each matched candidate is made again by the source (its chemical system fetched with
          the filter at 0, which scores everything and rejects nothing) and looked up by id; also
          of its ternary crystals alone, the kind the default queries make.
  removed of every candidate of the default queries (Li-*-O, Na-*-O, Mg-*-O), the share it rejects.

Candidates without a score (no ion the data knows) are kept at every threshold.

    python benchmarks/substitution_filter.py [--thresholds 0.001,0.002,...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.rediscovery import QUERIES, load_matched, log  # noqa: E402

THRESHOLDS = (0.0001, 0.0002, 0.0003, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)


def scores_of(system_or_query: str):
    """{candidate id: score} of everything the source makes for it."""
    from screening.sources.substitution import SubstitutionSource

    src = SubstitutionSource(min_probability=0.0)
    src.fetch(system_or_query)
    return src.probabilities


def kept(scores, t: float) -> int:
    return sum(1 for s in scores if s is None or s >= t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--thresholds", default=",".join(map(str, THRESHOLDS)))
    args = ap.parse_args()
    thresholds = [float(x) for x in args.thresholds.split(",")]
    t0 = time.time()
    infos, rows = load_matched()
    by_system = {}
    for r in rows:
        by_system.setdefault(r["system"], []).append(r["id"])
    real, ternary, missing = [], [], []
    for system, ids in sorted(by_system.items()):
        scores = scores_of(system)
        for cid in ids:
            if cid not in scores:
                missing.append(cid)
                continue
            real.append(scores[cid])
            if system.count("-") == 2:
                ternary.append(scores[cid])
    log(f"rediscovery set ({', '.join(s for s, _ in infos)} splits): {len(rows)} matched candidates in "
        f"{len(by_system)} systems; {len(real)} made again ({len(missing)} not: {missing[:3]}), "
        f"{sum(s is None for s in real)} without a score; {time.time() - t0:.0f} s")
    queries = {q: list(scores_of(q).values()) for q in QUERIES}
    for q, scores in queries.items():
        log(f"{q}: {len(scores)} candidates, {sum(s is None for s in scores)} without a score")
    every = [s for scores in queries.values() for s in scores]
    for name, scores in (("rediscovered real crystals", real), ("default-query candidates", every)):
        q = np.percentile([s for s in scores if s is not None], [5, 10, 25, 50])
        log(f"score of {name}: 5th/10th/25th/50th percentile " + " / ".join(f"{v:.4f}" for v in q))
    header = f"{'threshold':>9}  {'real kept':>15}  {'ternary kept':>15}  " + "  ".join(f"{q + ' removed':>16}" for q in QUERIES) + \
             f"  {'all removed':>16}"
    log(header)
    for t in thresholds:
        cells = [f"{t:>9g}"] + [f"{kept(r, t)}/{len(r)} {kept(r, t) / len(r):5.1%}".rjust(15) for r in (real, ternary)]
        for scores in [*queries.values(), every]:
            gone = len(scores) - kept(scores, t)
            cells.append(f"{gone}/{len(scores)} {gone / len(scores):5.1%}".rjust(16))
        log("  ".join(cells))
    log(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
