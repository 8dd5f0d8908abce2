"""Prototype rediscovery: how good are the model's answers on substitution prototypes that are real crystals?

Built from ../shared/data without the bundled model's training crystals:

  generate  substitution candidates (screening/sources/substitution.py, the AFLOW prototypes) for a
            sample of the chemical systems of the model's test split (split.json; --split val: its
            validation split, which picks the best epoch but is never trained on), matched with
            pymatgen's StructureMatcher to that split's crystals of the same formula. All crystals of
            ../shared/data that match a candidate are its "twins"; a candidate with a training-split
            twin is dropped (the model has seen its structure). -> WORK/matched.json
  relax     the matched candidates of <= --relax-atoms atoms relaxed with CHGNet (screening.relax.Relaxer with
            the funnel's settings, workflows/run/funnel.SETTINGS), one file per candidate in WORK/relaxed/<relaxer
            version>/ (a re-run skips them).
  evaluate  predictions and scores per stage:
              unrelaxed  the prototype as generated;
              relaxed    the CHGNet-relaxed prototype;
              anchored   the bias-cancelled estimate (screening/anchors.anchored_formation_energy): DFT
                         dEf of the lowest-energy known crystal of the same composition on the reference
                         hull + (pred dEf(candidate) - pred dEf(it)), from the unrelaxed prediction (and,
                         where relaxed, the relaxed one). Runs do not use it: it is scored here beside
                         the model's own dEf of the same candidates, the comparison that decided so;
            against the truth: the DFT dEf of the matched test crystal (the lowest-energy twin), and
            E_hull against the hull of every crystal of ../shared/data except the candidate's twins
            (so neither the hull nor the anchor holds the answer). Stable: true E_hull <= 0.
            The E_hull std of each stage is hypot(scale x model std, add) (the manifest's stage_std);
            (scale, add) are fitted on all rows (screening/uncertainty.fit_stage_std), and checked by
            cross-validation: fitted on 4 of 5 folds of chemical systems, scored on the fifth, pooled
            (the figures to trust). Beside them: a Student-t P(stable), the anchored estimate shrunk
            toward the direct one, and the funnel's unrelaxed_shift, each out of fold too.
            --write-manifest stores the unrelaxed and relaxed terms (the stages a run uses) in
            screening/models/default/ensemble.json under "stage_std" (no other key changes).
            Then the top 25 of Li-*-O, Na-*-O and Mg-*-O (unrelaxed, ranked by P(stable) with the
            fitted unrelaxed sigma) and how many are predicted >= 0.1 eV/atom below a known on-hull
            ground state of the same composition.

    python benchmarks/rediscovery.py generate [--systems 600] [--seed 0] [--split val]
    python benchmarks/rediscovery.py relax [--relax-atoms 12] [--relax-max 300]
    python benchmarks/rediscovery.py evaluate [--write-manifest]
    python benchmarks/rediscovery.py volumes      # volume predictors against test-split crystals
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "mp_dev.csv.gz"
MODEL = ROOT / "screening" / "models" / "default"
WORK = ROOT / "experiments" / "default" / "rediscovery"
STAGES = ("unrelaxed", "relaxed", "anchored")
RUN_STAGES = ("unrelaxed", "relaxed")  # the stages a run uses, whose σ terms go to the manifest
QUERIES = ("Li-*-O", "Na-*-O", "Mg-*-O")
SPLITS = ("test", "val")  # the splits the model did not train on (val picks its best epoch only)


def log(*args):
    print(*args, flush=True)


def load_data():
    from pymatgen.core import Composition

    df = pd.read_csv(DATA, usecols=["material_id", "formula", "formation_energy_per_atom", "volume", "cif"])
    df = df[df.formation_energy_per_atom.notna()].reset_index(drop=True)
    df["reduced"] = df.formula.map(lambda f: Composition(f).reduced_formula)
    df["system"] = df.reduced.map(lambda f: "-".join(sorted(el.symbol for el in Composition(f))))
    split = json.loads((MODEL / "split.json").read_text())
    part = {i: k for k in ("train", "val", "test") for i in split[k]}
    df["split"] = df.material_id.map(part).fillna("none")
    return df


# -- generate -------------------------------------------------------------------------------

def generate(args):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from screening.sources.substitution import SubstitutionSource
    from screening.structures import structure_from_cif_text

    df = load_data()
    held = df[df.split == args.split]  # crystals of a split the model did not train on
    systems = sorted({s for s in held.system if s.count("-") >= 1})
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.choice(systems, size=min(args.systems, len(systems)), replace=False))
    log(f"{len(systems)} chemical systems (2+ elements) in the {args.split} split; {len(chosen)} sampled "
        f"(seed {args.seed})")
    by_formula = {f: g for f, g in df.groupby("reduced")}
    held_formulas = set(held.reduced)
    src = SubstitutionSource()
    matcher = StructureMatcher()
    rows, n_cands, rejected, dropped_train = [], 0, defaultdict(int), 0
    every = []  # (id, formula, matched) of every candidate, to judge filters on afterwards
    t0 = time.time()
    for k, system in enumerate(chosen):
        try:
            cands = src.fetch(system)
        except Exception as e:  # a system the source refuses (an element outside the feature table...)
            log(f"  {system}: skipped ({type(e).__name__}: {e})")
            continue
        n_cands += len(cands)
        for pair, n in src.rejection_counts()["distance"].items():
            rejected[pair] += n
        rejected["valence formulas"] += src.rejection_counts()["valence"]
        for c in cands:
            every.append([c.id, c.formula, False])
            if c.formula not in held_formulas:
                continue
            same = by_formula[c.formula]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                twins = [i for i, (mid, cif) in enumerate(zip(same.material_id, same.cif))
                         if matcher.fit(c.structure, structure_from_cif_text(cif, mid))]
            twins = same.iloc[twins]
            if not (twins.split == args.split).any():
                continue
            if (twins.split == "train").any():
                dropped_train += 1
                continue
            truth = twins[twins.split == args.split].sort_values("formation_energy_per_atom").iloc[0]
            rows.append({"id": c.id, "split": args.split, "system": system, "formula": c.formula,
                         "cif": c.structure.to(fmt="cif"),
                         "atoms": len(c.structure), "match": truth.material_id,
                         "dft": float(truth.formation_energy_per_atom), "true_volume_per_atom":
                         float(truth.volume) / len(structure_from_cif_text(truth.cif, truth.material_id)),
                         "twins": sorted(twins.material_id)})
            every[-1][2] = True
        if (k + 1) % 25 == 0:
            log(f"  {k + 1}/{len(chosen)} systems, {n_cands} candidates, {len(rows)} matched, "
                f"{time.time() - t0:.0f} s")
        if (k + 1) % 200 == 0 or k + 1 == len(chosen):  # partial results, so relaxing can start early
            WORK.mkdir(parents=True, exist_ok=True)
            matched_path(args.split).write_text(json.dumps({
                "systems": list(chosen[:k + 1]), "n_systems_in_test": len(systems), "candidates": n_cands,
                "rejected": dict(rejected), "dropped_training_twin": dropped_train, "matched": rows,
                "every": every}))
    log(f"{n_cands} candidates for {len(chosen)} systems; {len(rows)} match a {args.split}-split crystal "
        f"({dropped_train} more match a training crystal too: dropped); rejected: "
        f"{sum(v for k, v in rejected.items() if k != 'valence formulas')} for too-short distances, "
        f"{rejected['valence formulas']} formulas for valence; {time.time() - t0:.0f} s")


def matched_path(split: str) -> Path:
    return WORK / ("matched.json" if split == "test" else f"matched-{split}.json")


def load_matched() -> Tuple[List[Tuple[str, dict]], List[dict]]:
    """([(split, its matched.json)] of every split generated, test first; the matched candidates of
    them all, a candidate matched in two splits once)."""
    infos = [(s, json.loads(matched_path(s).read_text())) for s in SPLITS if matched_path(s).exists()]
    seen, rows = set(), []
    for _, info in infos:
        for r in info["matched"]:
            if r["id"] not in seen:
                seen.add(r["id"])
                rows.append({"split": "test", **r})
    return infos, rows


# -- relax ---------------------------------------------------------------------------------

def relaxer_of(args):
    """The relaxer of `relax` and `evaluate`: the funnel's settings (workflows/run/funnel.SETTINGS), so
    the relaxed σ is fitted on relaxations like the ones a run makes; --fmax/--max-steps for others."""
    from screening.relax import Relaxer
    from workflows.run.funnel import RELAXER, SETTINGS

    settings = {**SETTINGS, "max_atoms": max(SETTINGS["max_atoms"], args.relax_atoms)}
    settings.update({k: v for k, v in (("fmax", args.fmax), ("max_steps", args.max_steps)) if v is not None})
    return Relaxer(RELAXER, **settings)


def relaxed_path(cid: str, version: str) -> Path:
    """One file per candidate, in a folder per relaxer version (its settings are in the name)."""
    return WORK / "relaxed" / version / (hashlib.sha256(cid.encode()).hexdigest()[:20] + ".json")


def relax(args):
    from screening.errors import ScreenError
    from screening.structures import structure_from_cif_text

    _, matched = load_matched()
    todo = sorted((r for r in matched if r["atoms"] <= args.relax_atoms), key=lambda r: (r["atoms"], r["id"]))
    todo = todo[:args.relax_max][::-1 if args.largest_first else 1]  # largest first: a second process's share
    relaxer = relaxer_of(args)
    (WORK / "relaxed" / relaxer.version).mkdir(parents=True, exist_ok=True)
    t0, done = time.time(), 0
    log(f"relaxing {len(todo)} matched candidates of <= {args.relax_atoms} atoms ({relaxer.version})")
    for k, r in enumerate(todo):
        path = relaxed_path(r["id"], relaxer.version)
        if path.exists():
            continue
        try:
            out = relaxer.relax(structure_from_cif_text(r["cif"], r["id"]))
            rec = {"id": r["id"], "cif": out.structure.to(fmt="cif"), **out.info(), "version": relaxer.version}
        except ScreenError as e:
            rec = {"id": r["id"], "error": str(e), "version": relaxer.version}
        path.write_text(json.dumps(rec))
        done += 1
        if done % 10 == 0:
            log(f"  {k + 1}/{len(todo)}: {done} relaxed in {time.time() - t0:.0f} s")
    log(f"done: {done} relaxed now, {len(todo)} in the cache; {time.time() - t0:.0f} s")


# -- evaluate ------------------------------------------------------------------------------

def predict(ensemble, structures):
    """(dEf mean, dEf std) of the ensemble (std already std_scale'd), per structure."""
    from screening.featurize import featurize

    graphs = [featurize(s, ensemble.featurizer) for s in structures]
    mean, std = ensemble.predict_graphs(graphs)
    j = ensemble.outputs.index("formation_energy_per_atom")
    return mean[:, j].astype(float), std[:, j].astype(float)


def roc_auc(truth, score) -> float:
    """Area under the ROC curve: P(a stable row scores above an unstable one), ties counting half."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def scores(pred_ef, true_ef, pred_eh, true_eh, sigma, df=None) -> dict:
    from scipy.stats import spearmanr

    from screening.uncertainty import probability_below

    err = np.abs(pred_eh - true_eh)
    stable = true_eh <= 0
    p = probability_below(pred_eh, sigma, 0.0, df)
    return {"n": len(err), "dEf MAE": float(np.mean(np.abs(pred_ef - true_ef))), "E_hull MAE": float(err.mean()),
            "Spearman": float(spearmanr(pred_eh, true_eh)[0]) if len(err) > 2 else float("nan"),
            "within 1σ": float(np.mean(err <= sigma)), "within 2σ": float(np.mean(err <= 2 * sigma)),
            "Brier": float(np.mean((p - stable) ** 2)),
            "base-rate Brier": float(np.mean((stable.mean() - stable) ** 2)),
            "ROC-AUC": roc_auc(stable, p),
            "stable": int(stable.sum())}


# -- calibration -----------------------------------------------------------------------------

FOLDS = 5  # folds of the cross-validation, grouped by chemical system
STUDENT_DF = (2, 5)  # the heavier-tailed P(stable) shapes compared with the Normal
SHRINK = np.round(np.arange(0.0, 1.001, 0.1), 2)  # weights of the anchored estimate tried


def stage_rows(rows: pd.DataFrame) -> dict:
    """{stage: one frame per scored set of rows, with pred (ΔEf), std (model std), system, dft, true_eh,
    hull, direct (the unanchored ΔEf of the same candidate), unrelaxed (its ΔEf as generated)}. The anchored stage pools the anchored
    estimates from the unrelaxed and from the relaxed prediction, to be scored beside the model's own ΔEf
    of the same rows (runs use no anchored estimate: the manifest holds the unrelaxed and relaxed terms only)."""
    def pick(pred, std, direct, part):
        ok = rows[pred].notna()
        t = rows[ok]
        return pd.DataFrame({"id": t.id, "system": t.system, "pred": t[pred], "std": t[std], "dft": t.dft,
                             "true_eh": t.true_eh, "hull": t.hull, "direct": t[direct], "unrelaxed": t.pred_u, "part": part})
    return {"unrelaxed": pick("pred_u", "std_u", "pred_u", "unrelaxed"),
            "relaxed": pick("pred_r", "std_r", "pred_r", "relaxed"),
            "anchored": pd.concat([pick("pred_a", "std_u", "pred_u", "from unrelaxed"),
                                   pick("pred_ar", "std_r", "pred_r", "from relaxed")], ignore_index=True)}


def _eh(t: pd.DataFrame, column: str = "pred") -> np.ndarray:
    return (t[column] - t.hull).to_numpy(float)


def _line(stage, label, t, pred_ef, sigma, df=None) -> dict:
    return {"stage": stage, "σ": label, **scores(pred_ef, t.dft.to_numpy(), pred_ef - t.hull.to_numpy(),
                                                  t.true_eh.to_numpy(), sigma, df)}


def shrunk_out_of_fold(t: pd.DataFrame, folds: np.ndarray):
    """The anchored estimate shrunk toward the direct one, direct + w x (anchored - direct), with w and
    σ's terms fitted on the other folds: per w, σ by fit_stage_std, then the w whose fit has the lowest
    in-fold Brier among those meeting the lines (else the lowest Brier). (ΔEf, σ, [w per fold])."""
    from screening.uncertainty import fit_stage_std, probability_below

    pred, sigma, weights = np.full(len(t), np.nan), np.full(len(t), np.nan), []
    for f in np.unique(folds):
        held, fit = folds == f, t[folds != f]
        best = None
        for w in SHRINK:
            ef = fit.direct.to_numpy() + w * (fit.pred.to_numpy() - fit.direct.to_numpy())
            eh, true = ef - fit.hull.to_numpy(), fit.true_eh.to_numpy()
            scale, add = fit_stage_std(fit["std"], eh, true)
            s = np.hypot(scale * fit["std"].to_numpy(), add)
            err = np.abs(eh - true)
            meets = 0.60 <= np.mean(err <= s) <= 0.75 and np.mean(err <= 2 * s) >= 0.90
            key = (not meets, float(np.mean((probability_below(eh, s) - (true <= 0)) ** 2)))
            if best is None or key < best[0]:
                best = (key, w, scale, add)
        _, w, scale, add = best
        h = t[held]
        pred[held] = h.direct.to_numpy() + w * (h.pred.to_numpy() - h.direct.to_numpy())
        sigma[held] = np.hypot(scale * h["std"].to_numpy(), add)
        weights.append(float(w))
    return pred, sigma, weights


def shifted_out_of_fold(unrelaxed: pd.DataFrame, relaxed: pd.DataFrame, folds: np.ndarray):
    """The funnel's unrelaxed_shift (workflows/funnel.py: the median change relaxing made to the relaxed
    candidates' ΔEf, at least 0, added to the unrelaxed ones) measured out of fold: the shift from the
    relaxed rows of the other folds, σ's terms refitted with it there. (ΔEf, σ, [shift per fold])."""
    from screening.uncertainty import fit_stage_std

    fold_of = dict(zip(unrelaxed.id, folds))
    rfolds = relaxed.id.map(fold_of).to_numpy()
    change = (relaxed.pred - relaxed.unrelaxed).to_numpy()
    pred, sigma, shifts = np.full(len(unrelaxed), np.nan), np.full(len(unrelaxed), np.nan), []
    for f in np.unique(folds):
        held = folds == f
        shift = max(float(np.median(change[rfolds != f])), 0.0)
        fit = unrelaxed[~held]
        scale, add = fit_stage_std(fit["std"], _eh(fit) + shift, fit.true_eh)
        pred[held] = unrelaxed.pred.to_numpy()[held] + shift
        sigma[held] = np.hypot(scale * unrelaxed["std"].to_numpy()[held], add)
        shifts.append(round(shift, 3))
    return pred, sigma, shifts


def tail_ratio(err, sigma) -> float:
    """q90 / q75 of |error| / σ. A σ scaled by any k covers <= 75 % within kσ and >= 90 % within 2kσ only if
    k <= q75 and 2k >= q90: no k does where this ratio is above 2 (errors too heavy-tailed for σ's shape)."""
    z = np.asarray(err, float) / np.asarray(sigma, float)
    return float(np.quantile(z, 0.90) / np.quantile(z, 0.75))


def calibrate(rows: pd.DataFrame, manifest: dict):
    """(table of scores, stage_std of the run stages fitted on all rows, out-of-fold figures per stage,
    {stage: tail_ratio of its out-of-fold σ})."""
    from screening.uncertainty import fit_stage_std, grouped_folds, out_of_fold_std

    sets = stage_rows(rows)
    today = manifest.get("stage_std") or {}
    # one assignment of systems to folds for every stage, so that a stage's held-out fold is the same
    # systems as another's
    fold_of = dict(zip(rows.system, grouped_folds(rows.system, FOLDS)))
    table, fitted, oof, tails = [], {}, {}, {}
    for stage, t in sets.items():
        folds = t.system.map(fold_of).to_numpy()
        std, pred, eh, true = t["std"].to_numpy(), t.pred.to_numpy(), _eh(t), t.true_eh.to_numpy()
        if stage in today:
            s, a = today[stage]["scale"], today[stage]["add"]
            table.append(_line(stage, f"manifest before ({s:g}, {a:g}), in-sample", t, pred, np.hypot(s * std, a)))
        fitted[stage] = fit_stage_std(std, eh, true)
        s, a = fitted[stage]
        table.append(_line(stage, f"fitted on all ({s:g}, {a:g}), in-sample", t, pred, np.hypot(s * std, a)))
        sigma, terms = out_of_fold_std(std, eh, true, folds)
        tails[stage] = tail_ratio(np.abs(eh - true), sigma)
        label = f"out-of-fold, {FOLDS} folds by system: " + " ".join(f"({s:g}, {a:g})" for s, a in terms)
        table.append(_line(stage, label, t, pred, sigma))
        oof[stage] = {k: round(v, 3) if isinstance(v, float) else v for k, v in table[-1].items()
                      if k in ("n", "within 1σ", "within 2σ", "Brier", "ROC-AUC", "E_hull MAE")}
        if t.part.nunique() > 1:
            for part in t.part.unique():
                m = (t.part == part).to_numpy()
                table.append(_line(f"{stage} ({part})", "out-of-fold, as above", t[m], pred[m], sigma[m]))
        for df in STUDENT_DF:
            sigma_t, terms = out_of_fold_std(std, eh, true, folds, df)
            table.append(_line(stage, f"Student-t {df} dof, out-of-fold", t, pred, sigma_t, df))
        if stage == "anchored":
            ef, sig, weights = shrunk_out_of_fold(t, folds)
            table.append(_line(stage, f"shrunk toward direct, out-of-fold: w {weights}", t, ef, sig))
        if stage == "unrelaxed":
            ef, sig, shifts = shifted_out_of_fold(t, sets["relaxed"], folds)
            table.append(_line(stage, f"+ funnel's unrelaxed_shift, out-of-fold: {shifts}", t, ef, sig))
    # the same crystals under another stage's out-of-fold σ, to compare stages row for row
    for stage, other in (("unrelaxed", "relaxed"), ("unrelaxed", "anchored"), ("relaxed", "anchored")):
        t = sets[stage]
        sigma, _ = out_of_fold_std(t["std"], _eh(t), t.true_eh, t.system.map(fold_of).to_numpy())
        m = t.id.isin(sets[other].id).to_numpy()
        table.append(_line(f"{stage}, {other} rows", "out-of-fold", t[m], t.pred.to_numpy()[m], sigma[m]))
    run = {k: v for k, v in fitted.items() if k in RUN_STAGES}
    return pd.DataFrame(table), run, {k: v for k, v in oof.items() if k in RUN_STAGES}, tails


def evaluate(args):
    from screening.anchors import anchored_formation_energy
    from screening.ensemble import load_model
    from screening.hull import Hull
    from screening.rank import ReferencePhases, reference_name
    from screening.structures import structure_from_cif_text

    infos, matched = load_matched()
    rows = pd.DataFrame(matched)
    log(f"# Prototype rediscovery ({time.strftime('%Y-%m-%d')})")
    for split, info in infos:
        log(f"{split} split: {len(info['systems'])} of its {info['n_systems_in_test']} chemical systems sampled; "
            f"{info['candidates']} candidates; {len(info['matched'])} match a {split}-split crystal "
            f"(another {info['dropped_training_twin']} also match a training crystal: dropped)")
    log(f"{len(rows)} matched candidates in all: "
        + ", ".join(f"{n} {k}" for k, n in rows.split.value_counts().items()))
    rejected = defaultdict(int)
    for _, info in infos:
        for k, n in info["rejected"].items():
            rejected[k] += n
    log(f"rejected while generating: {dict(rejected)}")
    df = load_data()
    ensemble = load_model(MODEL)
    manifest = json.loads((MODEL / "ensemble.json").read_text())
    t0 = time.time()
    structures = [structure_from_cif_text(c, i) for c, i in zip(rows.cif, rows.id)]
    rows["volume_error"] = [s.volume / len(s) / v - 1 for s, v in zip(structures, rows.true_volume_per_atom)]
    rows["pred_u"], rows["std_u"] = predict(ensemble, structures)

    # relaxed stage, from the cache
    version = relaxer_of(args).version
    log(f"relaxed stage: {version}")
    rel = {}
    for cid in rows.id:
        p = relaxed_path(cid, version)
        if p.exists():
            rec = json.loads(p.read_text())
            if "cif" in rec:
                rel[cid] = rec
    have = rows.id.isin(rel.keys()).to_numpy()
    rows["pred_r"], rows["std_r"] = np.nan, np.nan
    if have.any():
        rs = [structure_from_cif_text(rel[c]["cif"], c) for c in rows.id[have]]
        pr, sr = predict(ensemble, rs)
        rows.loc[have, "pred_r"], rows.loc[have, "std_r"] = pr, sr
        rows.loc[have, "relax_energy_change"] = [rel[c]["relax_energy_change"] for c in rows.id[have]]
        rows.loc[have, "relaxed_volume_error"] = [s.volume / len(s) / v - 1 for s, v in
                                                  zip(rs, rows.true_volume_per_atom[have])]

    # hulls without each candidate's twins, and the anchors on them
    refs = ReferencePhases(df.formula, df.formation_energy_per_atom, df.material_id)
    energy = dict(zip(df.material_id, df.formation_energy_per_atom))
    hull_e, anchor = [], []
    hulls = {}
    for r in rows.itertuples():
        system = frozenset(r.system.split("-"))
        if r.system not in hulls:
            hulls[r.system] = refs.phases_within(system)
        twins = {reference_name(t, r.formula) for t in r.twins}
        hull = Hull(system, [p for p in hulls[r.system] if p.name not in twins])
        hull_e.append(hull.energy_per_atom(r.formula))
        on = [p for p in hull.stable if "|" in p.name and p.name.split("|", 1)[1] == r.formula]
        anchor.append(on[0].name.split("|", 1)[0] if on else None)
    rows["hull"] = hull_e
    rows["anchor"] = anchor
    rows["true_eh"] = rows.dft - rows.hull
    has_anchor = rows.anchor.notna().to_numpy()
    if has_anchor.any():
        anchor_ids = sorted(set(rows.anchor[has_anchor]))
        a_cif = df.set_index("material_id").loc[anchor_ids, "cif"]
        pa, _ = predict(ensemble, [structure_from_cif_text(c, i) for i, c in a_cif.items()])
        pred_anchor = dict(zip(anchor_ids, pa))
        rows["anchor_dft"] = rows.anchor.map(energy)
        rows["anchor_pred"] = rows.anchor.map(pred_anchor)
    else:
        rows["anchor_dft"] = rows["anchor_pred"] = np.nan
    rows["pred_a"] = anchored_formation_energy(rows.anchor_dft, rows.anchor_pred, rows.pred_u)
    rows["pred_ar"] = anchored_formation_energy(rows.anchor_dft, rows.anchor_pred, rows.pred_r)
    log(f"predictions and hulls: {time.time() - t0:.0f} s")

    ve = rows.volume_error.to_numpy() * 100
    log(f"\nvolume per atom, prototype vs matched crystal: median |error| {np.median(np.abs(ve)):.1f} %, "
        f"mean signed {np.mean(ve):+.1f} % (n={len(ve)})")
    if have.any():
        rv = rows.relaxed_volume_error[have].to_numpy() * 100
        log(f"  after CHGNet relaxation: median |error| {np.median(np.abs(rv)):.1f} %, mean signed {np.mean(rv):+.1f} %;"
            f" CHGNet energy change median {np.median(rows.relax_energy_change[have]):+.3f} eV/atom")

    table, fitted, oof, tails = calibrate(rows, manifest)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 80,
                           "display.float_format", "{:.3f}".format):
        log("\nσ = hypot(scale x model std, add) as (scale, add); E_hull in eV/atom; stable: true E_hull <= 0;"
            " P(stable) Normal unless said")
        log(f"out-of-fold: σ's terms fitted on {FOLDS - 1} of {FOLDS} folds (every row of a chemical system in "
            f"one fold), scored on the fold held out, pooled\n")
        log(table.to_string(index=False))
    log("\nq90/q75 of |error| / σ (out of fold; above 2, no scale of σ meets both lines): "
        + ", ".join(f"{k} {v:.2f}" for k, v in tails.items()))
    log("runs use the unrelaxed and relaxed stages; the anchored estimate is scored above against the model's own dEf "
        "of the same candidates (the 'anchored rows' lines) and is not used for E_hull")

    stage_std = {k: {"scale": s, "add": a} for k, (s, a) in fitted.items()}
    splits = " and ".join(f"{len(i['systems'])} {s}-split" for s, i in infos)
    stage_std["fitted_on"] = (f"benchmarks/rediscovery.py: {len(rows)} substitution prototypes matching crystals "
                              f"of ../shared/data the model did not train on ({splits} systems sampled; "
                              f"relaxed: {int(have.sum())} of <= {args.relax_atoms} atoms, {version}); fitted on all, "
                              f"checked by {FOLDS}-fold cross-validation grouped by chemical system")
    stage_std["out_of_fold"] = oof
    log("\nstage_std (fitted on all matched rows): " + json.dumps(stage_std, ensure_ascii=False))
    if args.write_manifest:
        text = (MODEL / "ensemble.json").read_text()
        m = json.loads(text)
        m["stage_std"] = stage_std
        (MODEL / "ensemble.json").write_text(json.dumps(m, indent=1, ensure_ascii=False))
        log(f"wrote stage_std into {(MODEL / 'ensemble.json').relative_to(ROOT)}")
    top25(ensemble, stage_std)
    rows.drop(columns=["cif"]).to_csv(WORK / "rows.csv", index=False)


