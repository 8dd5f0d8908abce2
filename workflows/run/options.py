"""`screen run`'s settings, defined once: RunSettings holds every option's default and help text
(`screen run`, `screen submit` and the Python API take them from here), and checked() turns them into
the run's options (PipelineSettings) and the cluster's (ClusterSettings), every one checked before anything starts.

Importable without torch, Zarr, Dask or pandas, so `screen --help` starts fast.
"""
from __future__ import annotations

import errno
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from screening.errors import ScreenError
from screening.settings import default_of, setting
from workflows.cluster.connection import ClusterSettings
from workflows.cluster.watch import NO_WORKER_TIMEOUT_S
from workflows.settings import words

if TYPE_CHECKING:
    from screening.model_info import ModelInfo
    from screening.query import Query
    from screening.rank import RankSettings
    from screening.sources.base import Source
    from workflows.run.funnel import RelaxPlan


def _cluster(name: str, help: str) -> Any:
    return setting(default_of(ClusterSettings, name), help)


@dataclass
class RunSettings:
    """`screen run`'s options by their parameter names. None: the run decides (the default source, the
    bundled model, the model's unrelaxed_std, the source's MP pace). The rank defaults are RankSettings'
    own (tests/workflows/test_api.py holds them equal: screening.rank needs pandas, which --help skips)."""
    query: str = setting(help='Chemical system ("Li-*-O", "Li-Fe-O"), formula ("LiFePO4") or mp ids.')
    exclude: Optional[str] = setting(None, "Comma-separated elements to leave out.")
    source: Optional[str] = setting(None, "mp | local:PATH | substitution (default: mp with MP_API_KEY, else "
                                          "substitution).")
    reference: Optional[str] = setting(None, "Source of reference phases for E_hull (e.g. "
                                             "local:../shared/data/mp_dev.csv.gz).")
    min_substitution_probability: Optional[float] = setting(
        None, "substitution: leave out candidates whose data-mined substitution probability (the least likely of "
              "their ions' substitutions into the template's own compound) is below this (0 to 1; default: keep all).")
    rank_by: str = setting("p_stable", "p_stable (P(E_hull <= --stable-within), uses the ensemble std) | "
                                       "e_above_hull.")
    stable_within: float = setting(0.0, "E_hull (eV/atom) at or below which a candidate counts as stable.")
    nonmetal: bool = setting(False, "Keep only predicted non-metals.")
    gap_min: Optional[float] = setting(None, "Minimum predicted band gap (eV).")
    gap_max: Optional[float] = setting(None, "Maximum predicted band gap (eV).")
    ehull_max: Optional[float] = setting(None, "Maximum predicted energy above hull (eV/atom).")
    gap_threshold: Optional[float] = setting(None, "Eg below this (eV) counts as a metal (default: k_B T at 300 "
                                                   "K); models without the metal head only (with it, P(metal) >= "
                                                   "0.5 decides).")
    top: Optional[int] = setting(None, "Show and keep only the best N.")
    drop_flagged: bool = setting(False, "Leave out candidates outside the model's training domain (see the flags "
                                        "column).")
    model: Optional[Path] = setting(None, "Checkpoint (default: the bundled model).")
    device: str = setting("auto", "auto | cpu | cuda")
    unrelaxed_std: Optional[float] = setting(None, "eV/atom added (in quadrature) to the E_hull std of unrelaxed "
                                                   "candidates; default: the model's own figure (its manifest's "
                                                   "unrelaxed_std, else 0).")
    relax: Optional[str] = setting(None, "all: relax every candidate with CHGNet (FIRE, cell too) before predicting "
                                         "(chgnet: the same); none: relax nothing. Default: hypothetical candidates "
                                         "(substitution) go through the funnel (--relax-top), known crystals are not "
                                         "relaxed. Cached per structure.")
    relax_top: Optional[int] = setting(None, "The funnel: predict every candidate, relax the K most promising "
                                             "hypothetical ones (by the ranking) with CHGNet, predict those again and "
                                             "rank all (default for substitution: 16; 0: none).")
    scheduler: Optional[str] = setting(None, "Address of a running Dask scheduler (tcp://host:8786).")
    jobqueue: Optional[str] = setting(None, "slurm | pbs: start workers as batch jobs (needs dask-jobqueue).")
    workers: int = _cluster("workers", "Local workers (or batch jobs).")
    threads: int = _cluster("threads_per_worker", "Threads per worker.")
    memory: str = _cluster("memory_per_worker", "Memory per worker.")
    queue: Optional[str] = setting(None, "Batch queue/partition (--jobqueue).")
    account: Optional[str] = setting(None, "Batch account (--jobqueue).")
    walltime: str = _cluster("walltime", "Batch job walltime (--jobqueue).")
    worker_lifetime: Optional[str] = setting(None, "--jobqueue: each worker retires after this long (HH:MM:SS, below "
                                                   "--walltime) and a new job replaces it.")
    dashboard: str = setting("127.0.0.1:8787", "Dask dashboard address (:0 for any free port).")
    partition_size: int = setting(250, "Crystals per Dask task.")
    no_worker_timeout: float = setting(NO_WORKER_TIMEOUT_S, "Fail when no Dask worker has been alive this many "
                                                            "seconds.")
    cache: Path = setting("screen-cache", "Cache directory (graphs, structures, predictions); shared by every "
                                          "command.")
    out: Path = setting("screen-results", "Directory for results, summary.json, report.html and the plot.")
    fmt: str = setting("csv", "csv | parquet")
    gnome: bool = setting(False, "Materials Project: also screen the GNoME r2SCAN entries (hypothetical, another "
                                 "functional; left out by default).")
    new_only: bool = setting(False, "Materials Project: keep only crystals neither on MP's hull nor known "
                                    "experimentally.")
    mp_rate: Optional[int] = setting(None, "Materials Project: requests per second with your key, all workers "
                                           "together (default: the source's own pace for one key).")
    runner: Optional[str] = setting(None, "slurm: this is one task of a `screen submit` job.")


