"""The funnel for hypothetical candidates: predict all, relax the most promising K, predict them again.

A substitution prototype is a known structure type with other elements in it and a rescaled cell,
never relaxed: the model, trained on DFT-relaxed crystals, reads it too low. Relaxing every
candidate with CHGNet costs seconds each, most of them on candidates nobody would look at. So:

    1. every candidate is predicted as generated (stage "unrelaxed") and ranked;
    2. the first K of that ranking (by the run's own criterion: P(stable) or E_hull) are relaxed
       with CHGNet on the workers (tasks.relax_task, through the relax cache);
    3. their relaxed structures are featurized and predicted (stage "relaxed") and all is ranked
       again: a relaxed candidate stands by its relaxed prediction, the rest keep the "unrelaxed"
       flag and that stage's error bar (screening/uncertainty.py), and their E_hull includes the
       median change relaxing made to the relaxed ones' ΔEf (unrelaxed_shift): prototypes as
       generated are predicted too low, and ranked as they came they would push the relaxed ones,
       whose error is known to be smaller, out of the top.

Candidates that relax far (the potential's energy drops by more than FAR_ENERGY, or the relaxed
structure no longer matches its prototype by StructureMatcher) are flagged RELAXED_FAR: their
prototype was a poor guess, and a single relaxation may not have found the right minimum. One that
did not converge within the step limit is flagged UNCONVERGED.

Each relaxation leaves a link in the relax cache from the unrelaxed graph key to the relaxed one
(cache/relax_cache.py), so a warm run neither fetches nor relaxes: it reads K links and the
prediction cache.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pandas as pd

from cache.cache_dir import CacheDir
from screening.errors import ScreenError
from screening.relax import check_relaxer
from screening.uncertainty import KNOWN, RELAXED, UNRELAXED
from workflows.run.plan import slice_of
from workflows.run.records import Fetched, Keyed, Row
from workflows.run.tasks import featurize_task, fetch_partition_task, fetch_task, relax_task
from workflows.cluster.watch import wait_all

RELAXER = "chgnet"
# Candidates the default run relaxes: sized for the default `screen run --query "Li-*-O"` to take
# at most 3 minutes on 2 cores (benchmarks/run.py measures it).
DEFAULT_TOP = 16
# A screening-grade relaxation: the model needs the cell and the bonds near their minimum, not
# forces below 0.05 eV/A; a prototype that needs more steps is flagged UNCONVERGED. Cells of more
# atoms stay unrelaxed: CHGNet's memory and time grow with the cell (and a prototype's cell is too
# small, so it has many neighbours), and one such cell would hold a worker for minutes.
SETTINGS = {"fmax": 0.1, "max_steps": 150, "max_atoms": 24}
MIN_FOR_SHIFT = 5  # relaxed candidates needed before their median shift is applied to the rest
FAR_ENERGY = 1.0  # eV/atom released by the relaxation: the prototype was far from any minimum
# UNCONVERGED: the flag --relax all gives a relaxation left unfinished too (one name for both)
RELAXED_FAR, UNCONVERGED = "relaxed_far", "relaxation did not converge"
DEF = "pred_formation_energy_per_atom"
UNRELAXED_DEF = "pred_formation_energy_per_atom_unrelaxed"  # a relaxed candidate's prediction before it
MODES = ("none", "all", "chgnet")  # chgnet: the older name of all


@dataclass(frozen=True)
class RelaxPlan:
    mode: str  # "none" | "all" (every candidate, before predicting) | "top" (the funnel)
    top: int = 0

    @property
    def relaxer(self) -> Optional[str]:
        return RELAXER if self.mode == "all" else None


def relax_plan(relax: Optional[str], relax_top: Optional[int], hypothetical: bool) -> RelaxPlan:
    """What --relax / --relax-top ask for; by default the funnel for hypothetical candidates only
    (known crystals of a database are DFT-relaxed already)."""
    if relax is not None and relax not in MODES:
        raise ScreenError(f"`relax` {relax}: choose none, all or chgnet (the same as all); "
                          f"`relax_top` K relaxes the K most promising")
    if relax_top is not None:
        if relax_top < 0:
            raise ScreenError(f"`relax_top` {relax_top}: must be 0 or more")
        if relax is not None:
            raise ScreenError(f"`relax_top` {relax_top} and `relax` {relax}: give one of them")
        plan = RelaxPlan("top", relax_top) if relax_top else RelaxPlan("none")
    elif relax in ("all", "chgnet"):
        plan = RelaxPlan("all")
    elif relax == "none" or not hypothetical:
        plan = RelaxPlan("none")
    else:
        plan = RelaxPlan("top", DEFAULT_TOP)
    if plan.mode != "none":
        check_relaxer(RELAXER)
    return plan


def stage_of(hypothetical: bool, relaxed: bool) -> str:
    """A candidate's stage: relaxed, or as its source gives it (Source.hypothetical: made, not known)."""
    if relaxed:
        return RELAXED
    return UNRELAXED if hypothetical else KNOWN


