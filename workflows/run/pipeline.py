"""The screening task graph: fetch -> (relax) -> featurize into the store -> infer -> rank -> report.

    partition (1/partition) workers fetch their own partition (plan.py; a source that cannot split
                            is fetched by one worker and sliced; MP entries through the entry cache,
                            only new or changed ones fetched), key it and store the graphs the store
                            lacks as one published unit; a warm run reads the keyed rows from the
                            structure cache
    relax (1/10 candidates) only with `relax` all: CHGNet relaxation, via the relax cache
    infer (1/partition)     graphs -> predictions, via the prediction cache; the model is loaded
                            once per worker; GPU tasks ask for the Dask resource "GPU" so a mixed
                            cluster routes them to GPU workers
    rank, report            on the client: hull, anchors (screening/anchors.py), filters, files, table, plot
    funnel                  hypothetical candidates: the most promising K relaxed, predicted again
                            and ranked again (funnel.py)

The client's side runs in stages (start, submit, collect, assemble, rank, funnel, summarize), each
a function of the run's state (Run).
"""
from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional

import pandas as pd

from cache.cache_dir import CacheDir
from screening.errors import ScreenError
from screening.rank import rank
from workflows.run import funnel, hull_checks, worker_model
from workflows.run.hulls import hulls
from workflows.run.options import Checked, PipelineSettings
from workflows.run.outputs import write_outputs
from workflows.run.plan import cache_columns, keep_plan, part_key, plan, slice_of, source_partitions, split_plan
from workflows.run.records import FetchCounts, total
from workflows.run.summary import changes_since, run_summary
from workflows.run.table import assemble
from workflows.run.tasks import (RELAX_CHUNK, fetch_partition_task, fetch_task, fetched_size, featurize_task,
                                 infer_task, joined_candidates, partition_task, relax_task)
from workflows import mp
from workflows.cluster.watch import wait_all

Progress = Optional[Callable[[str, int, int], None]]


@dataclass
class RunResult:
    table: pd.DataFrame  # ranked
    summary: dict
    files: dict


@dataclass
class Run:
    """A run's state on the client, stage by stage."""
    client: object
    opts: PipelineSettings
    checked: Checked
    progress: Progress
    t0: float
    gpu: Optional[dict] = None
    description: str = ""
    parts: list = field(default_factory=list)  # Partitions (with `relax` all: the partitions' sizes)
    whole: object = None  # the future of a whole fetch, or None
    structure_hit: bool = False
    counts: FetchCounts = field(default_factory=FetchCounts)  # of fetches the client waited for
    clock: Dict[str, float] = field(default_factory=dict)

    @property
    def wait(self) -> dict:
        return dict(no_worker_timeout=self.opts.no_worker_timeout, log=self.opts.error_log)

    @property
    def featurizer(self):
        return self.checked.model.featurizer

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(stage, done, total)

    def lap(self, stage: str) -> None:
        """The wall seconds since the last stage ended."""
        self.clock[stage] = time.time() - self.t0 - sum(self.clock.values())

    def infer(self, keyed):
        """The future of an infer task on a partition's keyed rows (or the funnel's)."""
        ckpt = self.checked.model
        return self.client.submit(infer_task, keyed, self.opts.cache_dir, str(self.opts.model), self.opts.device,
                                  self.featurizer, self.opts.max_atoms, ckpt.hash, cache_columns(ckpt.outputs),
                                  resources=self.gpu, pure=False)


