"""The default answer, as a new user gets it: `screen run --query Q` for Li-*-O, Na-*-O and Mg-*-O
(no MP key, so the substitution source and its funnel), and the top 25 of each with P(stable),
E_hull ± σ, stage and flags.

Beside each table: how many of the top 25 have a composition with a known crystal on the hull of
the reference phases (the shipped table), and how many of those are predicted at least 0.1 eV/atom
below it, by the ΔEf the run's E_hull used (the run's own figure) and by the raw model difference
pred_de_vs_known (the candidate's predicted ΔEf minus the model's ΔEf of the known crystal).

    python benchmarks/default_runs.py [--queries "Li-*-O" ...] [--cache DIR] [--out FILE.md]

It runs this checkout's CLI (python -m cli); --cache reuses a cache folder (a warm re-run).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ("Li-*-O", "Na-*-O", "Mg-*-O")
BELOW = -0.1  # eV/atom: "predicted at least 0.1 eV/atom below a known on-hull ground state"
TOP = 25


def run(query: str, cache: Path, out: Path) -> tuple:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "cli", "run", "--query", query, "--cache", str(cache), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{query}: screen run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return pd.read_csv(out / "results.csv"), json.loads((out / "summary.json").read_text()), time.perf_counter() - t0


def below_known(top: pd.DataFrame) -> dict:
    """Counts over the top rows: with a known on-hull crystal of their composition, and predicted
    >= 0.1 eV/atom below it by the run's E_hull ΔEf and by the raw pred_de_vs_known."""
    if "anchor_on_hull" not in top:
        return {"with_known": 0, "below_by_run": 0, "below_raw": 0}
    on_hull = top["anchor_on_hull"].fillna(False).astype(bool).to_numpy()
    # the anchor is on the hull, so E_hull of the candidate is its ΔEf (as the run used it) minus the anchor's
    by_run = top["pred_e_above_hull"].to_numpy(float) <= BELOW
    raw = top["pred_de_vs_known"].to_numpy(float) <= BELOW  # NaN (no known crystal): False
    return {"with_known": int(on_hull.sum()), "below_by_run": int((on_hull & by_run).sum()),
            "below_raw": int((on_hull & raw).sum())}


def markdown(top: pd.DataFrame) -> str:
    lines = ["| # | formula | id | P(stable) | E_hull ± σ | stage | ΔE vs known | flags |",
             "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(top.itertuples(), 1):
        de = getattr(r, "pred_de_vs_known", np.nan)
        lines.append(f"| {i} | {r.formula} | {r.id} | {r.pred_p_stable:.3f} | {r.pred_e_above_hull:+.3f} ± "
                     f"{r.pred_e_above_hull_std:.3f} | {r.stage} | {'' if pd.isna(de) else f'{de:+.3f}'} | "
                     f"{'' if pd.isna(r.flags) else r.flags} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", nargs="+", default=list(QUERIES))
    ap.add_argument("--cache", type=Path, help="cache folder to use (default: a fresh one)")
    ap.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = ap.parse_args()
    report = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "cache"
        for q in args.queries:
            table, summary, wall = run(q, cache, Path(tmp) / q.replace("*", "x"))
            top = table.head(TOP)
            c = below_known(top)
            head = (f"### {q}: {len(table)} candidates, {wall:.0f} s; top {TOP}: {c['with_known']} with a known "
                    f"on-hull crystal of their composition, predicted >= 0.1 eV/atom below it: "
                    f"**{c['below_by_run']}** by the run's E_hull, {c['below_raw']} by the raw pred_de_vs_known")
            notes = [summary["relax_note"]] if summary.get("relax_note") else []
            report += [head, *notes, "", markdown(top), ""]
            print(head, flush=True)
    text = "\n".join(report)
    print("\n" + text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
