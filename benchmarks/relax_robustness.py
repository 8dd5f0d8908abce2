"""How much do unrelaxed, distorted structures hurt the model, and how much does `--relax chgnet` win back?

No DFT needed: N crystals of the model's own held-out test split (its split.json), each
distorted as an unrelaxed prototype would be (screening.relax.distort: random strain up to
±8 % per axis, atoms rattled by 0.1 A, seeded), screened three times through `screen run`:

    (a) original   the DFT-relaxed structures as they are in ../shared/data
    (b) distorted  the distorted copies
    (c) relaxed    the distorted copies with --relax chgnet

Figures per arm: ΔEf MAE against DFT, and stability F1 against the dev hull: a crystal is
stable when its E_hull against every other crystal of ../shared/data (leave-one-out, the
same rule `screen run` uses) is <= 0, for the DFT ΔEf (truth) and for the predicted one.
For (c) also seconds per relaxed crystal and the peak RSS of the one worker (1 thread).

    python benchmarks/relax_robustness.py [--n 300] [--max-atoms 40] [--model PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from run import measure  # noqa: E402  (the sibling script's process-tree sampler)

DATA = ROOT.parent / "shared" / "data" / "mp_dev.csv.gz"


def scores(t: pd.DataFrame):
    """(ΔEf MAE, stability F1, stable by DFT, predicted stable) of an arm's results."""
    mae = float(np.abs(t.pred_formation_energy_per_atom - t.dft_formation_energy_per_atom).mean())
    truth = t.dft_e_above_hull.to_numpy(float) <= 1e-6
    pred = t.pred_e_above_hull.to_numpy(float) <= 0
    return mae, f1(truth, pred), truth, pred


def f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    tp = int((truth & predicted).sum())
    fp = int((~truth & predicted).sum())
    fn = int((truth & ~predicted).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def main():
    from screening.checkpoint import default_model_path
    from screening.relax import distort
    from screening.structures import structure_from_cif_text

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--max-atoms", type=int, default=40, help="only crystals this small (relaxation time)")
    ap.add_argument("--model", default=str(default_model_path()))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="folder for inputs, caches and outputs (default: a temp folder)")
    args = ap.parse_args()

    from screening.ensemble import load_model
    from screening.split import read_split, split_file_of

    split = read_split(split_file_of(load_model(args.model)))
    df = pd.read_csv(DATA)
    pool = df[df.material_id.isin(set(split["test"]))]
    pool = pool[pool.cif.map(lambda c: len(structure_from_cif_text(c, "x")) <= args.max_atoms)]
    rows = pool.sample(n=min(args.n, len(pool)), random_state=args.seed).reset_index(drop=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="relax-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows.to_csv(work / "original.csv", index=False)
    distorted = rows.copy()
    distorted["cif"] = [distort(structure_from_cif_text(c, i), seed=args.seed * 100_003 + k).to(fmt="cif")
                        for k, (c, i) in enumerate(zip(rows.cif, rows.material_id))]
    distorted.to_csv(work / "distorted.csv", index=False)
    ids = ",".join(rows.material_id)
    print(f"{len(rows)} crystals of the test split of {args.model} (<= {args.max_atoms} atoms, "
          f"{int(np.mean([len(structure_from_cif_text(c, 'x')) for c in rows.cif])):d} on average); work in {work}")

    arms = {"(a) original": ("original.csv", []), "(b) distorted": ("distorted.csv", []),
            "(c) distorted + --relax chgnet": ("distorted.csv", ["--relax", "chgnet"])}
    tables, back = {}, pd.Series(dtype=bool)  # per arm its results, by id
    for name, (csv, extra) in arms.items():
        out = work / f"out-{csv[:-4]}{'-relaxed' if extra else ''}"
        cmd = [sys.executable, "-m", "cli", "run", "--query", ids, "--source", f"local:{work / csv}",
               "--reference", f"local:{DATA}", "--model", args.model, "--workers", "1", "--threads", "1",
               "--dashboard", ":0", "--cache", str(work / "cache"), "--out", str(out), *extra]
        wall, _, peak, _ = measure(cmd, cwd=ROOT)
        t = pd.read_csv(out / "results.csv").set_index("id")
        s = json.loads((out / "summary.json").read_text())
        mae, stable, truth, pred = scores(t)
        extra_text = ""
        if extra:
            fresh = s["relax_seconds_per_crystal"]
            extra_text = (f"   {fresh if fresh is not None else 'cached:'} s per relaxed crystal, {s['relax_converged']}/"
                          f"{s['relaxed']} converged, peak worker RSS {peak / 2**20:.0f} MiB")
        print(f"{name:32s} ΔEf MAE {mae:.4f} eV/atom   stability F1 {stable:.3f} "
              f"({int(truth.sum())} stable by DFT, {int(pred.sum())} predicted)   n {len(t)}   "
              f"wall {wall:.0f} s{extra_text}", flush=True)
        tables[name] = t
        if extra:
            back = relaxed_back(out / "relaxed.jsonl.gz", rows)
    print_breakdown(tables, back)
    print_near_hull(tables, NEAR_HULL)
    a, b = (tables[arm].pred_formation_energy_per_atom for arm in ("(a) original", "(b) distorted"))
    shift = (b - a.reindex(b.index)).dropna().to_numpy()
    print(f"distortion moves the predicted ΔEf by {shift.mean():+.4f} eV/atom on average; 68 % of the moves are within "
          f"{np.quantile(np.abs(shift), 0.6827):.4f} eV/atom: the error an unrelaxed structure adds, what a model "
          f"manifest's unrelaxed_std holds (screening/rank.py)")


def relaxed_back(path: Path, rows: pd.DataFrame) -> pd.Series:
    """Per id: did the relaxation find the original structure again (pymatgen's StructureMatcher)?
    A distorted high-energy entry may relax into another structure, whose DFT ΔEf is not the label."""
    import gzip

    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    from screening.structures import structure_from_cif_text

    cifs = dict(zip(rows.material_id, rows.cif))
    matcher = StructureMatcher()
    out = {}
    for line in gzip.decompress(path.read_bytes()).splitlines():
        d = json.loads(line)
        out[d["id"]] = matcher.fit(structure_from_cif_text(cifs[d["id"]], d["id"]), Structure.from_dict(d["structure"]))
    return pd.Series(out)


NEAR_HULL = 0.1  # eV/atom: the range where screening decides, chosen before any distortion


def print_near_hull(tables: dict, within: float) -> None:
    """The arms again on the crystals within `within` of the DFT hull. High-energy polymorphs are often
    not local minima: distorted, they relax into another structure, and their label no longer applies."""
    first = next(iter(tables.values()))
    ids = first.index[first.dft_e_above_hull <= within]
    parts = []
    for name, t in tables.items():
        mae, stable, _, _ = scores(t.loc[ids])
        parts.append(f"{name.split()[0]} ΔEf MAE {mae:.4f}, F1 {stable:.3f}")
    print(f"  {len(ids):4d} crystals within {within} eV/atom of the DFT hull: " + "   ".join(parts))


def print_breakdown(tables: dict, back: pd.Series) -> None:
    errors = {name: (t.pred_formation_energy_per_atom - t.dft_formation_energy_per_atom).abs()
              for name, t in tables.items()}
    for found, ids in (("relaxed back to the original structure", back.index[back]),
                       ("relaxed into another structure", back.index[~back])):
        maes = "   ".join(f"{name.split()[0]} {errors[name].reindex(ids).mean():.4f}" for name in errors)
        print(f"  {len(ids):4d} crystals {found}: ΔEf MAE {maes}")


if __name__ == "__main__":
    main()
