"""One checkpoint file: weights, tasks, normalizers, featurizer config, content hash.

The hash covers the model config, featurizer config and every tensor, so a
flipped byte is caught on load, and it doubles as the model's identity in
prediction caches and result provenance.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from screening.atomic import write_atomic
from screening.errors import ScreenError
from screening.model_info import default_model_path  # noqa: F401  (its home; imported from here too)
from screening.featurize import FeaturizerSettings
from screening.model import MTCGCNN, ModelSettings

CHECKPOINT_FORMAT = 1


def _content_hash(model_config: dict, featurizer: dict, state: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"model": model_config, "featurizer": featurizer}, sort_keys=True).encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@dataclass
class Checkpoint:
    model: MTCGCNN
    featurizer: FeaturizerSettings
    hash: str
    meta: dict = field(default_factory=dict)  # training info: epoch, metrics, command, ...

    @property
    def short_hash(self) -> str:
        return self.hash[:12]


def save_checkpoint(path, model: MTCGCNN, featurizer: FeaturizerSettings, meta: Optional[dict] = None) -> str:
    """Write atomically (temp file + rename); returns the content hash."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    model_config = model.config.to_dict()
    digest = _content_hash(model_config, featurizer.to_dict(), state)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_config": model_config,
        "featurizer": featurizer.to_dict(),
        "state_dict": state,
        "hash": digest,
        "meta": meta or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, torch_bytes(payload))
    return digest


def torch_bytes(obj) -> bytes:
    """What torch.save writes, as bytes (for write_atomic)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def load_checkpoint(path, expect_featurizer: Optional[FeaturizerSettings] = None,
                    map_location="cpu") -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise ScreenError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("unknown layout")
        config = ModelSettings(**payload["model_config"])
        featurizer = FeaturizerSettings.from_dict(payload["featurizer"])
        state = payload["state_dict"]
        digest = _content_hash(payload["model_config"], payload["featurizer"], state)
    except ScreenError:
        raise
    except Exception as e:  # torch/pickle/zip errors on a damaged file
        raise ScreenError(f"{path}: not a readable screen checkpoint ({type(e).__name__}: {e})") from None
    if digest != payload.get("hash"):
        raise ScreenError(f"{path}: checkpoint is corrupted (content hash mismatch)")
    if expect_featurizer is not None and expect_featurizer != featurizer:
        raise ScreenError(
            f"{path}: checkpoint was trained with featurizer {featurizer.to_dict()} "
            f"but this run uses {expect_featurizer.to_dict()}")
    model = MTCGCNN(config)
    model.load_state_dict(state)
    model.eval()
    return Checkpoint(model=model, featurizer=featurizer, hash=digest, meta=payload.get("meta", {}))