def top25(ensemble, stage_std):
    """Top 25 (unrelaxed, ranked by P(stable)) of the default queries, and how many sit >= 0.1 eV/atom
    below a known on-hull ground state of the same composition."""
    from screening.formula import element_set
    from screening.rank import p_stable
    from screening.references import load_references
    from workflows.run.hulls import choose_reference
    from screening.sources.substitution import SubstitutionSource

    s_u = stage_std.get("unrelaxed", {"scale": 1.0, "add": 0.0})
    log(f"\ntop 25 by P(stable), unrelaxed, σ = hypot({s_u['scale']} x model std, {s_u['add']}):")
    src = SubstitutionSource()
    for q in QUERIES:
        t0 = time.time()
        cands = src.fetch(q)
        pred, std = predict(ensemble, [c.structure for c in cands])
        formulas = [c.formula for c in cands]
        systems = {element_set(f) for f in formulas}
        refs, _ = load_references(choose_reference(None, "substitution"), systems)
        hull_e, ground = [], []
        from screening.hull import Hull  # noqa: F401
        hulls = {}
        for f in formulas:
            s = element_set(f)
            if s not in hulls:
                hulls[s] = refs.hull(s)
            hull = hulls[s]
            hull_e.append(hull.energy_per_atom(f))
            on = [p.energy_per_atom for p in hull.stable if "|" in p.name and p.name.split("|", 1)[1] == f]
            ground.append(on[0] if on else np.nan)
        eh = pred - np.array(hull_e)
        sigma = np.hypot(s_u["scale"] * std, s_u["add"])
        p = p_stable(eh, sigma)
        order = np.lexsort((eh, -p))[:25]
        below = [i for i in order if np.isfinite(ground[i]) and pred[i] <= ground[i] - 0.1]
        known = [i for i in order if np.isfinite(ground[i])]
        log(f"  {q}: {len(cands)} candidates ({time.time() - t0:.0f} s); top 25: {len(known)} of a composition "
            f"with an on-hull known crystal, {len(below)} predicted >= 0.1 eV/atom below it "
            f"({', '.join(sorted(formulas[i] for i in below))}); P(stable) of #1/#25: {p[order[0]]:.2f}/{p[order[-1]]:.2f}")
        log("      rejected: " + "; ".join(src.rejection_notes()[:6]))


