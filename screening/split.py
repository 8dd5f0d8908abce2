"""Train/validation/test splits: drawn by a seed, kept as id lists (split.json), found again by id.

A run directory keeps its split as the ids of each part, so evaluation scores exactly the
crystals training never saw, and ensemble members trained on one split can be checked to share it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Sequence

import numpy as np

from screening.errors import ScreenError

if TYPE_CHECKING:
    from screening.graphset import GraphSet

PARTS = ("train", "val", "test")


def split_indices(n: int, fractions: Sequence[float], seed: int):
    """Seeded random train/val/test split (paper: 60/20/20)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ScreenError(f"`split` {list(fractions)}: need three fractions >= 0 summing to at most 1")
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:n_train + n_val + n_test]


def make_split(graphs: GraphSet, fractions: Sequence[float], seed: int) -> Dict[str, List[str]]:
    """The ids of each part."""
    parts = split_indices(len(graphs), fractions, seed)
    return {name: [graphs.ids[i] for i in idx] for name, idx in zip(PARTS, parts)}


def split_positions(graphs: GraphSet, ids: Sequence[str], where: str) -> np.ndarray:
    """Positions of `ids` in graphs; an id the data lacks is an error (the split belongs to other data)."""
    pos = {x: i for i, x in enumerate(graphs.ids)}
    missing = [x for x in ids if x not in pos]
    if missing:
        raise ScreenError(f"{where}: {len(missing)} ids are not in the training data (first: {missing[0]}); "
                          f"was the split made from another data file?")
    return np.array([pos[x] for x in ids], dtype=np.int64)


def read_split(path) -> dict:
    path = Path(path)
    try:
        split = json.loads(path.read_text())
        if not all(isinstance(split.get(k), list) for k in PARTS):
            raise ValueError("needs train, val and test id lists")
    except FileNotFoundError:
        raise ScreenError(f"{path}: not found") from None
    except ValueError as e:
        raise ScreenError(f"{path}: not a split file ({e})") from None
    return split


def split_file_of(model) -> Path:
    """split.json beside the checkpoint; for an ensemble, the members' shared split its manifest names."""
    if "split" in model.meta:
        f = Path(model.path).parent / model.meta["split"]
    else:
        f = Path(model.path).parent / "split.json"
    if not f.exists():
        raise ScreenError(f"{f}: not found, so the model's test crystals are unknown; "
                          f"pass `split_name` all to score every row of `data`")
    return f
