"""The screening task graph: fetch -> (relax) -> featurize into the store -> infer -> rank -> report.

    partition (1/partition) workers fetch their own partition (workflows/partitions.py; a
                            source that cannot split is fetched by one worker and sliced;
                            MP entries through the entry cache, only new or changed ones fetched),
                            key it and store the graphs the store lacks as one published
                            unit; a warm run reads the keyed rows from the structure cache
    relax (1/10 candidates) only with --relax all: CHGNet relaxation, via the relax cache
    infer (1/partition)     graphs -> predictions, via the prediction cache;
                            the model is loaded once per worker; GPU tasks
                            ask for the Dask resource "GPU" so a mixed
                            cluster routes them to GPU workers
    rank, report            on the client: hull, anchors (screening/anchors.py), filters, files, table, plot
    funnel                  hypothetical candidates: the most promising K relaxed, predicted again
                            and ranked again (workflows/funnel.py)
"""
from __future__ import annotations

import errno
import json
import operator
import os
import shutil
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pandas as pd

from cache.atomic import TMP_PREFIX
from cache.cache_dir import CacheDir
from screening import kernel_build
from screening.domain import UNRELAXED, Domain, domain_path
from screening.model_info import DEVICES, prediction_columns, resolve_model_path
from screening.errors import ScreenError
from screening.featurize import FeaturizerConfig
from screening.properties import METAL_GAP_EV
from screening.query import parse_query
from screening.rank import RankOptions, rank
from screening.references import check_reference
from screening.sources import open_source
from screening.sources.base import known_column
from screening.sources.mp import DEFAULT_RATE
from screening.uncertainty import describe as describe_stage_std
from workflows import funnel, hull_checks, mp, worker_model
from workflows.hulls import hulls
from workflows.partitions import (cache_columns, featurize_task, fetch_partition, keep_plan, part_key, partition_task, plan,
                                  prediction_cache, settle_budgets, slice_of, source_partitions, split_plan,
                                  total_fetch_counts)
from workflows.provenance import run_provenance
from workflows.cluster.watch import NO_WORKER_TIMEOUT_S, disk_full, is_disk_full, wait_all

@dataclass
class RunOptions:
    query: str
    exclude: List[str] = field(default_factory=list)
    source: Optional[str] = None  # None: mp with MP_API_KEY, else substitution
    reference: Optional[str] = None  # source spec of reference phases for the hull
    gnome: bool = False  # also the Materials Project's GNoME r2SCAN entries (--gnome)
    mp_rate: int = DEFAULT_RATE  # requests per second to the MP API, all workers together (--mp-rate)
    model: str = ""  # checkpoint path
    device: str = "auto"  # auto | cpu | cuda
    cache_dir: str = "screen-cache"
    out_dir: str = "screen-results"
    partition_size: int = 250
    max_atoms: int = 20_000
    output_format: str = "csv"  # csv | parquet
    rank: RankOptions = field(default_factory=RankOptions)
    drop_flagged: bool = False  # leave out candidates outside the model's domain (screening/domain.py)
    no_worker_timeout: float = NO_WORKER_TIMEOUT_S  # fail when no Dask worker is alive this long
    relax: Optional[str] = None  # none | all | chgnet (= all); None: the funnel for hypothetical sources
    relax_top: Optional[int] = None  # the funnel's K (workflows/funnel.py)
    _checked: Optional["Checked"] = field(default=None, init=False, repr=False, compare=False)

    @property
    def error_log(self) -> Path:
        """Where the full traceback of an unexpected error goes (the one-line message names it)."""
        return Path(self.out_dir) / "error.log"

    def check(self) -> "Checked":
        """Every option, before a cluster starts or anything is fetched: one line per mistake.
        What it parsed and opened is kept, so the run uses it instead of doing it again."""
        query = parse_query(self.query, self.exclude)
        source = open_source(self.source, lazy=True, gnome=self.gnome, rate=self.mp_rate)
        if self.rank.new_only and source.name != "mp":
            raise ScreenError(f"--new-only: the source {source.name} does not say which crystals are on "
                              f"its hull or known experimentally (the Materials Project does: --source mp)")
        if self.partition_size < 1:
            raise ScreenError(f"--partition-size {self.partition_size}: must be at least 1")
        if self.rank.top is not None and self.rank.top < 1:
            raise ScreenError(f"--top {self.rank.top}: must be at least 1")
        self.rank.check()
        if self.device not in DEVICES:
            raise ScreenError(f"--device {self.device}: choose {', '.join(DEVICES)}")
        kernel_build.mode()  # SCREEN_KERNEL, which the workers inherit: checked here, not after the fetch
        if self.output_format not in ("csv", "parquet"):
            raise ScreenError(f"--format {self.output_format}: choose csv or parquet")
        relax = funnel.relax_plan(self.relax, self.relax_top, funnel.is_hypothetical(source.name))
        if not self.no_worker_timeout > 0:
            raise ScreenError(f"--no-worker-timeout {self.no_worker_timeout:g}: must be more than 0 seconds")
        if self.reference:  # a reference file that is not there fails now, not after the inference
            check_reference(self.reference)
        check_folders(self.out_dir, self.cache_dir)
        # a missing or damaged model file fails here; the client only needs its description
        model, model_stamp = worker_model.described(self.model, self.cache_dir)
        # (nothing is created until every check passed: the run makes the folders, and keeps the description)
        self._checked = Checked(query, source, model, model_stamp, relax)
        return self._checked

    def checked(self) -> "Checked":
        return self._checked or self.check()


