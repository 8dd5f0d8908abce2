"""Wall time and peak memory of a whole `screen run`, cold cache then warm cache.

Peak memory is the largest sum of RSS over the CLI process and all its
children (scheduler, Dask workers), sampled every 0.1 s.

    python benchmarks/run.py --query all --source local:../shared/data/mp_dev.csv.gz [--model PATH]
    python benchmarks/run.py --query all --work DIR --runs warm warm     (more warm runs on DIR's cache)

It runs this checkout's CLI (python -m cli), not whatever `screen` is installed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def measure(cmd, cwd=None):
    """(wall s, peak RSS summed over the process tree, peak RSS of the largest single child, output)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    root = psutil.Process(proc.pid)
    peak = peak_child = 0
    while proc.poll() is None:
        try:
            children = root.children(recursive=True)
            rss = [p.memory_info().rss for p in children if p.is_running()]
            peak = max(peak, root.memory_info().rss + sum(rss))
            peak_child = max([peak_child, *rss])
        except psutil.Error:
            pass
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode:
        sys.exit(f"screen run failed ({proc.returncode}):\n{out[-2000:]}")
    return time.perf_counter() - t0, peak, peak_child, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--query", default="*-O")
    ap.add_argument("--source", default="local:" + str(Path(__file__).resolve().parents[2] / "shared/data/mp_dev.csv.gz"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default=None, help="screen run --device (auto, cpu, cuda)")
    ap.add_argument("--work", type=Path, help="cache and output folder, kept afterwards (default: a temp folder, "
                                              "deleted); with a warm cache there, every run is warm")
    ap.add_argument("--runs", nargs="+", default=["cold", "warm"], help="labels of the runs, one after another")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="screen-run-bench-"))
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "cli", "run", "--query", args.query, "--source", args.source, "--workers", str(args.workers),
           "--dashboard", ":0", "--cache", str(work / "cache"), "--out", str(work / "out"), "--top", "5"]
    if args.model:
        cmd += ["--model", args.model]
    if args.device:
        cmd += ["--device", args.device]
    try:
        for label in args.runs:
            wall, peak, _, _ = measure(cmd, cwd=root)
            s = json.loads((work / "out" / "summary.json").read_text())
            print(f"{label}: wall {wall:6.1f} s   {s['candidates'] / wall:6.0f} crystals/s   peak RSS "
                  f"{peak / 2**20:7.0f} MiB   candidates {s['candidates']}   featurized {s['featurized']}   "
                  f"inferred {s['inferred']}   parsed {s.get('parsed')}   (workers {s['workers']})", flush=True)
            stages = "  ".join(f"{k} {v:.1f}" for k, v in s.get("stage_seconds", {}).items())
            tasks = "  ".join(f"{k} {v:.1f}" for k, v in s.get("worker_seconds", {}).items())
            print(f"      stages (wall s): {stages}   worker task s (summed): {tasks}", flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