# The help panels of `screen run` (and the list in `screen submit --help`), in the order shown.
PANELS = {
    "Query and source": ("query", "exclude", "source", "reference", "min_substitution_probability"),
    "Ranking and filters": ("rank_by", "stable_within", "nonmetal", "gap_min", "gap_max", "ehull_max",
                            "gap_threshold", "top", "drop_flagged"),
    "Model and uncertainty": ("model", "device", "unrelaxed_std"),
    "Relaxation": ("relax", "relax_top"),
    "Cluster": ("scheduler", "jobqueue", "workers", "threads", "memory", "queue", "account", "walltime",
                "worker_lifetime", "dashboard", "partition_size", "no_worker_timeout"),
    "Cache and outputs": ("cache", "out", "fmt"),
    "Materials Project": ("gnome", "new_only", "mp_rate"),
}
PANEL = {name: panel for panel, names in PANELS.items() for name in names}


def default(name: str):
    return default_of(RunSettings, name)


@dataclass
class PipelineSettings:
    """The run's own options, made from RunSettings by checked(); defaults are RunSettings'."""
    query: str
    exclude: List[str] = field(default_factory=list)
    source: Optional[str] = default("source")  # None: mp with MP_API_KEY, else substitution
    reference: Optional[str] = default("reference")  # source spec of reference phases for the hull
    min_substitution_probability: Optional[float] = default("min_substitution_probability")
    gnome: bool = default("gnome")
    mp_rate: Optional[int] = None  # requests per second to the MP API, all workers together; None: the source's
    model: str = ""  # checkpoint path
    device: str = default("device")
    cache_dir: str = default("cache")
    out_dir: str = default("out")
    partition_size: int = default("partition_size")
    max_atoms: int = 20_000
    output_format: str = default("fmt")
    rank: RankSettings = field(default_factory=lambda: _rank_options())
    drop_flagged: bool = default("drop_flagged")  # leave out candidates outside the model's domain
    no_worker_timeout: float = default("no_worker_timeout")  # fail when no Dask worker is alive this long
    relax: Optional[str] = default("relax")  # none | all | chgnet (= all); None: the funnel for hypothetical sources
    relax_top: Optional[int] = default("relax_top")  # the funnel's K (workflows/run/funnel.py)
    _checked: Optional[Any] = field(default=None, init=False, repr=False, compare=False)

    @property
    def error_log(self) -> Path:
        """Where the full traceback of an unexpected error goes (the one-line message names it)."""
        return Path(self.out_dir) / "error.log"

    def check(self) -> "Checked":
        """Every option, before a cluster starts or anything is fetched: one line per mistake.
        What it parsed and opened is kept, so the run uses it instead of doing it again."""
        from screening import kernel_build
        from screening.model_info import check_device
        from screening.query import parse_query
        from screening.references import check_reference
        from screening.sources import open_source
        from workflows.run import funnel, worker_model

        query = parse_query(self.query, self.exclude)
        source = open_source(self.source, lazy=True, gnome=self.gnome, rate=self.mp_rate,
                             min_probability=self.min_substitution_probability)
        if self.rank.new_only and not source.knows_stability:
            raise ScreenError(f"`new_only`: the source {source.name} does not say which crystals are on "
                              f"its hull or known experimentally (the Materials Project does: `source` mp)")
        if self.partition_size < 1:
            raise ScreenError(f"`partition_size` {self.partition_size}: must be at least 1")
        if self.rank.top is not None and self.rank.top < 1:
            raise ScreenError(f"`top` {self.rank.top}: must be at least 1")
        self.rank.check()
        check_device(self.device)
        kernel_build.mode()  # SCREEN_KERNEL, which the workers inherit: checked here, not after the fetch
        if self.output_format not in ("csv", "parquet"):
            raise ScreenError(f"`fmt` {self.output_format}: choose csv or parquet")
        relax = funnel.relax_plan(self.relax, self.relax_top, source.hypothetical)
        if not self.no_worker_timeout > 0:
            raise ScreenError(f"`no_worker_timeout` {self.no_worker_timeout:g}: must be more than 0 seconds")
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
    """The options as objects, made once by PipelineSettings.check: the parsed query, the source
    (opened lazily: it pickles without its data), the model's description and the relax plan."""
    query: Query
    source: Source
    model: ModelInfo
    model_stamp: Optional[str]  # where the run keeps the model's description (None: kept already)
    relax: RelaxPlan