@dataclass
class Checked:
    """The options as objects, made once by RunOptions.check: the parsed query, the source
    (opened lazily: it pickles without its data) and the model's description (ModelInfo)."""
    query: object
    source: object
    model: object
    model_stamp: Optional[str] = None  # where the run keeps the model's description (None: kept already)
    relax: funnel.RelaxPlan = funnel.RelaxPlan("none")


# ---- tasks (run on workers; module-level so they pickle by reference) ----

def fetch_partition_task(source, query, part, cache_dir):
    return fetch_partition(source, query, part, cache_dir)


def fetch_task(source, query):
    """`source` was opened on the client, so its MP key and endpoint are the user's, not the worker's env.
    `query` is the parsed Query: parsed once, on the client, and shipped to the tasks as it is."""
    try:
        return source.fetch(query)
    finally:  # the request budget's leases go back before the task ends, not after the cluster closed
        settle_budgets(source)


RELAX_CHUNK = 10  # candidates per relax task: a few seconds each on a CPU, so progress moves


def fetched_candidates(fetched) -> list:
    """The candidates of fetch_task's list or fetch_partition_task's (candidates, counts)."""
    return fetched[0] if isinstance(fetched, tuple) else fetched


def fetched_size(fetched):
    """(how many candidates, fetch counts) of a fetch: all the client needs to plan the relax tasks."""
    return len(fetched_candidates(fetched)), fetched[1] if isinstance(fetched, tuple) else {}


def relax_task(fetched, rows, cache_dir, relaxer_name, device, settings: Optional[dict] = None):
    """Relaxed copies of a fetch's candidates[rows[0]:rows[1]] (through the relax cache) and, per
    candidate, what happened. `settings`: Relaxer's fmax, max_steps, max_atoms where not its defaults."""
    from pymatgen.core import Structure

    from cache.relax_cache import relax_key
    from screening.predict import resolve_device
    from screening.relax import Relaxer
    from screening.sources.base import Candidate
    from screening.structures import check_distances

    candidates = fetched_candidates(fetched)[rows[0]:rows[1]]
    relaxer = Relaxer(relaxer_name, device=str(resolve_device(device)), **(settings or {}))
    cache = CacheDir(cache_dir).relaxed(relaxer.version)
    out, infos = [], []
    for c in candidates:
        try:
            check_distances(c.structure, f"{c.source} {c.id}")  # not worth relaxing; featurize_task refuses it
            key = relax_key(c.structure)
            hit = cache.get(key)
            cached = hit is not None
            if hit is None:
                r = relaxer.relax(c.structure)
                hit = (r.structure.as_dict(), r.info())
                cache.put(key, *hit)
            structure = Structure.from_dict(hit[0])
            out.append(Candidate(c.source, c.id, c.formula, structure, known=c.known))
            infos.append(dict(hit[1], relax_cached=cached))
        except ScreenError as e:  # not relaxed: predicted as it came, and it says so
            out.append(c)
            infos.append({"relax_error": str(e)})
    return {"candidates": out, "relax": infos}


