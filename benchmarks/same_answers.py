"""Same answers: the default `Li-*-O` run and the local-CSV `Li-*-O` run, each with a fresh cache,
fingerprinted (the ids in their order, and every pred_* column's float64 values as hex, digested), so a refactor can
show it changed no table.

    python benchmarks/same_answers.py --write benchmarks/same_answers_baseline.json
    python benchmarks/same_answers.py --compare benchmarks/same_answers_baseline.json

It runs this checkout's CLI (python -m cli) from this checkout's root, so `../shared` is the data
folder beside it; without MP_API_KEY, so the default source is the substitution one (the funnel).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"default": [], "local": ["--source", "local:../shared/data/mp_dev.csv.gz"]}


def fingerprint(results: Path) -> dict:
    with warnings.catch_warnings():  # round_trip: Python's own float parsing, exact (pandas 3 deprecates the name)
        warnings.simplefilter("ignore")
        table = pd.read_csv(results, dtype={"id": str}, float_precision="round_trip")
    preds = sorted(c for c in table.columns if c.startswith("pred_") and table[c].dtype.kind == "f")
    return {"rows": len(table), "ids": list(table["id"]),
            "pred": {c: digest([float(v).hex() for v in table[c].astype("float64")]) for c in preds}}


def digest(values: list) -> str:
    """A column's float64 values (hex, in row order) as one sha256: equal digests, bit-equal columns."""
    return hashlib.sha256("\n".join(values).encode()).hexdigest()


def run(name: str, work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MP_API_KEY"}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "cli", "run", "--query", "Li-*-O", *RUNS[name], "--dashboard", ":0",
           "--cache", str(work / name / "cache"), "--out", str(work / name / "out")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{name}: screen run failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}")
    return fingerprint(work / name / "out" / "results.csv")


def differences(old: dict, new: dict) -> list:
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            out.append(f"{name}: only in {'the new' if a is None else 'the old'} fingerprints")
            continue
        if a["ids"] != b["ids"]:
            moved = next(i for i, (x, y) in enumerate(zip(a["ids"] + [None], b["ids"] + [None])) if x != y)
            out.append(f"{name}: ids differ ({a['rows']} vs {b['rows']} rows; first at position {moved})")
        for col in sorted(set(a["pred"]) | set(b["pred"])):
            x, y = a["pred"].get(col), b["pred"].get(col)
            if x != y:
                out.append(f"{name}: {col}: " + ("column missing" if x is None or y is None else "values differ"))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", type=Path, help="write the fingerprints here")
    ap.add_argument("--compare", type=Path, help="compare with the fingerprints in this file")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="screen-same-") as tmp:
        prints = {name: run(name, Path(tmp)) for name in args.runs}  # one after another: each a fresh cache
    for name, p in prints.items():
        print(f"{name}: {p['rows']} rows, {len(p['pred'])} pred columns")
    if args.write:
        args.write.write_text(json.dumps(prints, indent=1) + "\n")
    if args.compare:
        old = {k: v for k, v in json.loads(args.compare.read_text()).items() if k in prints}
        diff = differences(old, prints)
        print("\n".join(diff) if diff else f"identical to {args.compare}: " + ", ".join(prints))
        sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