def _rank_options():
    from screening.rank import RankSettings

    return RankSettings()


def checked(settings: RunSettings) -> Tuple[PipelineSettings, ClusterSettings]:
    """The run's and the cluster's options from `screen run`'s settings, every one checked."""
    from screening.properties import METAL_GAP_EV
    from screening.rank import RankSettings
    from screening.sources.mp import DEFAULT_RATE

    from workflows.models import resolve_model_path

    s = settings
    opts = PipelineSettings(
        query=s.query, exclude=words(s.exclude or ""),
        source=s.source, reference=s.reference, min_substitution_probability=s.min_substitution_probability,
        model=str(resolve_model_path(s.model)), device=s.device,
        cache_dir=str(s.cache), out_dir=str(s.out), partition_size=s.partition_size, output_format=s.fmt,
        drop_flagged=s.drop_flagged, no_worker_timeout=s.no_worker_timeout, relax=s.relax, relax_top=s.relax_top,
        gnome=s.gnome, mp_rate=DEFAULT_RATE if s.mp_rate is None else s.mp_rate,
        rank=RankSettings(rank_by=s.rank_by, stable_within=s.stable_within, nonmetal=s.nonmetal, gap_min=s.gap_min,
                          gap_max=s.gap_max, ehull_max=s.ehull_max, new_only=s.new_only, top=s.top,
                          gap_threshold=METAL_GAP_EV if s.gap_threshold is None else s.gap_threshold,
                          unrelaxed_std=s.unrelaxed_std))
    if s.runner not in (None, "slurm"):
        raise ScreenError(f"`runner` {s.runner}: only slurm")
    logs = Path(s.out).resolve() / "logs"
    spec = ClusterSettings(scheduler=s.scheduler, jobqueue=s.jobqueue, workers=s.workers, threads_per_worker=s.threads,
                           dashboard=s.dashboard, memory_per_worker=s.memory, queue=s.queue, account=s.account,
                           walltime=s.walltime, worker_lifetime=s.worker_lifetime, log_dir=str(logs), runner=s.runner,
                           scheduler_file=str(logs / "scheduler-{job_id}.json"),
                           gpus_per_worker=1 if s.device == "cuda" and not s.scheduler else 0)
    spec.check()  # first: its checks take no time, the run's describe the model (seconds, cold)
    opts.check()  # bad input fails here, before a cluster starts
    return opts, spec


def check_writable(option: str, folder: Path) -> None:
    """Whether the folder can be written (or made, by whoever writes there later), without making it: a
    probe file written and removed in the nearest folder that exists, so a bad path fails before the run
    and a run that fails a later check leaves nothing behind. `option`: the parameter's name."""
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
        raise ScreenError(f"`{option}` {folder}: cannot write there ({e.strerror or type(e).__name__})") from None


def check_folders(out_dir, cache_dir) -> None:
    """`out` and `cache`: each writable, and the results never inside the cache: a cache folder
    carries CACHEDIR.TAG, so backup tools skip what lies in it, and `screen cache clear` removes it all."""
    out, cache = Path(out_dir).resolve(), Path(cache_dir).resolve()
    if out == cache or cache in out.parents:
        where = "is" if out == cache else "lies inside"
        raise ScreenError(f"`out` {out_dir}: {where} the cache folder (`cache` {cache_dir}), which backups "
                          f"skip and `screen cache clear` empties; give the results a folder of their own")
    for option, folder in (("out", out_dir), ("cache", cache_dir)):
        check_writable(option, Path(folder))
