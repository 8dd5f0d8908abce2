import numpy as np
import pandas as pd
import pytest

from screening.featurize import FeaturizerSettings
from screening.metrics import mae, nonmetal_auc, roc_auc, spearman
from screening.split import split_indices
from screening.train import TrainSettings, train
from tests.helpers import TASKS


def tiny_config(**kw):
    base = dict(tasks=TASKS, epochs=60, batch_size=32, lr=0.005, atom_fea_len=32, h_fea_len=32,
                n_conv=2, schedule="none", patience=1000, seed=0)
    base.update(kw)
    return TrainSettings.paper(**base)


def test_tiny_model_overfits_32_crystals(tmp_path, data32):
    best = train(data32, data32, tiny_config(epochs=150), tmp_path, FeaturizerSettings())
    history = pd.read_csv(tmp_path / "metrics.csv")
    assert history.train_loss.iloc[-1] < 0.02 * history.train_loss.iloc[0]
    assert best["score"] < 0.1  # validation MAE on the same crystals, in target std units


def test_training_is_reproducible_for_a_fixed_seed(tmp_path, data32, one_thread):
    a = train(data32, data32, tiny_config(epochs=3), tmp_path / "a", FeaturizerSettings())
    b = train(data32, data32, tiny_config(epochs=3), tmp_path / "b", FeaturizerSettings())
    c = train(data32, data32, tiny_config(epochs=3, seed=1), tmp_path / "c", FeaturizerSettings())
    assert pd.read_csv(tmp_path / "a/metrics.csv").drop(columns="seconds").equals(
        pd.read_csv(tmp_path / "b/metrics.csv").drop(columns="seconds"))
    assert a["score"] == b["score"] != c["score"]


def test_resume_continues_the_same_run(tmp_path, data32, one_thread):
    full = train(data32, data32, tiny_config(epochs=4), tmp_path / "full", FeaturizerSettings())
    train(data32, data32, tiny_config(epochs=2), tmp_path / "part", FeaturizerSettings())
    # extend the 2-epoch run to 4: same schedule-free result as the straight run
    resumed = train(data32, data32, tiny_config(epochs=4), tmp_path / "part", FeaturizerSettings(),
                    resume=str(tmp_path / "part/last.pt"))
    np.testing.assert_allclose(resumed["score"], full["score"], rtol=1e-4)
    assert len(pd.read_csv(tmp_path / "part/metrics.csv")) == 4


def test_split_is_seeded_and_disjoint():
    tr, va, te = split_indices(100, [0.6, 0.2, 0.2], seed=3)
    assert (len(tr), len(va), len(te)) == (60, 20, 20)
    assert len(set(tr) | set(va) | set(te)) == 100
    assert np.array_equal(split_indices(100, [0.6, 0.2, 0.2], seed=3)[2], te)


def test_metrics_match_hand_computed_values():
    assert mae([1, 2, np.nan], [2, 4, 0]) == pytest.approx(1.5)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1,2,3) vs (1,3,2): 1 - 6*sum(d^2)/(n(n^2-1)) = 1 - 6*2/24 = 0.5
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    # positives scored 0.9, 0.4; negatives 0.5, 0.1: pairs won 1+1+0+1 = 3 of 4
    assert roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    # true gaps 0 (metal), 0.01 (metal), 1.0, 2.0 (non-metals); perfect ordering
    assert nonmetal_auc([0, 0.01, 1.0, 2.0], [0.1, 0.0, 0.8, 3.0]) == pytest.approx(1.0)


def test_a_misspelled_schedule_is_one_line_before_any_data_is_read(tmp_path):
    """Not two epochs later, when the warm-up ends and the schedule is first asked for a factor."""
    from typer.testing import CliRunner

    from cli import app
    from screening.errors import ScreenError

    with pytest.raises(ScreenError, match=r"^`schedule` cosin: choose cosine, step, none$"):
        tiny_config(schedule="cosin").check()
    r = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "no-such.csv"), "--schedule", "Step",
                                 "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and lines == ["error: --schedule Step: choose cosine, step, none"], r.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()