# -- volumes -------------------------------------------------------------------------------

def volumes(args):
    """Median |error| of volume predictors on test-split crystals (their structure at a wrong volume)."""
    from pymatgen.analysis.structure_prediction.volume_predictor import DLSVolumePredictor

    from screening.sources.substitution import composition_volume, predict_volume
    from screening.structures import structure_from_cif_text

    df = load_data()
    df = df[df.split == "test"].sample(args.n, random_state=args.seed)
    errs = defaultdict(list)
    for c, i, v in zip(df.cif, df.material_id, df.volume):
        s = structure_from_cif_text(c, i)
        base = composition_volume(s.composition)
        s.scale_lattice(base)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            errs["per-element volumes (geometry.json)"].append(base / v - 1)
            errs["DLSVolumePredictor"].append(DLSVolumePredictor().predict(s) / v - 1)
            errs["mean of both (predict_volume)"].append(predict_volume(s) / v - 1)
    log(f"volume per atom of {len(df)} test-split crystals, predicted from composition and structure:")
    for k, e in errs.items():
        a = np.abs(e) * 100
        log(f"  {k:40s} median |error| {np.median(a):4.1f} %  90th pct {np.percentile(a, 90):4.1f} %  "
            f"mean signed {np.mean(e) * 100:+.1f} %")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("generate", "relax", "evaluate", "volumes"))
    ap.add_argument("--systems", type=int, default=600, help="test-split chemical systems to sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=SPLITS, default="test", help="generate: match crystals of this split")
    ap.add_argument("--relax-atoms", type=int, default=12, help="relax matched candidates of at most this many atoms")
    ap.add_argument("--relax-max", type=int, default=300)
    ap.add_argument("--fmax", type=float, help="relax/evaluate: force limit, eV/A (default: the funnel's)")
    ap.add_argument("--max-steps", type=int, help="relax/evaluate: step limit (default: the funnel's)")
    ap.add_argument("--largest-first", action="store_true", help="relax: largest cells first (a second process)")
    ap.add_argument("--n", type=int, default=600, help="volumes: test-split crystals")
    ap.add_argument("--write-manifest", action="store_true", help="store the fitted stage_std in ensemble.json")
    args = ap.parse_args()
    {"generate": generate, "relax": relax, "evaluate": evaluate, "volumes": volumes}[args.step](args)


if __name__ == "__main__":
    main()
