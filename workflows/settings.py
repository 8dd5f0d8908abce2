"""The settings `screen` shows as its options' defaults, importable without torch, Zarr or Dask,
so `screen --help` and every command start without loading the training stack."""
from screening.settings import default_of, help_of  # noqa: F401  (cli.option reads fields through here)
from workflows.cluster.connection import ClusterSpec
from workflows.cluster.watch import NO_WORKER_TIMEOUT_S

# `screen run`'s options (workflows/screen_run.run_settings' arguments) and their defaults: the
# command line and the Python API (workflows/api.py) both take them from here. None: the run
# decides (the default source, the bundled model, the model's unrelaxed_std, the source's MP pace).
# RunOptions and RankOptions keep the same library defaults (tests/workflows/test_api.py holds them equal).
_CLUSTER = ClusterSpec()
RUN = {
    "exclude": None, "source": None, "reference": None,
    "rank_by": "p_stable", "stable_within": 0.0, "nonmetal": False, "gap_min": None, "gap_max": None,
    "ehull_max": None, "gap_threshold": None, "top": None, "drop_flagged": False,
    "model": None, "device": "auto", "unrelaxed_std": None, "anchor": False,
    "relax": None, "relax_top": None,
    "scheduler": None, "jobqueue": None, "workers": _CLUSTER.workers, "threads": _CLUSTER.threads_per_worker,
    "memory": _CLUSTER.memory_per_worker, "queue": None, "account": None, "walltime": _CLUSTER.walltime,
    "worker_lifetime": None, "dashboard": "127.0.0.1:8787", "partition_size": 250,
    "no_worker_timeout": NO_WORKER_TIMEOUT_S,
    "cache": "screen-cache", "out": "screen-results", "fmt": "csv",
    "gnome": False, "new_only": False, "mp_rate": None,
    "runner": None,
}
# The help panels of `screen run` (and the list in `screen submit --help`), in the order shown.
RUN_PANELS = {
    "Query and source": ("query", "exclude", "source", "reference"),
    "Ranking and filters": ("rank_by", "stable_within", "nonmetal", "gap_min", "gap_max", "ehull_max",
                            "gap_threshold", "top", "drop_flagged"),
    "Model and uncertainty": ("model", "device", "unrelaxed_std", "anchor"),
    "Relaxation": ("relax", "relax_top"),
    "Cluster": ("scheduler", "jobqueue", "workers", "threads", "memory", "queue", "account", "walltime",
                "worker_lifetime", "dashboard", "partition_size", "no_worker_timeout"),
    "Cache and outputs": ("cache", "out", "fmt"),
    "Materials Project": ("gnome", "new_only", "mp_rate"),
}
PANEL = {name: panel for panel, names in RUN_PANELS.items() for name in names}
