"""summary.json: what the run did, in counts and notes (each note one line a person reads), and what
changed since the previous run of the same query in the same folder."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import pandas as pd

from screening.uncertainty import describe as describe_stage_std
from workflows.mp import entries_note
from workflows.provenance import run_provenance
from workflows.run import funnel, hull_checks
from workflows.run.records import total


def run_summary(run, made, ranked, feat_results: list, infer_results: list, relax_results: list) -> dict:
    opts, ckpt, source, query = run.opts, run.checked.model, run.checked.source, run.checked.query
    n_featurized = sum(fr.featurized for fr in feat_results)
    n_inferred = sum(ir["inferred"] for ir in infer_results)
    counts = run.counts + total(fr.counts for fr in feat_results)
    rank_opts = ranked.rank_opts
    return {
        "query": str(query), "source": run.description, "source_settings": source.settings(),
        "source_note": _source_note(source, made.table), "model": str(opts.model),
        "model_hash": ckpt.hash, "featurizer": run.featurizer.to_dict(),
        "candidates": made.candidates, "unusable": len(made.errors), "unusable_first": made.errors[:5],
        "ranked": len(ranked.shown), "ranked_by": _ranked_by(opts.rank), "new_only": opts.rank.new_only,
        "featurized": n_featurized, "inferred": n_inferred,
        "structure_cache_hit": run.structure_hit, "parsed": sum(fr.parsed for fr in feat_results),
        **({"mp_fetched": counts.mp_fetched, "mp_cached": counts.mp_cached} if source.name == "mp" else {}),
        **_rejections(counts),
        "graph_cache_hits": made.rows - n_featurized, "prediction_cache_hits": made.rows - n_inferred,
        "reference_phases": ranked.phases, "reference_note": ranked.reference_note, "partitions": len(run.parts),
        "model_members": ckpt.members,
        "uncertainty_note": _uncertainty_note(ckpt, rank_opts.unrelaxed_std) + describe_stage_std(
            rank_opts.stage_std, rank_opts.unrelaxed_std),
        "unrelaxed_std": rank_opts.unrelaxed_std, "stage_std": rank_opts.stage_std,
        "flagged": made.flagged, "flagged_dropped": made.flagged if opts.drop_flagged else 0,
        "domain_note": _domain_note(made.domain, made.flagged, opts.drop_flagged),
        **_relax_summary(run.checked.relax, [info for r in relax_results for info in r["relax"]]),
        **funnel.summary(run.checked.relax, ranked.funnel, ranked.everything, ranked.shift),
        **hull_checks.summary(ranked.everything, ranked.anchors, ranked.anchor_why, ranked.thin,
                              made.system_of),
        "workers": len(run.client.scheduler_info().get("workers", {})),
        "wall_seconds": round(time.time() - run.t0, 2),
        # where the time went: the run's stages (wall), and the workers' task seconds summed over workers
        # (fetch, parse, key and featurize per partition; inference)
        "stage_seconds": {k: round(v, 2) for k, v in run.clock.items()},
        "worker_seconds": {"partitions": round(sum(fr.seconds for fr in feat_results), 2),
                           "inference": round(sum(ir["seconds"] for ir in infer_results), 2)},
        "provenance": run_provenance(run.client, ckpt.hash, run.description, [ir["kernel"] for ir in infer_results]),
    }


def _rejections(counts) -> dict:
    """What the substitution source rejected while the workers fetched: counts by reason, and a note."""
    distance, valence, improbable = counts.rejected_distance, counts.rejected_valence, counts.rejected_improbable
    n = sum(distance.values())
    if not (n or valence or improbable):
        return {}
    parts = []
    if n:
        pairs = ", ".join(f"{pair} {k}" for pair, k in sorted(distance.items(), key=lambda kv: (-kv[1], kv[0])))
        parts.append(f"{n} prototype{'s' * (n != 1)} with a too-short distance ({pairs})")
    if valence:
        parts.append(f"{valence} formula{'s' * (valence != 1)} that only rare or fractional oxidation states "
                     f"balance")
    if improbable:
        parts.append(f"{improbable} prototype{'s' * (improbable != 1)} below the substitution probability "
                     f"threshold")
    rejected = {"distance": n, "distance_by_pair": distance, "valence": valence,
                **({"improbable": improbable} if improbable else {})}  # the key only where the filter took some
    return {"counts": {"prototypes_rejected": rejected},
            "rejection_note": "substitution: rejected before screening: " + "; ".join(parts)}


def _relax_summary(plan, infos: List[dict]) -> dict:
    if plan.mode == "top":
        return {}  # funnel.summary says it
    if plan.mode == "none":
        return {"relax": None, "relax_mode": "none",
                "relax_note": "relaxation: none (--relax-top K relaxes the K most promising, --relax all every "
                              "candidate, first)"}
    from screening.relax import Relaxer

    done = [i for i in infos if "relax_error" not in i]
    converged = sum(bool(i.get("relax_converged")) for i in done)
    failed = [i["relax_error"] for i in infos if "relax_error" in i]
    fresh = [i["relax_seconds"] for i in done if not i.get("relax_cached")]
    return {"relax": Relaxer(plan.relaxer).version, "relax_mode": "all", "relaxed": len(done),
            "relax_converged": converged, "relax_unconverged": len(done) - converged,
            "relax_cached": len(done) - len(fresh), "relax_failed": len(failed), "relax_failed_first": failed[:5],
            "relax_seconds_per_crystal": round(sum(fresh) / len(fresh), 2) if fresh else None,
            "relax_note": f"relaxation ({plan.relaxer}, FIRE, fmax 0.05 eV/A): {len(done)} relaxed "
                          f"({converged} converged, {len(done) - len(fresh)} from the cache), {len(failed)} left "
                          f"as they came; relaxed structures in relaxed.jsonl.gz"}


def changes_since(opts, ranked: pd.DataFrame, query: str):
    """What changed since the previous run of the same query in `out_dir` (changes.csv), if there was one."""
    from screening.changes import compare, describe

    out = Path(opts.out_dir)
    try:
        previous = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None, describe(None, "first run in this folder: nothing to compare")
    if previous.get("query") != query:
        return None, describe(None, f"the previous run in this folder screened {previous.get('query')}: nothing compared")
    try:
        # by name, in this folder: its own results, whichever working directory reaches it
        path = out / Path(previous["files"]["results"]).name
        old = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"id": str})
        changes = compare(ranked, old)
    except (OSError, KeyError, ValueError) as e:
        return None, describe(None, f"the previous results could not be read ({type(e).__name__}): nothing compared")
    return changes, describe(changes)


def _ranked_by(rank_options) -> str:
    if rank_options.rank_by == "p_stable":
        return f"most probably stable first (P(E_hull <= {rank_options.stable_within:g} eV/atom))"
    return "lowest predicted E_hull first"


def _domain_note(domain, n_flagged: int, dropped: bool) -> str:
    if domain is None:
        return "domain flags: the model has no domain.json, so candidates are not checked against its training data"
    what = "dropped (--drop-flagged)" if dropped else "kept, see the flags column; --drop-flagged removes them"
    return (f"domain flags: {n_flagged} candidates outside the model's training data "
            f"(rare element, density, atom without neighbours, or unrelaxed): {what}")


def _uncertainty_note(model, unrelaxed_std: float = 0.0) -> str:
    unrelaxed = (f"; unrelaxed candidates: ±{unrelaxed_std:g} eV/atom added to the E_hull std for the "
                 f"unrelaxed structure (--unrelaxed-std)" if unrelaxed_std else "")
    if model.members == 1:
        return ("uncertainty: one model, so no error bar (std columns are 0); "
                "pass an ensemble with --model for one" + unrelaxed)
    note = f"uncertainty: ± is the std over the {model.members} members of the ensemble {model.path}"
    scale = model.meta.get("std_scale")
    if scale:
        note += (", scaled per task on its validation split so one std covers 68 % of errors ("
                 + ", ".join(f"{task} ×{s:g}" for task, s in scale.items()) + ")")
    return note + unrelaxed


def _source_note(source, table: pd.DataFrame) -> Optional[str]:
    """Which entries the run screened, in one line, where the source has a choice (MP: with its database version)."""
    note = entries_note(source)
    if note is None:
        return None
    settings = source.settings()
    settings = settings.get("templates", settings)
    gnome = f"; {int(table['gnome'].sum())} GNoME entries among the candidates" \
        if settings["gnome"] == "included" and "gnome" in table else ""
    return f"source: {note}, db_version {settings['db_version']}{gnome}"
