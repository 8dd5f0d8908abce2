"""The model that ships in screening/models/: loads, matches the default featurizer, predicts sensibly."""
import json

import pytest

from screening.checkpoint import default_model_path, load_checkpoint
from screening.featurize import FeaturizerConfig, featurize
from screening.metrics import mae
from screening.predict import predict_graphs
from tests.helpers import TASKS, mp_rows, mp_structures

pytestmark = pytest.mark.skipif(not default_model_path().exists(), reason="no bundled model yet")


def test_bundled_model_loads_with_its_card_and_default_featurizer():
    ckpt = load_checkpoint(default_model_path(), expect_featurizer=FeaturizerConfig())
    assert ckpt.model.tasks == TASKS
    card = (default_model_path().parent / "README.md").read_text()
    assert ckpt.short_hash in card and "screen train" in card


def test_bundled_model_predictions_are_close_to_dft_on_its_test_split():
    ckpt = load_checkpoint(default_model_path())
    split = json.loads((default_model_path().parent / "default.split.json").read_text())
    test_ids = set(split["test"])
    df = mp_rows(600)
    keep = [i for i, m in enumerate(df.material_id) if m in test_ids]
    structures, targets = mp_structures(600)
    pred = predict_graphs(ckpt.model, [featurize(structures[i]) for i in keep])
    true = targets[keep]
    assert len(keep) > 80
    assert mae(true[:, 0], pred[:, 0]) < 0.2  # eV/atom; the card gives the full test-split figures
    assert mae(true[:, 1], pred[:, 1]) < 0.8  # eV
