import numpy as np
import pytest
import torch

from screening.checkpoint import load_checkpoint, save_checkpoint
from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings, featurize
from screening.predict import predict_graphs
from tests.helpers import mp_structures
from tests.helpers import warmed_model


@pytest.fixture(scope="module")
def setup():
    structures, targets = mp_structures(10)
    graphs = [featurize(s) for s in structures]
    model = warmed_model(graphs, tasks=("formation_energy_per_atom", "band_gap"))
    model.set_normalizer(targets[:, :2])
    return model, graphs


def test_round_trip_gives_identical_predictions(tmp_path, setup):
    model, graphs = setup
    digest = save_checkpoint(tmp_path / "m.pt", model, FeaturizerSettings(), {"note": "x"})
    ckpt = load_checkpoint(tmp_path / "m.pt", expect_featurizer=FeaturizerSettings())
    assert ckpt.hash == digest and ckpt.meta == {"note": "x"}
    assert ckpt.model.tasks == ["formation_energy_per_atom", "band_gap"]
    assert np.array_equal(predict_graphs(ckpt.model, graphs), predict_graphs(model, graphs))
    # same weights -> same hash; different weights -> different hash
    assert save_checkpoint(tmp_path / "m2.pt", model, FeaturizerSettings()) == digest


def test_flipped_byte_is_reported_as_corruption(tmp_path, setup):
    model, _ = setup
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, FeaturizerSettings())
    data = bytearray(path.read_bytes())
    # flip a byte inside the largest tensor's storage (zip entries are stored uncompressed)
    w = model.embedding.weight.detach().numpy().tobytes()
    at = bytes(data).find(w[:64])
    assert at > 0
    data[at + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ScreenError, match=r"m\.pt: checkpoint is corrupted"):
        load_checkpoint(path)


def test_truncated_or_foreign_file_is_a_clear_error(tmp_path, setup):
    model, _ = setup
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, FeaturizerSettings())
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ScreenError, match=r"m\.pt: not a readable screen checkpoint"):
        load_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ScreenError, match=r"other\.pt: not a readable screen checkpoint"):
        load_checkpoint(other)
    with pytest.raises(ScreenError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_featurizer_mismatch_is_a_clear_error(tmp_path, setup):
    model, _ = setup
    save_checkpoint(tmp_path / "m.pt", model, FeaturizerSettings())
    with pytest.raises(ScreenError) as e:
        load_checkpoint(tmp_path / "m.pt", expect_featurizer=FeaturizerSettings(cutoff=6.0))
    msg = str(e.value)
    assert "trained with featurizer" in msg and "'cutoff': 8.0" in msg and "'cutoff': 6.0" in msg
