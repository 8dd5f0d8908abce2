"""screen from Python (a Jupyter notebook): the run of `screen run`, as a pandas DataFrame.

    from workflows.api import screen, structure

    table = screen("Li-*-O", source="local:../shared/data/mp_dev.csv.gz", top=50)
    best = structure(table.iloc[0])          # a pymatgen Structure

`screen(query, **options)` takes `screen run`'s options by their Python names (`workers=4`,
`nonmetal=True`, `out="li-oxides"`, `fmt="parquet"`; `screen run --help` lists them) with the
same defaults (workflows/run/options.RunSettings) and the same checks (workflows/run/options.checked),
writes the same files into `out`, and returns the table of results.csv. `client=` runs it on a
Dask cluster you already have instead of starting one. Mistakes raise ScreenError, one line.

The table carries its run in `table.attrs["screen"]` (the folder, the source, the summary), which
pandas keeps through selections, so `structure(row)` finds where a candidate came from.
"""
from __future__ import annotations

import difflib
import gzip
import json
import numbers
import os
from dataclasses import fields
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from screening.errors import ScreenError
from screening.settings import default_of
from workflows.run.options import PANELS, RunSettings

RUN = {f.name: default_of(RunSettings, f.name) for f in fields(RunSettings) if f.name != "query"}  # the defaults

__all__ = ["screen", "structure", "ScreenError"]

# Options that start a cluster: with client= the given cluster is used as it is. (The run's own
# partition size and no-worker timeout, in the same help panel, still apply.)
CLUSTER_ONLY = tuple(n for n in PANELS["Cluster"] if n not in ("partition_size", "no_worker_timeout"))
ALIASES = {"format": "fmt"}  # `format` shadows a builtin in the CLI's code, not in a call


def screen(query: str, *, client=None, progress: Optional[Callable[[str, int, int], None]] = None,
           **options) -> pd.DataFrame:
    """Screen every crystal matching `query` (as `screen run --query`); the ranked table.

    options: `screen run`'s options by their Python names, e.g. source, exclude, top, nonmetal,
    gap_min, ehull_max, rank_by, model, device, relax, workers, threads, memory, cache, out, fmt.
    client: a `distributed.Client` to run on (its cluster as it is; no cluster options then).
    progress: called as progress(stage, done, total) while the run goes.
    """
    params = run_params(query, options, client is not None)
    from workflows.cluster.connection import connect
    from workflows.run.options import checked
    from workflows.run.pipeline import run_screening, source_notes

    opts, spec = checked(RunSettings(**params))
    if client is not None:
        result = run_screening(client, opts, progress=progress)
    else:
        with connect(spec) as own:
            result = run_screening(own, opts, progress=progress)
    table = result.table.reset_index(drop=True)
    table.attrs["screen"] = {"query": opts.query, "out": opts.out_dir, "source": opts.source,
                             "gnome": opts.gnome, "mp_rate": opts.mp_rate, "notes": source_notes(opts),
                             "files": dict(result.files), "summary": result.summary}
    return table


def run_params(query: str, options: dict, with_client: bool) -> dict:
    """RunSettings' fields: the given options over `screen run`'s defaults; unknown names,
    and cluster options beside a client, are one-line errors."""
    if not isinstance(query, str):
        raise ScreenError(f"screen(): query {query!r}: a str, like \"Li-*-O\", \"LiFePO4\" or \"mp-19017\"")
    params = dict(RUN, query=query)
    if os.environ.get("SCREEN_CACHE"):  # the command line's default cache too (--cache's envvar)
        params["cache"] = os.environ["SCREEN_CACHE"]
    for name, value in options.items():
        name = ALIASES.get(name, name)
        if name not in RUN or name == "runner":
            near = difflib.get_close_matches(name, [n for n in RUN if n != "runner"], n=1)
            raise ScreenError(f"screen(): unknown option {name!r}" + (f" (did you mean {near[0]}?)" if near else
                                                                       "; screen run --help lists them"))
        if with_client and name in CLUSTER_ONLY:
            raise ScreenError(f"screen(): {name}: a client was given, so its cluster runs the work as it is; "
                              f"leave {name} out")
        params[name] = _checked(name, value)
    return params


