"""The training settings `screen train` builds its options from, importable without torch, so
`screen --help` and `screen train --help` start without loading the training stack."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import List, Optional, Tuple

from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings  # (`cutoff`, `max_neighbors`)
from screening.settings import setting
from screening.train_config import TrainSettings  # every training setting, defined once
from workflows.settings import words


@dataclass
class TrainRunSettings:
    """What `screen train` learns from, where it writes and how it runs here (TrainSettings is the recipe;
    `cache` and `device` are the same settings as `screen run`'s)."""
    data: Path = setting(help="CSV like mp_dev.csv.gz, or a CGCNN directory (id_prop.csv + CIFs).")
    out: Optional[Path] = setting(None, "Run directory: best.pt, last.pt, last.opt, metrics.csv, split.json "
                                        "(default runs/model, or the `resume` checkpoint's directory).")
    limit: Optional[int] = setting(None, "Use only the first N rows.")
    resume: Optional[Path] = setting(None, "Continue from a run's last.pt.")
    threads: Optional[int] = setting(None, "CPU threads for torch (1 gives bit-identical reruns).")


def train_settings(options: dict) -> Tuple[TrainRunSettings, TrainSettings, FeaturizerSettings]:
    """`screen train`'s options, by name (the list settings comma-separated), as the run, its recipe
    and its featurizer: the run directory chosen (runs/model, or the resumed run's), `device` ("auto"
    resolved) into the recipe."""
    from screening.predict import resolve_device

    def picked(cls, leave_out=()):
        return {f.name: options[f.name] for f in fields(cls) if f.name in options and f.name not in leave_out}

    run = TrainRunSettings(**picked(TrainRunSettings))
    if run.resume and run.out and run.out.resolve() != run.resume.resolve().parent:
        raise ScreenError(f"`resume` {run.resume} continues the run in {run.resume.parent}, not `out` {run.out}")
    run = replace(run, out=run.resume.parent if run.resume else (run.out or Path("runs/model")))
    weights = options["task_weights"]
    recipe = {**picked(TrainSettings, ("device",)), "tasks": words(options["tasks"]),
              "task_weights": _floats(weights, "task_weights") if weights else None,
              "split": _floats(options["split"], "split")}
    return (run, TrainSettings(**recipe, device=str(resolve_device(options["device"]))),
            FeaturizerSettings(**picked(FeaturizerSettings)))


def _floats(text: str, name: str) -> List[float]:
    try:
        return [float(x) for x in words(text)]
    except ValueError:
        raise ScreenError(f"`{name}` {text!r}: expected comma-separated numbers") from None