# ---- tasks (run on workers) ----

def pick_task(source, query, part, cache_dir, fetched: Optional[Fetched], positions: List[int]) -> Fetched:
    """The candidates at `positions` of a partition: of `fetched` (its slice of a whole fetch),
    else fetched now."""
    if fetched is None:
        fetched = fetch_partition_task(source, query, part, cache_dir)
    return Fetched([fetched.candidates[i] for i in positions])


def funnel_relax_task(picked: Fetched, cache_dir, device: str) -> dict:
    """tasks.relax_task on these candidates, plus per candidate its relax cache key and
    whether the relaxed structure still matches the prototype (StructureMatcher)."""
    import warnings

    from cache.relax_cache import relax_key
    from screening.sources.substitution import _matcher

    out = relax_task(picked, (0, len(picked)), cache_dir, RELAXER, device, SETTINGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for before, after, info in zip(picked.candidates, out["candidates"], out["relax"]):
            info["relax_key"] = relax_key(before.structure)
            if "relax_error" not in info:
                info["relax_matches_prototype"] = bool(_matcher().fit(before.structure, after.structure))
    return out


def relaxed_rows(relaxed: dict, cache_dir, featurizer) -> dict:
    """featurize_task on the relaxed candidates (those that relaxed), with their relax infos."""
    ok = [(c, info) for c, info in zip(relaxed["candidates"], relaxed["relax"]) if "relax_error" not in info]
    out = featurize_task(Fetched([c for c, _ in ok]), cache_dir, featurizer)
    return {"rows": out.rows, "errors": out.errors, "infos": [info for _, info in ok],
            "failed": [(c.id, info) for c, info in zip(relaxed["candidates"], relaxed["relax"])
                       if "relax_error" in info]}


# ---- the client side ----

@dataclass
class Picked:
    id: str
    key: str  # unrelaxed graph key
    part: int  # partition index, and position in it
    pos: int


@dataclass
class FunnelResult:
    relaxed: Dict[str, dict] = field(default_factory=dict)  # id -> link (key, isolated, density, info)
    predictions: Dict[str, object] = field(default_factory=dict)  # relaxed graph key -> values
    failed: Dict[str, str] = field(default_factory=dict)  # id -> why it stayed unrelaxed
    picked: int = 0
    cached: int = 0
    inferred: int = 0


def pick(ranked: pd.DataFrame, top: int, where: Dict[str, Tuple[int, int]]) -> List[Picked]:
    """The first `top` unrelaxed candidates of a ranking."""
    rows = ranked[ranked["stage"] == UNRELAXED].head(top)
    return [Picked(i, k, *where[i]) for i, k in zip(rows["id"], rows["structure_key"])]


def relax_top(run, picked: List[Picked]) -> FunnelResult:
    """Relax the picked candidates (links from the cache where they are), featurize and predict them.
    `run`: the run's state (pipeline.Run)."""
    from screening.relax import Relaxer

    result = FunnelResult(picked=len(picked))
    cache = CacheDir(run.opts.cache_dir).relaxed(Relaxer(RELAXER, **SETTINGS).version)
    store = CacheDir(run.opts.cache_dir).graphs(run.featurizer) if picked else None
    todo = []
    for p in picked:
        link = cache.get_link(p.key)
        if link is not None and store.contains(link["key"]):
            result.relaxed[p.id] = link
            result.cached += 1
        else:
            todo.append(p)
    if todo:
        _relax(run, todo, cache, result)
    keys = sorted({link["key"] for link in result.relaxed.values()})
    if keys:
        run.report("infer_relaxed", 0, 1)
        keyed = Keyed([Row(None, "", "", "", {}, k, 0, 0.0, "") for k in keys])
        done = wait_all(run.client, [run.infer(keyed)], **run.wait)[0]
        result.predictions, result.inferred = done["predictions"], done["inferred"]
        run.report("infer_relaxed", 1, 1)
    return result


def _relax(run, todo: List[Picked], cache, result: FunnelResult) -> None:
    client, opts, source, query = run.client, run.opts, run.checked.source, run.checked.query
    by_part: Dict[int, List[Picked]] = {}
    for p in todo:
        by_part.setdefault(p.part, []).append(p)
    whole = run.whole
    if whole is None and not all(run.parts[i].fetchable() for i in by_part):
        whole = client.submit(fetch_task, source, query, pure=False)  # a source that cannot split: fetch it again
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    size = max(1, min(10, math.ceil(len(todo) / (3 * workers))))  # chunks: every worker busy, progress moves
    chunks = []
    for i, items in by_part.items():
        part = run.parts[i]
        fetched = None if whole is None or part.fetchable() else \
            client.submit(operator.getitem, whole, slice_of(part), pure=False)
        for start in range(0, len(items), size):
            picked = client.submit(pick_task, source, query, part, opts.cache_dir, fetched,
                                   [p.pos for p in items[start:start + size]], pure=False)
            relaxed = client.submit(funnel_relax_task, picked, opts.cache_dir, opts.device, resources=run.gpu,
                                    pure=False)
            chunks.append((items[start:start + size],
                           client.submit(relaxed_rows, relaxed, opts.cache_dir, run.featurizer, pure=False)))
    run.report("relax", 0, len(chunks))
    done = wait_all(client, [f for _, f in chunks], on_done=run.progress and (lambda d, n: run.report("relax", d, n)),
                    **run.wait)
    for (items, _), out in zip(chunks, done):
        _keep_links(items, out, cache, result)


def _keep_links(items: List[Picked], out: dict, cache, result: FunnelResult) -> None:
    by_id = {p.id: p for p in items}
    for row, info in zip(out["rows"], out["infos"]):
        link = {"key": row.key, "isolated": row.isolated, "density": row.density,
                "info": {k: v for k, v in info.items() if k != "relax_cached"}}
        cache.put_link(by_id[row.id].key, link)
        result.relaxed[row.id] = link
    for c_id, info in out["failed"]:
        result.failed[c_id] = info["relax_error"]
    for message in out["errors"]:  # relaxed, but the relaxed structure could not be featurized
        result.failed.setdefault(message.split(":")[0], message)


def relaxed_structures(opts, table: pd.DataFrame, result: FunnelResult) -> List[dict]:
    """relaxed.jsonl.gz's lines for the funnel's relaxed candidates, read from the relax cache."""
    from screening.relax import Relaxer

    cache = CacheDir(opts.cache_dir).relaxed(Relaxer(RELAXER, **SETTINGS).version)
    rows = table.set_index("id")
    out = []
    for c_id, link in result.relaxed.items():
        hit = cache.get(link["info"]["relax_key"])
        if hit is not None:
            out.append({"source": rows.at[c_id, "source"], "id": c_id, "formula": rows.at[c_id, "formula"],
                        "structure_key": link["key"], **link["info"], "structure": hit[0]})
    return out


def flags_of(info: dict) -> List[str]:
    """The funnel's flags of one relaxation."""
    out = []
    if info.get("relax_energy_change", 0.0) < -FAR_ENERGY or info.get("relax_matches_prototype") is False:
        out.append(RELAXED_FAR)
    if info.get("relax_converged") is False:
        out.append(UNCONVERGED)
    return out


INFO_COLUMNS = ("relax_steps", "relax_converged", "relax_energy_change", "relax_volume_change",
                "relax_matches_prototype")


def apply(table: pd.DataFrame, result: FunnelResult, domain, outputs, system_of: Dict[str, str]) -> pd.DataFrame:
    """The table with the relaxed candidates' predictions, keys, stage, relax columns and flags.
    Columns are set whole (missing values NaN, as a read-back results.csv has them)."""
    import numpy as np

    from screening.model_info import prediction_columns

    t = table.copy()
    n = len(outputs)
    new: Dict[str, list] = {col: list(t[col]) if col in t.columns else [np.nan] * len(t)
                            for col in (*INFO_COLUMNS, "unrelaxed_structure_key", UNRELAXED_DEF)}
    for col in ("flags", "stage", "structure_key", *prediction_columns(outputs, np.zeros((1, n)), np.zeros((1, n)))):
        new[col] = list(t[col])
    position = {c_id: i for i, c_id in enumerate(t["id"])}
    for c_id, link in result.relaxed.items():
        i = position[c_id]
        new[UNRELAXED_DEF][i] = new[DEF][i]
        values = result.predictions[link["key"]][None, :]
        for col, v in prediction_columns(outputs, values[:, :n], values[:, n:]).items():
            new[col][i] = float(v[0])
        flags = [] if domain is None else domain.flags(
            system_of[t["formula"].iloc[i]].split("-"), link["isolated"], unrelaxed=False, density=link["density"])
        new["flags"][i] = "; ".join(flags + flags_of(link["info"]))
        new["stage"][i] = RELAXED
        new["unrelaxed_structure_key"][i] = new["structure_key"][i]
        new["structure_key"][i] = link["key"]
        for col in INFO_COLUMNS:
            new[col][i] = link["info"].get(col, np.nan)
    for col, values in new.items():
        t[col] = values
    return t


def unrelaxed_shift(table: pd.DataFrame) -> Optional[float]:
    """The median change relaxation made to the relaxed candidates' predicted ΔEf (eV/atom, at least 0), or None
    with fewer than MIN_FOR_SHIFT of them. Prototypes as generated are predicted too low (cells too
    small, bonds unlike any relaxed crystal's); the candidates left unrelaxed are ranked with this added."""
    if UNRELAXED_DEF not in table.columns:
        return None
    relaxed = table[table["stage"] == RELAXED]
    delta = (relaxed[DEF].astype(float) - relaxed[UNRELAXED_DEF].astype(float)).dropna()
    # One-sided: the known bias of a prototype as generated is low; a run whose relaxed candidates came
    # out lower says nothing about the others being too high, and pushing them lower would only rank
    # them above the relaxed ones.
    return round(max(float(delta.median()), 0.0), 4) if len(delta) >= MIN_FOR_SHIFT else None


def summary(plan: RelaxPlan, result: Optional[FunnelResult], table: pd.DataFrame, shift: Optional[float]) -> dict:
    """summary.json's account of the funnel."""
    if plan.mode != "top" or result is None:
        return {}
    from screening.relax import Relaxer

    flags = table["flags"].fillna("").str.split("; ")
    far = int(flags.map(lambda f: RELAXED_FAR in f).sum())
    unconverged = int(flags.map(lambda f: UNCONVERGED in f).sum())
    fresh = len(result.relaxed) - result.cached
    return {"relax": Relaxer(RELAXER, **SETTINGS).version, "relax_mode": f"top {plan.top}", "relax_top": plan.top,
            "relaxed": len(result.relaxed), "relax_cached": result.cached, "relax_failed": len(result.failed),
            "relax_failed_first": list(result.failed.values())[:5], "relaxed_far": far, "relax_unconverged": unconverged,
            "relax_inferred": result.inferred, "unrelaxed_shift": shift,
            "relax_note": f"relaxation (funnel, {RELAXER}, FIRE, fmax {SETTINGS['fmax']:g} eV/A, at most "
                          f"{SETTINGS['max_steps']} steps): the {result.picked} most promising "
                          f"unrelaxed candidates, {len(result.relaxed)} relaxed ({fresh} now, {result.cached} from the "
                          f"cache) and predicted again, {len(result.failed)} left as they came; {far} flagged "
                          f"{RELAXED_FAR} (energy drop > {FAR_ENERGY:g} eV/atom or no longer their prototype), "
                          f"{unconverged} not converged; "
                          + (f"the others' E_hull includes the median change relaxing made to the relaxed ones' "
                             f"ΔEf ({shift:+.3f} eV/atom); " if shift is not None else "")
                          + "--relax-top K, --relax all|none"}