def joined_candidates(relaxed: list) -> list:
    return [c for r in relaxed for c in r["candidates"]]


def check_writable(option: str, folder: Path) -> None:
    """Whether the folder can be written (or made, by whoever writes there later), without making it: a
    probe file written and removed in the nearest folder that exists, so a bad path fails before the run
    and a run that fails a later check leaves nothing behind."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        probe = existing / f".screen-probe-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ScreenError(f"{option} {folder}: cannot write there ({e.strerror or type(e).__name__})") from None


def check_folders(out_dir, cache_dir) -> None:
    """--out and --cache: each writable, and the results never inside the cache: a cache folder carries
    CACHEDIR.TAG, so backup tools skip what lies in it, and `screen cache clear` removes it all."""
    out, cache = Path(out_dir).resolve(), Path(cache_dir).resolve()
    if out == cache or cache in out.parents:
        where = "is" if out == cache else "lies inside"
        raise ScreenError(f"--out {out_dir}: {where} the cache folder (--cache {cache_dir}), which backups skip "
                          f"and `screen cache clear` empties; give the results a folder of their own")
    for option, folder in (("--out", out_dir), ("--cache", cache_dir)):
        check_writable(option, Path(folder))


def infer_task(featurized, cache_dir, model_path, device, featurizer: FeaturizerConfig, max_atoms, model_hash, columns):
    """Predictions for a partition's keys; only keys missing from the prediction cache run the model,
    so a warm run never loads it."""
    t0 = time.perf_counter()
    keys = [row[5] for row in featurized["rows"]]
    cache = prediction_cache(cache_dir, model_hash, tuple(columns))
    known = cache.get_many(keys)
    todo = sorted({k for k in keys if k not in known})
    kernel = None
    if todo:
        model = worker_model.get_model(model_path, device, expected_hash=model_hash)  # the key's weights or none
        store = CacheDir(cache_dir).graphs(featurizer)
        graphs = [store.get(k) for k in todo]
        pred = np.concatenate(model.predict_graphs(graphs, max_atoms=max_atoms), axis=1)
        cache.put_many(todo, pred)
        known.update(zip(todo, pred))
        kernel = worker_model.inference_path(device)
    return {"predictions": {k: np.asarray(known[k], dtype=np.float32) for k in keys}, "inferred": len(todo),
            "seconds": time.perf_counter() - t0, "kernel": kernel}


def _partitions(client, opts: RunOptions, source, query, description, featurizer, wait, progress):
    """(partitions, their partition_task futures, whether the structure cache knew every partition,
    the future of the whole fetch or None)."""
    structures = CacheDir(opts.cache_dir).structures()
    parts, planned = plan(source, query, opts.partition_size, structures, description,
                          on_fetch=progress and (lambda: progress("fetch", 0, 1)))
    whole = None
    if parts is not None and planned and not all(p.fetchable() for p in parts) and not all(
            structures.has_keyed(part_key(query.key(), p.label), description, featurizer.fingerprint()) for p in parts):
        parts = None  # slices of a whole fetch, some of them not remembered: fetch again
    if parts is None:  # the source cannot split before fetching: one worker fetches, workers slice
        if progress:
            progress("fetch", 0, 1)
        whole = client.submit(fetch_task, source, query, pure=False)
        n = wait_all(client, [client.submit(len, whole, pure=False)], **wait)[0]
        parts = split_plan(n, opts.partition_size)
    feats = [client.submit(partition_task, source, query, p, description, opts.cache_dir, featurizer,
                           None if whole is None else client.submit(operator.getitem, whole, slice_of(p), pure=False),
                           pure=False) for p in parts]
    if not planned:
        keep_plan(structures, query, description, parts)
    return parts, feats, planned and whole is None, whole


def _relaxed_partitions(client, opts: RunOptions, source, query, featurizer, gpu, wait, progress):
    """With --relax: each fetched partition is relaxed in chunks on workers, then featurized.
    The client learns each partition's size and fetch counts only; the relaxed structures
    come to it later, with the relax results, because relaxed.jsonl.gz holds every one."""
    if progress:
        progress("fetch", 0, 1)
    plan_parts = source_partitions(source, query, opts.partition_size)
    fetches = [client.submit(fetch_task, source, query, pure=False)] if plan_parts is None else \
        [client.submit(fetch_partition_task, source, query, p, opts.cache_dir, pure=False) for p in plan_parts]
    sizes = wait_all(client, [client.submit(fetched_size, f, pure=False) for f in fetches], **wait)
    counts = total_fetch_counts(c for _, c in sizes)
    parts, feats, relaxes = [], [], []
    for fetched, (n, _) in zip(fetches, sizes):
        for start in range(0, n, opts.partition_size):
            stop = min(start + opts.partition_size, n)
            chunks = [client.submit(relax_task, fetched, (i, min(i + RELAX_CHUNK, stop)), opts.cache_dir,
                                    funnel.RELAXER, opts.device, resources=gpu, pure=False)
                      for i in range(start, stop, RELAX_CHUNK)]
            parts.append(stop - start)
            relaxes.append(chunks)
            joined = client.submit(joined_candidates, chunks, pure=False)
            feats.append(client.submit(featurize_task, joined, opts.cache_dir, featurizer, pure=False))
    return parts, feats, relaxes, False, counts


# ---- the run (client side) ----

@dataclass
class RunResult:
    table: pd.DataFrame  # ranked
    summary: dict
    files: dict


def run_screening(client, opts: RunOptions, progress: Optional[Callable[[str, int, int], None]] = None,
                  on_started: Optional[Callable[[], None]] = None) -> RunResult:
    t0 = time.time()
    checked = opts.checked()  # bad options fail here, before any work
    query, source, ckpt = checked.query, checked.source, checked.model
    mp.share_budget(client, source)  # one MP request budget for every worker
    featurizer = ckpt.featurizer
    cache_dir = CacheDir(opts.cache_dir).claim()
    worker_model.keep(opts.cache_dir, checked.model_stamp, ckpt)
    if on_started:
        on_started()
    wait = dict(no_worker_timeout=opts.no_worker_timeout, log=opts.error_log)

    description = source.describe()
    gpu = {"GPU": 1} if _wants_gpu(client, opts.device) else None
    plan = checked.relax
    whole = None
    if plan.mode == "all":
        parts, feats, relaxes, structure_hit, fetch_counts = _relaxed_partitions(client, opts, source, query,
                                                                                 featurizer, gpu, wait, progress)
    else:
        parts, feats, structure_hit, whole = _partitions(client, opts, source, query, description, featurizer,
                                                         wait, progress)
        relaxes, fetch_counts = [], None
    columns = cache_columns(ckpt.outputs)
    infers = [client.submit(infer_task, f, opts.cache_dir, str(opts.model), opts.device, featurizer,
                            opts.max_atoms, ckpt.hash, columns, resources=gpu, pure=False) for f in feats]

    def reporter(stage: str):
        def report(done: int, total: int) -> None:
            if progress:
                progress(stage, done, total)
        return report

    relax_results = []
    if relaxes:
        relax_results = wait_all(client, [f for chunks in relaxes for f in chunks], on_done=reporter("relax"), **wait)
    reporter("infer")(0, len(infers))
    infer_results = wait_all(client, infers, on_done=reporter("infer"), **wait)
    feat_results = wait_all(client, feats, **wait)  # finished already: each infer task needed its own
    clock: Dict[str, float] = {}

    def lap(stage: str) -> None:  # the wall seconds since the last stage ended
        clock[stage] = time.time() - t0 - sum(clock.values())

    lap("fetch_featurize_infer")  # pipelined on the workers
    n_candidates = sum(len(fr["rows"]) + len(fr["errors"]) for fr in feat_results)
    if not n_candidates:
        raise ScreenError(f"--query {opts.query}: no candidates found in {description}")

    # assemble the table from the partitions' keyed rows: no structure on the client (but with --relax)
    rows, errors = [], []
    outputs = ckpt.outputs
    provenance = {"model_hash": ckpt.short_hash, "featurizer": f"v{featurizer.version}-{featurizer.fingerprint()}"}
    domain = Domain.read(domain_path(opts.model))
    relaxed = _per_partition(relax_results, parts)
    relaxed_structures, system_of, where = [], {}, {}
    for p, (fr, ir, rx) in enumerate(zip(feat_results, infer_results, relaxed)):
        errors.extend(fr["errors"])
        for i, c_source, c_id, formula, known, key, isolated, density, system in fr["rows"]:
            rc, info = rx[i]
            row = {"source": c_source, "id": c_id, "formula": formula}
            system_of[formula] = system
            where[c_id] = (p, i)  # for the funnel, which fetches the candidates it relaxes again
            stage = funnel.stage_of(c_source, relaxed=plan.mode == "all" and "relax_error" not in info)
            row["stage"] = stage
            flags = [UNRELAXED] * (stage == funnel.UNRELAXED) if domain is None else domain.flags(
                system.split("-"), isolated, unrelaxed=stage == funnel.UNRELAXED, density=density)
            flags += funnel.flags_of(info)
            if plan.mode == "all":
                row.update({k: v for k, v in info.items() if k != "relax_cached"})
                if "relax_error" not in info:
                    relaxed_structures.append({"source": c_source, "id": c_id, "formula": formula,
                                               "structure_key": key, **info, "structure": rc.structure.as_dict()})
            row["flags"] = "; ".join(flags)
            values = ir["predictions"][key][None, :]
            n = len(outputs)
            row.update({c: float(v[0]) for c, v in prediction_columns(outputs, values[:, :n], values[:, n:]).items()})
            for name, value in known.items():
                row[known_column(name)] = value
            row["structure_key"] = key
            row.update(provenance)
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        raise ScreenError(f"--query {opts.query}: none of the {n_candidates} candidates could be featurized "
                          f"(first problem: {errors[0] if errors else 'unknown'})")
    n_rows = len(table)  # before --drop-flagged: the cache hits are counted over every row made
    n_flagged = int((table["flags"] != "").sum())
    if opts.drop_flagged:
        table = table[table["flags"] == ""].reset_index(drop=True)
        if table.empty:
            raise ScreenError(f"--drop-flagged: all {n_flagged} candidates are flagged; nothing left to rank")
    members: dict = {}
    for formula, c_id in zip(table["formula"], table["id"]):
        members.setdefault(system_of[formula], []).append((formula, c_id))
    lap("table")
    references, reference_note, n_phases = hulls(client, opts, source, members, wait)
    lap("hulls")
    rank_opts = replace(opts.rank, top=None)  # the plot shows them all
    if rank_opts.unrelaxed_std is None:
        rank_opts.unrelaxed_std = float(ckpt.meta.get("unrelaxed_std", 0.0))
    if rank_opts.stage_std is None:
        rank_opts.stage_std = ckpt.meta.get("stage_std")
    anchors, anchor_why = hull_checks.load_anchors(opts, source, ckpt, table)

    def ranking(t: pd.DataFrame) -> pd.DataFrame:
        t = hull_checks.with_anchors(hull_checks.flag_thin(t, references.thin, system_of), anchors)
        return rank(t, references, rank_opts)

    everything = ranking(table)
    lap("rank")
    funnel_result, shift = None, None
    if plan.mode == "top" and plan.top:
        picked = funnel.pick(everything, plan.top, where)
        funnel_result = funnel.relax_top(client, opts, source, query, parts, whole, picked, featurizer, ckpt, gpu,
                                         wait, infer_task, progress)
        table = funnel.apply(table, funnel_result, domain, outputs, system_of)
        relaxed_structures = _funnel_structures(opts, table, funnel_result)
        lap("relax_top")
        shift = funnel.unrelaxed_shift(table)
        rank_opts.unrelaxed_shift = shift or 0.0
        everything = ranking(table)
        lap("rank_relaxed")
    ranked = everything.head(opts.rank.top) if opts.rank.top else everything

    n_featurized = sum(fr["featurized"] for fr in feat_results)
    if fetch_counts is None:  # from the partition tasks
        fetch_counts = total_fetch_counts(feat_results)
    n_inferred = sum(ir["inferred"] for ir in infer_results)
    summary = {
        "query": str(query), "source": description, "source_settings": source.settings(),
        "source_note": _source_note(source, table), "model": str(opts.model),
        "model_hash": ckpt.hash, "featurizer": featurizer.to_dict(),
        "candidates": n_candidates, "unusable": len(errors), "unusable_first": errors[:5],
        "ranked": len(ranked), "ranked_by": _ranked_by(opts.rank), "new_only": opts.rank.new_only,
        "featurized": n_featurized, "inferred": n_inferred,
        "structure_cache_hit": structure_hit, "parsed": sum(fr["parsed"] for fr in feat_results),
        **(fetch_counts if source.name == "mp" else {}),
        "graph_cache_hits": n_rows - n_featurized, "prediction_cache_hits": n_rows - n_inferred,
        "reference_phases": n_phases, "reference_note": reference_note, "partitions": len(parts),
        "model_members": ckpt.members,
        "uncertainty_note": _uncertainty_note(ckpt, rank_opts.unrelaxed_std) + describe_stage_std(
            rank_opts.stage_std, rank_opts.unrelaxed_std),
        "unrelaxed_std": rank_opts.unrelaxed_std, "stage_std": rank_opts.stage_std,
        "flagged": n_flagged, "flagged_dropped": n_flagged if opts.drop_flagged else 0,
        "domain_note": _domain_note(domain, n_flagged, opts.drop_flagged),
        **_relax_summary(opts, plan, [info for r in relax_results for info in r["relax"]]),
        **funnel.summary(plan, funnel_result, everything, shift),
        **hull_checks.summary(everything, anchors, anchor_why, rank_opts.anchor, references.thin, system_of),
        "workers": len(client.scheduler_info().get("workers", {})),
        "wall_seconds": round(time.time() - t0, 2),
        # where the time went: the run's stages (wall), and the workers' task seconds summed over workers
        # (fetch, parse, key and featurize per partition; inference)
        "stage_seconds": {k: round(v, 2) for k, v in clock.items()},
        "worker_seconds": {"partitions": round(sum(fr["seconds"] for fr in feat_results), 2),
                           "inference": round(sum(ir["seconds"] for ir in infer_results), 2)},
        "provenance": run_provenance(client, ckpt.hash, description, [ir["kernel"] for ir in infer_results]),
    }
    cache_dir.record_run(runs=1, structure_hits=int(structure_hit),
                       structure_misses=int(not structure_hit), graph_hits=summary["graph_cache_hits"],
                       graph_misses=n_featurized, prediction_hits=summary["prediction_cache_hits"],
                       prediction_misses=n_inferred)
    changes, summary["changes"] = _changes(opts, ranked, str(query))
    files = write_outputs(ranked, everything, summary, opts, relaxed_structures, changes)
    return RunResult(ranked, summary, files)


def _relax_summary(opts: RunOptions, plan, infos: List[dict]) -> dict:
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


def _funnel_structures(opts: RunOptions, table: pd.DataFrame, result) -> List[dict]:
    """relaxed.jsonl.gz's lines for the funnel's relaxed candidates, read from the relax cache."""
    from screening.relax import Relaxer

    cache = CacheDir(opts.cache_dir).relaxed(Relaxer(funnel.RELAXER, **funnel.SETTINGS).version)
    rows = table.set_index("id")
    out = []
    for c_id, link in result.relaxed.items():
        hit = cache.get(link["info"]["relax_key"])
        if hit is not None:
            out.append({"source": rows.at[c_id, "source"], "id": c_id, "formula": rows.at[c_id, "formula"],
                        "structure_key": link["key"], **link["info"], "structure": hit[0]})
    return out


def _per_partition(relax_results: list, parts: list) -> list:
    """Per partition, (relaxed candidate, relax info) for each candidate; (None, {}) without --relax
    (with it, parts are the partitions' sizes)."""
    if not relax_results:
        return [defaultdict(lambda: (None, {})) for _ in parts]
    flat = [(c, info) for r in relax_results for c, info in zip(r["candidates"], r["relax"])]
    out, i = [], 0
    for size in parts:
        out.append(flat[i:i + size])
        i += size
    return out


def _changes(opts: RunOptions, ranked: pd.DataFrame, query: str):
    """What changed since the previous run of the same query in --out (changes.csv), if there was one."""
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


def _wants_gpu(client, device: str) -> bool:
    if device == "cpu":
        return False
    workers = client.scheduler_info().get("workers", {}).values()
    has_gpu_workers = any(w.get("resources", {}).get("GPU", 0) > 0 for w in workers)
    if device == "cuda" and not has_gpu_workers:
        raise ScreenError("--device cuda: no worker advertises the GPU resource (start workers with --resources GPU=1)")
    return has_gpu_workers


def _source_note(source, table: pd.DataFrame) -> Optional[str]:
    """Which entries the run screened, in one line, where the source has a choice (MP: with its database version)."""
    note = source.entries_note()
    if note is None:
        return None
    settings = source.settings()
    settings = settings.get("templates", settings)
    gnome = f"; {int(table['gnome'].sum())} GNoME entries among the candidates" \
        if settings["gnome"] == "included" and "gnome" in table else ""
    return f"source: {note}, db_version {settings['db_version']}{gnome}"


def write_outputs(ranked: pd.DataFrame, everything: pd.DataFrame, summary: dict, opts: RunOptions,
                  relaxed: Optional[List[dict]] = None, changes: Optional[pd.DataFrame] = None) -> dict:
    """results, plot, relaxed.jsonl.gz (with --relax), changes.csv (what changed since the previous
    run), report.html and summary.json, published as one set or not at all.

    Everything is written into a staging folder inside --out first and then moved in by rename,
    so a failure midway (a full disk, a plot that cannot be drawn, a name that cannot be
    replaced) leaves the previous run's set as it was, and no stray part of this one.
    """
    from screening.plots import hull_vs_gap
    from workflows.html_report import write_report

    out = Path(opts.out_dir)
    stage = out / f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}"
    names = {"results": f"results.{opts.output_format}"}
    try:
        stage.mkdir(parents=True)
        if opts.output_format == "parquet":
            ranked.to_parquet(stage / names["results"], index=False)
        else:
            ranked.to_csv(stage / names["results"], index=False)
        if len(everything) and "pred_band_gap" in everything:
            source = summary["source"].split(" ")[0]  # without the data hash
            if len(source) > 40:
                source = "..." + source[-37:]
            names["plot"] = "hull_vs_gap.png"
            hull_vs_gap(everything, stage / names["plot"], label_top=min(opts.rank.top or 10, 10),
                        title=f"{opts.query}: {len(everything)} candidates from {source}")
        if relaxed:
            import gzip

            names["relaxed"] = "relaxed.jsonl.gz"
            lines = "".join(json.dumps(r, default=str) + "\n" for r in relaxed)
            (stage / names["relaxed"]).write_bytes(gzip.compress(lines.encode(), 3))
        if changes is not None:
            names["changes"] = "changes.csv"
            changes.to_csv(stage / names["changes"], index=False)
        names["report"] = "report.html"
        write_report(stage / names["report"], ranked, summary, opts.rank.gap_threshold, opts.query,
                     plot=stage / names["plot"] if "plot" in names else None, changes=changes)
        names["summary"] = "summary.json"
        # relative to --out: the folder is the same set whichever working directory reaches it (or it moves)
        (stage / "summary.json").write_text(json.dumps(dict(summary, files=names), indent=2, default=str))
        files = {k: str(out / v) for k, v in names.items()}
        _publish(stage, out, list(names.values()))
    except OSError as e:
        if is_disk_full(e):
            raise ScreenError(f"--out {out}: {disk_full(e)}; the previous results were kept") from None
        raise ScreenError(f"--out {out}: cannot write the results ({e.strerror or e}); "
                          f"the previous results were kept") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return files


