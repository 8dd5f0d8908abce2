"""A model as the product uses it: one checkpoint, or an ensemble of checkpoints with an error bar.

An ensemble is K members trained by `screen train` on the same split with
different seeds. Its prediction is the member mean and its uncertainty the
member standard deviation (ddof 1; 0 for a single checkpoint). The ensemble
file is a small JSON manifest next to (or above) its members:

    {"format": 1, "members": [{"path": "member-0.pt", "hash": "<content hash>"}, ...],
     "std_scale": {"formation_energy_per_atom": 1.4, ...}}     (optional)

Five members trained alike disagree less than they err: the raw member std is too
small an error bar. `std_scale` (fitted on the validation split by calibration_scale,
which `screen ensemble` runs when asked to calibrate) multiplies each output's std so that 68 %
of validation errors fall within one std, as for a Gaussian.

Paths are relative to the manifest; each member's content hash is checked on
load, so a replaced or damaged member is an error, not a silently other model.
The ensemble's hash (its identity in prediction caches and provenance) is the
member's own hash for one checkpoint and a hash of the member hashes otherwise.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from screening.checkpoint import Checkpoint, load_checkpoint
from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings
from screening.model_info import (ENSEMBLE_FORMAT, ModelInfo, NON_NEGATIVE, ensemble_hash,  # noqa: F401  (their home)
                                  model_file, prediction_columns, read_manifest)



@dataclass
class Ensemble:
    members: List[Checkpoint]
    path: str
    meta: dict = field(default_factory=dict)

    @property
    def featurizer(self) -> FeaturizerSettings:
        return self.members[0].featurizer

    @property
    def tasks(self) -> List[str]:
        return self.members[0].model.tasks

    @property
    def outputs(self) -> List[str]:
        return self.members[0].model.outputs

    @property
    def std_scale(self) -> np.ndarray:
        """Per-output factor on the member std (1 where the manifest gives none)."""
        given = self.meta.get("std_scale") or {}
        return np.array([float(given.get(name, 1.0)) for name in self.outputs], dtype=np.float32)

    @property
    def hash(self) -> str:
        return ensemble_hash([m.hash for m in self.members], self.meta)

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    def info(self) -> ModelInfo:
        """What a run's client needs of it (screening/model_info.py)."""
        return ModelInfo(self.path, self.hash, tuple(self.outputs), self.featurizer, len(self.members), dict(self.meta))

    def check(self, names: Optional[Sequence[str]] = None) -> None:
        """Members must agree on outputs and featurizer, or their mean means nothing; the message names
        the two members (by `names`, else by position) and what differs."""
        names = list(names) if names is not None else [f"member {i + 1}" for i in range(len(self.members))]
        first = self.members[0]
        for name, m in zip(names[1:], self.members[1:]):
            if m.model.outputs != first.model.outputs:
                raise ScreenError(f"{self.path}: members {names[0]} and {name} predict different outputs "
                                  f"({', '.join(first.model.outputs)} vs {', '.join(m.model.outputs)})")
            if m.featurizer != first.featurizer:
                raise ScreenError(f"{self.path}: members {names[0]} and {name} use different featurizers "
                                  f"({_featurizer_text(first.featurizer, m.featurizer)} vs "
                                  f"{_featurizer_text(m.featurizer, first.featurizer)}); train them with one "
                                  f"`cutoff` and `max_neighbors`")

    def to(self, device) -> "Ensemble":
        for m in self.members:
            m.model.to(device)
        return self

    def predict_graphs(self, graphs, max_atoms: int = 20_000, device=None) -> Tuple[np.ndarray, np.ndarray]:
        """(mean, std), each (n, n_outputs) float32, from a list of CrystalGraph."""
        from screening.predict import predict_graphs_many

        return self._combine(self._per_device(predict_graphs_many, graphs, max_atoms, device))

    def predict_set(self, data, max_atoms: int = 20_000, device=None) -> Tuple[np.ndarray, np.ndarray]:
        """(mean, std) for a GraphSet."""
        from screening.predict import predict_set_many

        return self._combine(self._per_device(predict_set_many, data, max_atoms, device))

    def _per_device(self, predict_many, data, max_atoms, device) -> List[np.ndarray]:
        """Each member's predictions; the members on one device share batches (predict._predict)."""
        groups: Dict[str, list] = {}
        for i, m in enumerate(self.members):
            groups.setdefault(str(device or _device(m)), []).append(i)
        preds: List[Optional[np.ndarray]] = [None] * len(self.members)
        for where, idx in groups.items():
            for i, p in zip(idx, predict_many([self.members[i].model for i in idx], data, max_atoms, where)):
                preds[i] = p
        return preds

    def _combine(self, preds: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        stack = np.stack(preds)
        std = stack.std(axis=0, ddof=1) * self.std_scale if len(preds) > 1 else np.zeros_like(stack[0])
        return stack.mean(axis=0).astype(np.float32), std.astype(np.float32)


def _featurizer_text(f: FeaturizerSettings, other: FeaturizerSettings) -> str:
    """A featurizer's cutoff and neighbour count, and whatever else differs from `other`."""
    text = f"cutoff {f.cutoff:g} A, {f.max_neighbors} neighbours"
    if f.gaussian_step != other.gaussian_step:
        text += f", Gaussian step {f.gaussian_step:g} A"
    if f.version != other.version:
        text += f", featurizer version {f.version}"
    return text


COVERAGE_1STD = 0.6827  # fraction of a Gaussian within one standard deviation


def calibration_scale(true: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """The factor s for which a fraction COVERAGE_1STD of |true - mean| lies within s * std.

    A quantile, not a variance ratio: a few wrong labels or structures with errors of
    several eV would otherwise inflate every error bar.
    """
    ok = np.isfinite(true) & (std > 0)
    if not ok.any():
        return 1.0
    return float(np.quantile(np.abs(true[ok] - mean[ok]) / std[ok], COVERAGE_1STD))


def _device(member: Checkpoint):
    return next(member.model.parameters()).device


def load_model(path, expect_featurizer: Optional[FeaturizerSettings] = None) -> Ensemble:
    """A checkpoint (.pt), an ensemble manifest (.json), or a directory holding ensemble.json."""
    path = model_file(path)
    if path.suffix != ".json":
        return Ensemble([load_checkpoint(path, expect_featurizer)], str(path))
    manifest, pairs = read_manifest(path)
    members = []
    for member_path, digest in pairs:
        ckpt = load_checkpoint(member_path, expect_featurizer)
        if ckpt.hash != digest:
            raise ScreenError(f"{path}: member {member_path.name} is not the checkpoint the ensemble lists "
                              f"(hash {ckpt.short_hash}, expected {digest[:12]})")
        members.append(ckpt)
    ensemble = Ensemble(members, str(path), meta={k: v for k, v in manifest.items() if k != "members"})
    ensemble.check([member_path.name for member_path, _ in pairs])
    return ensemble


def manifest(path, member_paths: Sequence, meta: Optional[dict] = None) -> bytes:
    """The manifest text for these checkpoints, paths relative to `path` (written by workflows/train/training.py)."""
    base = Path(path).resolve().parent
    entries = []
    for p in member_paths:
        ckpt = load_checkpoint(p)
        entries.append({"path": os.path.relpath(Path(p).resolve(), base), "hash": ckpt.hash})
    return json.dumps({"format": ENSEMBLE_FORMAT, **(meta or {}), "members": entries}, indent=1).encode()
