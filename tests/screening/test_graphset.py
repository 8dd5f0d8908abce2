"""GraphSet's .npz file: what the GPU scripts (benchmarks/gpu.py, experiments/default/train_gpu.py) carry."""
import numpy as np
import pytest

from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings, featurize
from screening.graphset import ARRAYS, GraphSet
from tests.helpers import diamond, rocksalt


def test_a_saved_set_loads_equal_and_only_for_its_featurizer(tmp_path):
    config = FeaturizerSettings()
    targets = np.array([[1.0, np.nan], [2.0, 3.0]], np.float32)
    graphs = GraphSet.from_graphs([featurize(s, config) for s in (rocksalt(), diamond())], targets, ids=["a", "b"])
    graphs.save(tmp_path / "g.npz", config.fingerprint(), tasks=["x", "y"])

    back = GraphSet.load(tmp_path / "g.npz", config.fingerprint())
    assert back.ids == ["a", "b"]
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(graphs, name))
        assert getattr(back, name).dtype == getattr(graphs, name).dtype
    assert list(np.load(tmp_path / "g.npz")["tasks"]) == ["x", "y"]
    with pytest.raises(ScreenError, match="another featurizer"):
        GraphSet.load(tmp_path / "g.npz", FeaturizerSettings(cutoff=config.cutoff + 1).fingerprint())