OUTPUT_FILES = ("results.csv", "results.parquet", "hull_vs_gap.png", "relaxed.jsonl.gz", "changes.csv",
                "report.html", "summary.json")


def _publish(stage: Path, out: Path, names: List[str]) -> None:
    """Swap the previous set in `out` for the one in `stage` by renames, undone if one fails.

    The previous set's files go into stage/previous/ first (a file of it that this set lacks,
    say results.parquet after a csv run, goes too), then the new files move in, summary.json last.
    Whatever stops it midway (an OSError, Ctrl-C's KeyboardInterrupt, any exception) puts the
    previous set back before it goes on: the caller's cleanup removes the stage, previous/ with it.
    """
    previous = stage / "previous"
    previous.mkdir()
    moved_out: List[str] = []
    moved_in: List[str] = []
    try:  # each name noted before its rename: an interrupt may come between the two
        for name in OUTPUT_FILES:
            if (out / name).is_file():  # never a folder of the user's that happens to have this name
                moved_out.append(name)
                os.replace(out / name, previous / name)
        for name in sorted(names, key=lambda n: n == "summary.json"):
            moved_in.append(name)
            os.replace(stage / name, out / name)
    except BaseException:
        for name in moved_in:
            if not (stage / name).exists():  # (else it never moved)
                os.replace(out / name, stage / name)
        for name in moved_out:
            if (previous / name).exists():
                os.replace(previous / name, out / name)
        raise


