"""A screening campaign: one YAML file with the query, source, model, filters, cluster settings
and schedule, submitted as a batch job by `screen submit --campaign FILE`.

    name: li-oxides
    query: Li-*-O                     # or several: queries: [Li-*-O, Na-*-O]
    source: local:../shared/data/mp_dev.csv.gz
    model: runs/m/best.pt             # optional: the bundled model
    out: li-oxides                    # results, summary.json, changes.csv, logs, the job script
    cache: screen-cache
    filters: {nonmetal: true, ehull_max: 0.1, top: 50}
    cluster: {workers: 4, threads: 2, memory: 8GiB, partition: cpu, account: chem, walltime: "02:00:00"}
    schedule: {every: 7d}             # re-run weekly (sbatch --begin); leave out for a single run

With `queries`, each query is its own `screen run` into `<out>/<query>` (its own results, changes.csv
and summary), one after another in the same batch job, sharing the cache.

Relative paths are relative to the campaign file (made absolute here). Every re-run fetches its query again, but the
caches hold every crystal already featurized and predicted, so only new or changed entries cost
work, and the run writes what changed since the last one (changes.csv, summary.json "changes").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from screening.errors import ScreenError
from workflows.cluster.connection import check_word

# campaign key -> `screen run` option; True for flags
_TOP = {"query": "--query", "exclude": "--exclude", "source": "--source", "reference": "--reference",
        "model": "--model", "device": "--device", "out": "--out", "cache": "--cache", "format": "--format",
        "partition_size": "--partition-size"}
_FILTERS = {"nonmetal": "--nonmetal", "drop_flagged": "--drop-flagged", "gap_min": "--gap-min",
            "gap_max": "--gap-max", "ehull_max": "--ehull-max", "top": "--top", "rank_by": "--rank-by",
            "stable_within": "--stable-within", "gap_threshold": "--gap-threshold"}
_CLUSTER_RUN = {"workers": "--workers", "threads": "--threads", "memory": "--memory", "walltime": "--walltime",
                "partition": "--queue", "account": "--account"}
_CLUSTER_BATCH = ("gpus", "overcommit")
_FLAGS = {"nonmetal", "drop_flagged"}  # true or false; every other setting is a value (0 is one)
_PATHS = ("model", "out", "cache")


@dataclass
class Campaign:
    name: str
    folder: Path  # where the file is: relative paths start here
    runs: List[Tuple[str, List[str]]]  # (query, its `screen run` options), in the order given
    out: Path  # the campaign's folder: the job script, jobs.csv, logs (and with `queries`, one folder per query)
    batch: Dict[str, object]  # gpus, overcommit
    every: Optional[str]


def query_folder(query: str) -> str:
    """A folder name for a query: Li-*-O -> Li-x-O, mp-1,mp-2 -> mp-1_mp-2."""
    return re.sub(r"[^A-Za-z0-9.()-]+", "_", query.replace("*", "x")).strip("_") or "query"


def read_campaign(path: Path, check_files: bool = False) -> Campaign:
    """The campaign in a file; check_files (screen submit): the local files it names exist (not for
    screen status, which follows a campaign whose files may have moved since)."""
    path = Path(path)
    doc = _load(path)
    if not isinstance(doc, dict):
        raise ScreenError(f"--campaign {path}: expected a mapping of settings")
    known = set(_TOP) | {"name", "queries", "filters", "cluster", "schedule"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ScreenError(f"--campaign {path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    queries = _queries(path, doc)
    folders = [query_folder(q) for q in queries]
    if len(set(folders)) < len(folders):
        raise ScreenError(f"--campaign {path}: two queries share the folder name {max(folders, key=folders.count)}")
    if doc.get("out") is None:  # left out or empty (out:): the default
        doc["out"] = f"campaign-{path.stem}"
    folder = path.resolve().parent
    for key in _PATHS:  # relative to the campaign file, wherever screen is run from
        if doc.get(key) is not None:
            doc[key] = str(folder / Path(str(doc[key])).expanduser())
    for key in ("source", "reference"):
        text = str(doc.get(key) or "")
        if "local:" in text:
            head, _, local = text.partition("local:")
            local = folder / Path(local).expanduser()
            if check_files and not local.exists():  # the run itself finds out only when it gets there
                raise ScreenError(f"--campaign {path}: {key} {text}: no such file ({local})")
            doc[key] = f"{head}local:{local}"
    out = Path(doc.pop("out"))
    args: List[str] = []
    for key, option in _TOP.items():
        if doc.get(key) is not None:
            args += [option, _value(path, key, doc[key])]
    for section, table, keep in (("filters", _FILTERS, {}), ("cluster", _CLUSTER_RUN, _CLUSTER_BATCH)):
        settings = doc.get(section) or {}
        if not isinstance(settings, dict):
            raise ScreenError(f"--campaign {path}: {section} must be a mapping")
        unknown = sorted(set(settings) - set(table) - set(keep))
        if unknown:
            raise ScreenError(f"--campaign {path}: unknown {section} key(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(set(table) | set(keep)))})")
        for key, value in settings.items():
            if key in keep or value is None:
                continue
            if key in _FLAGS:
                if not isinstance(value, bool):
                    raise ScreenError(f"--campaign {path}: {section} {key} {value!r}: must be true or false")
                args += [table[key]] if value else []
            else:
                args += [table[key], _value(path, f"{section} {key}", value)]
    schedule = doc.get("schedule") or {}
    if not isinstance(schedule, dict) or set(schedule) - {"every"}:
        raise ScreenError(f"--campaign {path}: schedule takes one key, every (like 7d)")
    one = len(queries) == 1
    runs = [(q, ["--query", q, "--out", str(out if one else out / f)] + args) for q, f in zip(queries, folders)]
    return Campaign(name=_job_name(path, doc.get("name")), folder=folder, runs=runs, out=out,
                    batch=_batch_settings(path, doc.get("cluster") or {}),
                    every=str(schedule["every"]) if schedule.get("every") else None)


def _queries(path: Path, doc: dict) -> List[str]:
    if doc.get("query") and doc.get("queries"):
        raise ScreenError(f"--campaign {path}: give query or queries, not both")
    queries = doc.pop("queries", None) or ([doc.pop("query")] if doc.get("query") else [])
    if isinstance(queries, str):
        raise ScreenError(f"--campaign {path}: queries {queries}: a list (queries: [{queries}]), or query: {queries}")
    if not isinstance(queries, list) or not queries or not all(isinstance(q, str) and q.strip() for q in queries):
        raise ScreenError(f"--campaign {path}: needs a query (or queries: a list of them)")
    return queries


def _batch_settings(path: Path, cluster: dict) -> dict:
    """The cluster settings that go to the batch job itself, not to `screen run` (gpus, overcommit)."""
    gpus, overcommit = cluster.get("gpus"), cluster.get("overcommit")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0):
        raise ScreenError(f"--campaign {path}: cluster gpus {gpus!r}: must be a whole number, 0 or more")
    if overcommit is not None and not isinstance(overcommit, bool):
        raise ScreenError(f"--campaign {path}: cluster overcommit {overcommit!r}: must be true or false")
    return {k: cluster[k] for k in _CLUSTER_BATCH if cluster.get(k) is not None}


def _job_name(path: Path, name) -> str:
    if name is None:  # the file's own name, made fit for a job name
        return re.sub(r"[^A-Za-z0-9._+@,-]+", "_", path.stem).strip("_.") or "screen"
    return check_word(f"--campaign {path}: name", str(name) if type(name) in (int, float) else name)


def _value(path: Path, what: str, value) -> str:
    """A setting's value as its `screen run` option takes it: a number or a word (0 included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ScreenError(f"--campaign {path}: {what} {value!r}: expected a number or a word")
    return str(value)


class _Twice(Exception):
    pass


def _load(path: Path):
    """The YAML document; a key given twice in one mapping is refused (YAML would keep the last)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key != "<<" and key in seen:
                raise _Twice(f"key {key} given twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(path.read_text(), Loader=Loader)  # (a SafeLoader with the check above)
    except OSError as e:
        raise ScreenError(f"--campaign {path}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ScreenError(f"--campaign {path}: not a text file") from None
    except _Twice as e:
        raise ScreenError(f"--campaign {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ScreenError(f"--campaign {path}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