# The type each option takes. The command line's parser turns text into these; a call passes values
# as they are, and a "yes" for a flag or 2.5 for --top would otherwise run for minutes and then fail
# (or run with the wrong setting). tests/workflows/test_api.py holds these to cli.run's annotations.
FLOATS = ("stable_within", "gap_min", "gap_max", "ehull_max", "gap_threshold", "unrelaxed_std", "no_worker_timeout",
          "min_substitution_probability")
INTS = ("top", "workers", "threads", "partition_size", "mp_rate", "relax_top")
FLAGS = ("nonmetal", "drop_flagged", "gnome", "new_only")
PATHS = ("model", "cache", "out")  # the other options are text


def _checked(name: str, value):
    """An option's value as RunSettings takes it, or a one-line error naming the option."""
    if value is None:
        if RUN[name] is None:
            return None
        raise ScreenError(f"screen(): {name}=None: give a value or leave {name} out (default {RUN[name]!r})")
    wrong = f"screen(): {name}={value!r}: "
    if name in FLAGS:
        if not isinstance(value, (bool, np.bool_)):
            raise ScreenError(wrong + "True or False")
        return bool(value)
    if name in INTS or name in FLOATS:
        whole = name in INTS
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral if whole else numbers.Real):
            raise ScreenError(wrong + ("a whole number" if whole else "a number"))
        return int(value) if whole else float(value)
    if name in PATHS:
        if not isinstance(value, (str, os.PathLike)):
            raise ScreenError(wrong + "a path (str or pathlib.Path)")
        return str(value)
    if name == "exclude" and isinstance(value, (list, tuple, set)) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if not isinstance(value, str):
        raise ScreenError(wrong + ("element symbols (a list of str, or one comma-separated str)"
                                   if name == "exclude" else "text (a str)"))
    return value


def structure(candidate: pd.Series):
    """A candidate of screen()'s table (a row: table.iloc[0], table.loc[i], a row of iterrows()) as a
    pymatgen Structure: the relaxed one of a --relax run, else the structure its source made or
    holds. It must be the structure that was screened (the same structure key), else ScreenError."""
    run = getattr(candidate, "attrs", {}).get("screen")
    if not isinstance(candidate, pd.Series) or run is None:
        raise ScreenError("structure(): pass a row of the table screen() returned (table.iloc[0]); it "
                          "carries the run it came from")
    for column in ("id", "formula", "structure_key"):
        if column not in candidate.index:
            raise ScreenError(f"structure(): the row has no {column} column; pass a whole row of screen()'s table")
    relaxed = _relaxed(Path(run["out"]), candidate["structure_key"])
    if relaxed is not None:
        return relaxed
    return _from_source(candidate, run)


def _relaxed(out: Path, key: str):
    from pymatgen.core import Structure

    path = out / "relaxed.jsonl.gz"
    if not path.is_file():
        return None
    with gzip.open(path, "rt") as f:
        for line in f:
            row = json.loads(line)
            if row.get("structure_key") == key:
                return Structure.from_dict(row["structure"])
    return None


def _from_source(candidate: pd.Series, run: dict):
    from cache.keys import structure_key
    from screening.featurize import FeaturizerSettings
    from screening.formula import element_set
    from screening.query import parse_query
    from screening.sources import open_source

    source = open_source(run["source"], gnome=run["gnome"], rate=run["mp_rate"])
    c_id, formula = str(candidate["id"]), str(candidate["formula"])
    # a hypothetical crystal is made again with its chemical system's; a known one is asked for by id
    query = "-".join(sorted(element_set(formula))) if source.hypothetical else c_id
    found = [c for c in source.fetch(parse_query(query)) if str(c.id) == c_id]
    if not found:
        raise ScreenError(f"structure(): {c_id} ({formula}) is no longer in {source.name}")
    s = found[0].structure
    featurizer = FeaturizerSettings.from_dict(run["summary"]["featurizer"])
    if structure_key(s, featurizer) != candidate["structure_key"]:
        raise ScreenError(f"structure(): {c_id} ({formula}) in {source.name} is not the structure that was "
                          f"screened (another structure key): the source changed since the run")
    return s