def run_settings(query, exclude, source, reference, model, device, scheduler, jobqueue, workers, threads, memory,
               queue, account, walltime, worker_lifetime, dashboard, cache, out, fmt, nonmetal, gap_min, gap_max,
               ehull_max, gap_threshold, top, rank_by, stable_within, unrelaxed_std, drop_flagged, gnome, new_only, mp_rate,
               partition_size, no_worker_timeout, relax, runner, relax_top=None, anchor=False):
    """`screen run`'s options (and `screen submit`'s) as the run's and the cluster's settings, every one checked."""
    from workflows.cluster.connection import ClusterSpec

    exclude_list = [e.strip() for e in (exclude or "").split(",") if e.strip()]
    mp_rate = DEFAULT_RATE if mp_rate is None else mp_rate
    gap_threshold = METAL_GAP_EV if gap_threshold is None else gap_threshold
    opts = RunOptions(
        query=query, exclude=exclude_list,
        source=source, reference=reference, model=str(resolve_model_path(model)), device=device,
        cache_dir=str(cache), out_dir=str(out), partition_size=partition_size, output_format=fmt,
        drop_flagged=drop_flagged, no_worker_timeout=no_worker_timeout, relax=relax, relax_top=relax_top, gnome=gnome,
        mp_rate=mp_rate,
        rank=RankOptions(rank_by=rank_by, stable_within=stable_within, gap_threshold=gap_threshold,
                         nonmetal=nonmetal, gap_min=gap_min, gap_max=gap_max, ehull_max=ehull_max,
                         new_only=new_only, top=top, unrelaxed_std=unrelaxed_std, anchor=anchor))
    if runner not in (None, "slurm"):
        raise ScreenError(f"--runner {runner}: only slurm")
    spec = ClusterSpec(scheduler=scheduler, jobqueue=jobqueue, workers=workers,
                       threads_per_worker=threads, dashboard=dashboard, memory_per_worker=memory,
                       queue=queue, account=account, walltime=walltime, worker_lifetime=worker_lifetime,
                       log_dir=str(Path(out).resolve() / "logs"), runner=runner,
                       scheduler_file=str(Path(out).resolve() / "logs" / "scheduler-{job_id}.json"),
                       gpus_per_worker=1 if device == "cuda" and not scheduler else 0)
    spec.check()  # first: its checks take no time, the run's describe the model (seconds, cold)
    opts.check()  # bad input fails here, before a cluster starts
    return opts, spec


def source_notes(opts: RunOptions) -> List[str]:
    """What a person should know about the source before the run: the default's nature, the MP entry count."""
    from screening.sources import default_source_note

    notes = [default_source_note(opts.source), opts.checked().source.entries_note()]
    return [n for n in notes if n]
