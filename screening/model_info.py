"""What a run's client needs to know of its model, without torch: identity, outputs, featurizer.

`screen run`'s client never predicts; workers do. Yet importing torch and loading ten
members would be most of a warm run's memory on the client, and a slow start
(docs/run_speed.md). `Ensemble.info()` makes a ModelInfo; workflows/run/worker_model.describe
gets one in a short-lived process and caches it by the model files' sizes and times.

Also torch-free, for the same reason: the `device` choices, the default model's path and the
result columns made from a model's outputs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings
from screening.properties import BAND_GAP


@dataclass(frozen=True)
class ModelInfo:
    path: str  # the manifest or checkpoint it describes
    hash: str  # Ensemble.hash: the identity in prediction caches and provenance
    outputs: Tuple[str, ...]  # prediction columns, in order (MTCGCNN.outputs)
    featurizer: FeaturizerSettings
    members: int  # 1 for a single checkpoint
    meta: dict = field(default_factory=dict)  # the ensemble manifest's other fields (std_scale, unrelaxed_std)

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    def to_dict(self) -> dict:
        return {"path": self.path, "hash": self.hash, "outputs": list(self.outputs),
                "featurizer": self.featurizer.to_dict(), "members": self.members, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelInfo":
        return cls(str(d["path"]), str(d["hash"]), tuple(d["outputs"]), FeaturizerSettings.from_dict(d["featurizer"]),
                   int(d["members"]), dict(d["meta"]))


DEVICES = ("auto", "cpu", "cuda")  # `device` choices (screening/predict.py resolves them)


def check_device(device: str) -> str:
    """`device` if it is one of DEVICES, else the one-line error (before anything loads torch)."""
    if device not in DEVICES:
        raise ScreenError(f"`device` {device}: choose {', '.join(DEVICES)}")
    return device


def default_model_path() -> Path:
    """The model that ships with the package: the ensemble of screening/models/default/ (its card: models/README.md)."""
    return Path(__file__).parent / "models" / "default" / "ensemble.json"


ENSEMBLE_FORMAT = 1  # of an ensemble manifest (screening/ensemble.py)


def model_file(path) -> Path:
    """The file a `model` path names: a checkpoint (.pt), an ensemble manifest (.json), or for a
    directory its ensemble.json."""
    path = Path(path)
    return path / "ensemble.json" if path.is_dir() else path


def read_manifest(path: Path) -> Tuple[dict, List[Tuple[Path, str]]]:
    """(the manifest, [(member path, member hash)]) of an ensemble manifest; a one-line ScreenError
    when it is missing or not one."""
    try:
        manifest = json.loads(path.read_text())
        entries = manifest["members"]
        if manifest.get("format") != ENSEMBLE_FORMAT or not entries:
            raise ValueError("not an ensemble manifest")
        return manifest, [(path.parent / e["path"], e["hash"]) for e in entries]
    except FileNotFoundError:
        raise ScreenError(f"{path}: ensemble file not found") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ScreenError(f"{path}: not a readable ensemble file ({type(e).__name__}: {e})") from None


def ensemble_hash(member_hashes: Sequence[str], meta: dict) -> str:
    """An ensemble's identity (in prediction caches and provenance): the member's own hash for one
    checkpoint, else a hash of the member hashes and the std scaling."""
    if len(member_hashes) == 1:
        return member_hashes[0]
    text = "|".join(member_hashes)
    if meta.get("std_scale"):  # another error bar is another prediction: caches must not mix them
        text += "|" + json.dumps(meta["std_scale"], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_hash(path) -> str:
    """The hash of the ensemble a manifest describes, from the manifest alone (no torch, no members read)."""
    manifest, members = read_manifest(Path(path))
    return ensemble_hash([h for _, h in members], manifest)


NON_NEGATIVE = (BAND_GAP,)  # reported clipped at 0: a negative gap is regression noise of a metal


def prediction_columns(outputs: Sequence[str], mean: np.ndarray, std: np.ndarray) -> dict:
    """Result columns: pred_<output> and pred_<output>_std for every model output."""
    cols = {}
    for k, name in enumerate(outputs):
        cols[f"pred_{name}"] = np.maximum(mean[:, k], 0.0) if name in NON_NEGATIVE else mean[:, k]
        cols[f"pred_{name}_std"] = std[:, k]
    return cols
