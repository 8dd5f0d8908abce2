"""Experiment specs: a YAML grid of training runs -> one `ArmSettings` per run, and one run.

A spec names the data, a pool size, seeds, the train/val/test split and the
training defaults, then groups of runs. In a group every key may be a value
or a list; a group expands to the product of its lists:

    data: ../shared/data/mp_dev.csv.gz
    pool: 6000              # crystals drawn (seeded) from data; omit for all
    seeds: [0, 1, 2]
    split: [0.6, 0.2, 0.2]  # one split per seed, shared by every run of that seed
    train: {epochs: 25, lr: 0.005, atom_fea_len: 32, n_conv: 2}
    groups:
      - {name: E, tasks: [Ef+Eg, Ef+EF, Eg+EF, Ef+Eg+EF], weighting: [fixed, uncertainty]}
      - {name: fraction, tasks: [Ef, Eg, Ef+Eg], train_fraction: [0.2, 0.3, 0.4, 0.5]}

`train_fraction` is a fraction of the whole pool, taken as the first part of
that seed's training split, so smaller training sets are nested in larger
ones and validation and test crystals never change with it (paper Table 4).

A run's identity is its content: the same settings reached from two groups
are one run, and its directory name ends in a hash of those settings, so a
changed setting can never be mistaken for a finished run.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Dict, List, Optional, Tuple


from screening.errors import ScreenError
from screening.properties import SHORT_NAMES
from screening.train_config import TrainSettings

# Short names used in specs and the report; the values are the mp_dev columns.
TASKS = SHORT_NAMES  # the paper's short names -> task columns
SHORT = {v: k for k, v in TASKS.items()}
_PAPER = TrainSettings.paper(tasks=[])  # the defaults of every run's settings but its length
RESULT = "result.json"  # written last: a run directory with it is finished


@dataclass(frozen=True)
class ArmSettings:
    tasks: Tuple[str, ...]  # mp_dev column names
    seed: int = 0
    train_fraction: float = 0.6
    weighting: str = _PAPER.weighting
    task_weights: Optional[Tuple[float, ...]] = None
    epochs: int = 25  # short runs: the experiments compare arms, they do not ship models
    # the rest are the paper recipe's own values (TrainSettings.paper, the one definition)
    batch_size: int = _PAPER.batch_size
    lr: float = _PAPER.lr
    weight_decay: float = _PAPER.weight_decay
    schedule: str = _PAPER.schedule
    patience: int = _PAPER.patience  # the same epoch budget for every arm: no early stop by default
    atom_fea_len: int = _PAPER.atom_fea_len
    n_conv: int = _PAPER.n_conv
    h_fea_len: int = _PAPER.h_fea_len
    n_h: int = _PAPER.n_h

    @property
    def label(self) -> str:
        return "+".join(SHORT.get(t, t) for t in self.tasks)

    @property
    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def dirname(self) -> str:
        return f"{self.label}_{self.weighting}_f{self.train_fraction:g}_s{self.seed}_{self.key}"

    def train_settings(self, device: str = "cpu"):
        kw = {f.name: getattr(self, f.name) for f in fields(self)
              if f.name not in ("tasks", "train_fraction", "task_weights")}
        return TrainSettings.paper(tasks=list(self.tasks),
                                   task_weights=list(self.task_weights) if self.task_weights else None,
                                   device=device, **kw)


@dataclass
class ExperimentSpec:
    name: str
    data: str
    pool: Optional[int]
    pool_seed: int
    split: Tuple[float, float, float]
    runs: List[ArmSettings]
    groups: Dict[str, List[str]]  # group name -> run keys, in spec order
    path: str = ""

    def group_runs(self, name: str) -> List[ArmSettings]:
        by_key = {r.key: r for r in self.runs}
        return [by_key[k] for k in self.groups.get(name, [])]


_RUN_KEYS = {f.name for f in fields(ArmSettings)} - {"tasks", "seed"}
_GROUP_KEYS = _RUN_KEYS | {"name", "tasks", "seeds"}
_TOP_KEYS = {"name", "data", "pool", "pool_seed", "seeds", "split", "train", "groups"}


def parse_tasks(text: str, where: str) -> Tuple[str, ...]:
    names = [t.strip() for t in str(text).split("+") if t.strip()]
    if not names:
        raise ScreenError(f"{where}: empty task set")
    out = []
    for n in names:
        if n in TASKS:
            out.append(TASKS[n])
        elif n in SHORT:
            out.append(n)
        else:
            raise ScreenError(f"{where}: unknown task {n!r}; use {', '.join(TASKS)} joined by '+'")
    if len(set(out)) != len(out):
        raise ScreenError(f"{where}: task set {text!r} repeats a task")
    return tuple(out)


def _as_list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _check_keys(d, allowed, where):
    if not isinstance(d, dict):
        raise ScreenError(f"{where}: expected a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ScreenError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def load_spec(path) -> ExperimentSpec:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ScreenError(f"{p}: no such experiment spec")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ScreenError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    spec = parse_spec(raw, str(p))
    spec.path = str(p)
    return spec


def parse_spec(raw, where: str = "spec") -> ExperimentSpec:
    _check_keys(raw, _TOP_KEYS, where)
    for k in ("data", "groups"):
        if k not in raw:
            raise ScreenError(f"{where}: missing key {k!r}")
    split = tuple(float(x) for x in raw.get("split", [0.6, 0.2, 0.2]))
    if len(split) != 3 or min(split) < 0 or sum(split) > 1 + 1e-9:
        raise ScreenError(f"{where}: split {list(split)} needs three fractions >= 0 summing to at most 1")
    defaults = raw.get("train", {}) or {}
    _check_keys(defaults, _RUN_KEYS, f"{where}: train")
    seeds = [int(s) for s in _as_list(raw.get("seeds", [0]))]
    runs: Dict[str, ArmSettings] = {}
    groups: Dict[str, List[str]] = {}
    for i, g in enumerate(_as_list(raw["groups"])):
        gw = f"{where}: groups[{i}]"
        _check_keys(g, _GROUP_KEYS, gw)
        if "tasks" not in g:
            raise ScreenError(f"{gw}: missing key 'tasks'")
        name = str(g.get("name", f"group{i}"))
        gw = f"{where}: group {name}"
        if name in groups:
            raise ScreenError(f"{gw}: group name used twice")
        grid = {k: _as_list(v) for k, v in {**defaults, **g}.items()
                if k not in ("name", "tasks", "seeds", "task_weights")}
        task_sets = [parse_tasks(t, gw) for t in _as_list(g["tasks"])]
        task_weights = g.get("task_weights", defaults.get("task_weights"))
        keys = sorted(grid)
        groups[name] = []
        for seed in [int(s) for s in _as_list(g.get("seeds", seeds))]:
            for tasks in task_sets:
                for combo in itertools.product(*(grid[k] for k in keys)):
                    try:
                        run = ArmSettings(tasks=tasks, seed=seed,
                                          task_weights=tuple(float(w) for w in task_weights) if task_weights else None,
                                          **dict(zip(keys, combo)))
                    except TypeError as e:
                        raise ScreenError(f"{gw}: {e}") from None
                    _check_run(run, split, gw)
                    runs.setdefault(run.key, run)
                    if run.key not in groups[name]:
                        groups[name].append(run.key)
    pool = raw.get("pool")
    return ExperimentSpec(name=str(raw.get("name", "experiment")), data=str(raw["data"]),
                          pool=int(pool) if pool is not None else None, pool_seed=int(raw.get("pool_seed", 0)),
                          split=split, runs=list(runs.values()), groups=groups)


def _check_run(run: ArmSettings, split, where):
    from screening.weighting import WEIGHTINGS

    if not 0 < run.train_fraction <= split[0] + 1e-9:
        raise ScreenError(f"{where}: train_fraction {run.train_fraction} must be in (0, {split[0]}] "
                          "(the training part of the split)")
    if run.weighting not in WEIGHTINGS:
        raise ScreenError(f"{where}: weighting {run.weighting!r}; choose {' or '.join(WEIGHTINGS)}")
    if run.task_weights and len(run.task_weights) != len(run.tasks):
        raise ScreenError(f"{where}: task_weights has {len(run.task_weights)} values for {len(run.tasks)} tasks")
    if run.epochs < 1 or run.batch_size < 2 or run.lr <= 0:
        raise ScreenError(f"{where}: epochs >= 1, batch_size >= 2 and lr > 0 are required")


# ---- which crystals a run trains, validates and tests on ---------------------------------

def run_indices(n: int, split, run: ArmSettings):
    """(train, val, test) pool indices of a run: the seed's split, training part cut to train_fraction."""
    from screening.split import split_indices

    train, val, test = split_indices(n, split, run.seed)
    return train[:int(round(run.train_fraction * n))], val, test


def finished(run_dir) -> Optional[dict]:
    """The run's result if it finished (result.json present and readable), else None."""
    f = Path(run_dir) / RESULT
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None
