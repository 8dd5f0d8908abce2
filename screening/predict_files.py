"""`screen predict`: structure files -> a table of predicted properties."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import pandas as pd

from screening.checkpoint import default_model_path
from screening.ensemble import load_model, prediction_columns
from screening.errors import ScreenError
from screening.featurize import featurize
from screening.metrics import METAL_GAP_EV
from screening.predict import resolve_device
from screening.rank import metal_class
from screening.structures import read_structure, structure_files


def resolve_model_path(model: Optional[Path]) -> Path:
    if model is not None:
        return Path(model)
    path = default_model_path()
    if not path.exists():
        raise ScreenError("no --model given and no bundled model found at "
                          f"{path}; train one with `screen train`")
    return path


def predict_files(paths: Sequence, model: Optional[Path] = None, device: str = "auto",
                  skip_bad: bool = False, gap_threshold: float = METAL_GAP_EV) -> Tuple[pd.DataFrame, List[str]]:
    ckpt = load_model(resolve_model_path(model))
    rows, graphs, skipped = [], [], []
    for f in structure_files(paths):
        try:
            s = read_structure(f)
            graphs.append(featurize(s, ckpt.featurizer, name=str(f)))
        except ScreenError as e:
            if not skip_bad:
                raise
            skipped.append(str(e))
            continue
        rows.append({"file": str(f), "formula": s.composition.reduced_formula, "n_atoms": len(s)})
    if not graphs:
        raise ScreenError(f"{', '.join(map(str, paths))}: no readable structures")
    mean, std = ckpt.predict_graphs(graphs, device=resolve_device(device))
    table = pd.concat([pd.DataFrame(rows), pd.DataFrame(prediction_columns(ckpt.outputs, mean, std))], axis=1)
    if "band_gap" in ckpt.tasks:
        table["pred_class"] = metal_class(table, gap_threshold)
    table["model_hash"] = ckpt.short_hash
    return table, skipped