def run_screening(client, opts: PipelineSettings, progress: Progress = None,
                  on_started: Optional[Callable[[], None]] = None) -> RunResult:
    run = start(client, opts, progress, on_started)
    if run.checked.relax.mode == "all":
        feats, relaxes = _relaxed_partitions(run)
    else:
        feats, relaxes = _partitions(run), []
    infers = [run.infer(f) for f in feats]
    relax_results = []
    if relaxes:
        relax_results = wait_all(client, [f for chunks in relaxes for f in chunks],
                                 on_done=lambda d, n: run.report("relax", d, n), **run.wait)
    run.report("infer", 0, len(infers))
    infer_results = wait_all(client, infers, on_done=lambda d, n: run.report("infer", d, n), **run.wait)
    feat_results = wait_all(client, feats, **run.wait)  # finished already: each infer task needed its own
    run.lap("fetch_featurize_infer")  # pipelined on the workers
    made = assemble(run, feat_results, infer_results, relax_results)
    ranked = rank_all(run, made)
    summary = run_summary(run, made, ranked, feat_results, infer_results, relax_results)
    CacheDir(opts.cache_dir).record_run(
        runs=1, structure_hits=int(run.structure_hit), structure_misses=int(not run.structure_hit),
        graph_hits=summary["graph_cache_hits"], graph_misses=summary["featurized"],
        prediction_hits=summary["prediction_cache_hits"], prediction_misses=summary["inferred"])
    changes, summary["changes"] = changes_since(opts, ranked.shown, str(run.checked.query))
    files = write_outputs(ranked.shown, ranked.everything, summary, opts, made.relaxed_structures, changes)
    return RunResult(ranked.shown, summary, files)


def start(client, opts: PipelineSettings, progress: Progress, on_started) -> Run:
    """The checked options (bad options fail here, before any work), the cache claimed, the model kept."""
    run = Run(client, opts, opts.checked(), progress, time.time())
    mp.share_budget(client, run.checked.source)  # one MP request budget for every worker
    CacheDir(opts.cache_dir).claim()
    worker_model.keep(opts.cache_dir, run.checked.model_stamp, run.checked.model)
    if on_started:
        on_started()
    run.description = run.checked.source.describe()
    run.gpu = {"GPU": 1} if _wants_gpu(client, opts.device) else None
    return run


def _partitions(run: Run) -> list:
    """The partition_task futures; run.parts, whole and structure_hit set (and the whole fetch's counts)."""
    opts, client, (query, source) = run.opts, run.client, (run.checked.query, run.checked.source)
    structures = CacheDir(opts.cache_dir).structures()
    parts, planned = plan(source, query, opts.partition_size, structures, run.description,
                          on_fetch=run.progress and (lambda: run.report("fetch", 0, 1)))
    fingerprint = run.featurizer.fingerprint()
    if parts is not None and planned and not all(p.fetchable() for p in parts) and not all(
            structures.has_keyed(part_key(query.key(), p.label), run.description, fingerprint) for p in parts):
        parts = None  # slices of a whole fetch, some of them not remembered: fetch again
    if parts is None:  # the source cannot split before fetching: one worker fetches, workers slice
        run.report("fetch", 0, 1)
        run.whole = client.submit(fetch_task, source, query, pure=False)
        n, run.counts = wait_all(client, [client.submit(fetched_size, run.whole, pure=False)], **run.wait)[0]
        parts = split_plan(n, opts.partition_size)
    feats = [client.submit(partition_task, source, query, p, run.description, opts.cache_dir, run.featurizer,
                           None if run.whole is None else
                           client.submit(operator.getitem, run.whole, slice_of(p), pure=False), pure=False)
             for p in parts]
    if not planned:
        keep_plan(structures, query, run.description, parts)
    run.parts, run.structure_hit = parts, planned and run.whole is None
    return feats


def _relaxed_partitions(run: Run):
    """With `relax` all: each fetched partition is relaxed in chunks on workers, then featurized.
    The client learns each partition's size and fetch counts only; the relaxed structures
    come to it later, with the relax results, because relaxed.jsonl.gz holds every one."""
    opts, client, (query, source) = run.opts, run.client, (run.checked.query, run.checked.source)
    run.report("fetch", 0, 1)
    plan_parts = source_partitions(source, query, opts.partition_size)
    fetches = [client.submit(fetch_task, source, query, pure=False)] if plan_parts is None else \
        [client.submit(fetch_partition_task, source, query, p, opts.cache_dir, pure=False) for p in plan_parts]
    sizes = wait_all(client, [client.submit(fetched_size, f, pure=False) for f in fetches], **run.wait)
    run.counts = total(c for _, c in sizes)
    feats, relaxes = [], []
    for fetched, (n, _) in zip(fetches, sizes):
        for start in range(0, n, opts.partition_size):
            stop = min(start + opts.partition_size, n)
            chunks = [client.submit(relax_task, fetched, (i, min(i + RELAX_CHUNK, stop)), opts.cache_dir,
                                    funnel.RELAXER, opts.device, resources=run.gpu, pure=False)
                      for i in range(start, stop, RELAX_CHUNK)]
            run.parts.append(stop - start)
            relaxes.append(chunks)
            joined = client.submit(joined_candidates, chunks, pure=False)
            feats.append(client.submit(featurize_task, joined, opts.cache_dir, run.featurizer, pure=False))
    return feats, relaxes


@dataclass
class Ranked:
    everything: pd.DataFrame  # every candidate, ranked (the plot shows them all)
    shown: pd.DataFrame  # the first `top` of it
    rank_opts: object
    anchors: dict
    anchor_why: Optional[str]
    thin: dict
    reference_note: str
    phases: int
    funnel: Optional[funnel.FunnelResult] = None
    shift: Optional[float] = None


def rank_all(run: Run, made) -> Ranked:
    """Hulls, anchors and the ranking; the funnel's relaxations and the ranking again where it runs."""
    opts, ckpt, source = run.opts, run.checked.model, run.checked.source
    members: dict = {}
    for formula, c_id in zip(made.table["formula"], made.table["id"]):
        members.setdefault(made.system_of[formula], []).append((formula, c_id))
    run.lap("table")
    references, reference_note, n_phases = hulls(run.client, opts, source, members, run.wait)
    run.lap("hulls")
    rank_opts = replace(opts.rank, top=None)  # the plot shows them all
    if rank_opts.unrelaxed_std is None:
        rank_opts.unrelaxed_std = float(ckpt.meta.get("unrelaxed_std", 0.0))
    if rank_opts.stage_std is None:
        rank_opts.stage_std = ckpt.meta.get("stage_std")
    anchors, anchor_why = hull_checks.load_anchors(opts, source, ckpt, made.table)

    def ranking(t: pd.DataFrame) -> pd.DataFrame:
        t = hull_checks.with_anchors(hull_checks.flag_thin(t, references.thin, references.thin_drop), anchors)
        return rank(t, references, rank_opts)

    out = Ranked(ranking(made.table), None, rank_opts, anchors, anchor_why, references.thin, reference_note,
                 n_phases)
    run.lap("rank")
    relax = run.checked.relax
    if relax.mode == "top" and relax.top:
        picked = funnel.pick(out.everything, relax.top, made.where)
        out.funnel = funnel.relax_top(run, picked)
        made.table = funnel.apply(made.table, out.funnel, made.domain, ckpt.outputs, made.system_of)
        made.relaxed_structures = funnel.relaxed_structures(opts, made.table, out.funnel)
        run.lap("relax_top")
        out.shift = funnel.unrelaxed_shift(made.table)
        rank_opts.unrelaxed_shift = out.shift or 0.0
        out.everything = ranking(made.table)
        run.lap("rank_relaxed")
    out.shown = out.everything.head(opts.rank.top) if opts.rank.top else out.everything
    return out


def _wants_gpu(client, device: str) -> bool:
    if device == "cpu":
        return False
    workers = client.scheduler_info().get("workers", {}).values()
    has_gpu_workers = any(w.get("resources", {}).get("GPU", 0) > 0 for w in workers)
    if device == "cuda" and not has_gpu_workers:
        raise ScreenError("`device` cuda: no worker advertises the GPU resource (start workers with --resources "
                          "GPU=1)")
    return has_gpu_workers


# What a run without --source screens (screening/sources chooses: mp with MP_API_KEY, else substitution).
DEFAULT_SOURCE_NOTES = {
    "mp": "no --source given: using the Materials Project API (MP_API_KEY is set)",
    "substitution": ("no --source given and MP_API_KEY not set: using hypothetical substitution candidates "
                     "(element substitution into pymatgen's structure prototypes)")}


def source_notes(opts: PipelineSettings) -> List[str]:
    """What a person should know about the source before the run: the default's nature, the MP entries."""
    from workflows.mp import entries_note

    source = opts.checked().source
    notes = [None if opts.source else DEFAULT_SOURCE_NOTES[source.name], entries_note(source)]
    return [n for n in notes if n]
