"""Learned task weights (homoscedastic uncertainty) next to the fixed weights of Eq. 6."""
import numpy as np
import pandas as pd
import pytest
import torch

from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings, featurize
from screening.model import MTCGCNN, ModelSettings
from screening.graphset import GraphSet
from screening.train import TrainSettings, train
from screening.weighting import FixedWeighting, UncertaintyWeighting, make_weighting
from tests.helpers import TASKS, mp_structures
from tests.reference import masked_multitask_mse, per_task_mse


@pytest.fixture(scope="module")
def data400():
    structures, targets = mp_structures(400)
    return GraphSet.from_graphs([featurize(s) for s in structures], targets)


def test_fixed_weighting_is_eq6():
    pred = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    target = torch.tensor([[0.0, float("nan")], [1.0, 2.0]])
    per_task, present = per_task_mse(pred, target)
    assert per_task.tolist() == pytest.approx([(1 + 4) / 2, 4.0])
    assert present.tolist() == [True, True]
    w = FixedWeighting([2.0, 0.5])
    assert float(w(per_task)) == pytest.approx(float(masked_multitask_mse(pred, target, [2.0, 0.5])))
    assert w.weights() == [2.0, 0.5]


def test_uncertainty_loss_value_and_absent_task():
    w = UncertaintyWeighting(2)
    with torch.no_grad():
        w.log_var.copy_(torch.tensor([np.log(4.0), 0.0]))
    losses = torch.tensor([8.0, 3.0])
    # 1/2 (exp(-s) L + s) per task, mean over tasks
    expected = (0.5 * (8.0 / 4.0 + np.log(4.0)) + 0.5 * 3.0) / 2
    assert float(w(losses).detach()) == pytest.approx(expected)
    # a task with no label in the batch contributes nothing (its s_p gets no gradient)
    w(losses, torch.tensor([True, False])).backward()
    assert w.log_var.grad[1] == 0 and w.log_var.grad[0] != 0


def test_uncertainty_weights_converge_to_inverse_loss():
    """For constant task losses L_p the optimum is exp(-s_p) = 1 / L_p."""
    w = UncertaintyWeighting(3)
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    losses = torch.tensor([1.0, 100.0, 0.25])
    for _ in range(1500):
        opt.zero_grad()
        w(losses).backward()
        opt.step()
    np.testing.assert_allclose(w.weights(), [1.0, 0.01, 4.0], rtol=0.02)


def _learned_weights(data, loss_scale, steps=200):
    """Train a real MT-CGCNN with learned weights; task 0's loss is multiplied by loss_scale.

    Mini-batches of 128 crystals keep the network from driving its losses to ~0
    (as full-batch training on a handful of crystals would), so the weights track
    a loss level that is about the same in both arms."""
    torch.manual_seed(0)
    model = MTCGCNN(ModelSettings(TASKS, atom_fea_len=16, n_conv=1, h_fea_len=16))
    model.set_normalizer(data.targets)
    weighting = UncertaintyWeighting(len(TASKS))
    opt = torch.optim.Adam([{"params": model.parameters(), "lr": 0.003},
                            {"params": weighting.parameters(), "lr": 0.05}])
    scale = torch.tensor([loss_scale, 1.0, 1.0])
    rng = np.random.default_rng(0)
    for _ in range(steps):
        idx = rng.choice(len(data), 128, replace=False)
        batch = data.batch(idx)
        per_task, present = per_task_mse(model(batch), model.normalize(batch.targets))
        loss = weighting(per_task * scale, present)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return np.array(weighting.weights())


def test_learned_weights_respond_to_a_task_loss_scaled_by_100(data400, one_thread):
    plain = _learned_weights(data400, 1.0)
    scaled = _learned_weights(data400, 100.0)
    ratio = plain / scaled
    # the scaled task is weighted about 100x less; the others move by far less (within a factor 3)
    assert 50 < ratio[0] < 200, ratio
    assert np.all((1 / 3 < ratio[1:]) & (ratio[1:] < 3)), ratio
    # and with no scaling the weights moved away from the initial 1
    assert np.abs(np.log(plain)).max() > 0.5, plain


def test_train_with_learned_weights_logs_them_and_resumes(tmp_path, data32, one_thread):
    cfg = dict(tasks=TASKS, batch_size=16, lr=0.01, atom_fea_len=16, h_fea_len=16, n_conv=1,
               schedule="none", patience=1000, weighting="uncertainty")
    train(data32, data32, TrainSettings.paper(epochs=4, **cfg), tmp_path / "full", FeaturizerSettings())
    history = pd.read_csv(tmp_path / "full/metrics.csv")
    weights = history[[f"weight_{t}" for t in TASKS]].to_numpy()
    assert np.all(weights > 0) and np.abs(weights[-1] - 1).max() > 0.01
    # resuming restores the learned s_p too, so the weights continue where they were
    train(data32, data32, TrainSettings.paper(epochs=2, **cfg), tmp_path / "part", FeaturizerSettings())
    train(data32, data32, TrainSettings.paper(epochs=4, **cfg), tmp_path / "part", FeaturizerSettings(),
          resume=str(tmp_path / "part/last.pt"))
    resumed = pd.read_csv(tmp_path / "part/metrics.csv")
    np.testing.assert_allclose(resumed[[f"weight_{t}" for t in TASKS]].to_numpy(), weights, rtol=1e-4)


def test_fixed_weights_do_not_learn(tmp_path, data32):
    train(data32, data32, TrainSettings.paper(tasks=TASKS, epochs=2, batch_size=16, atom_fea_len=16, h_fea_len=16,
                                              n_conv=1, task_weights=[1, 2, 3]), tmp_path, FeaturizerSettings())
    history = pd.read_csv(tmp_path / "metrics.csv")
    assert history[[f"weight_{t}" for t in TASKS]].to_numpy().tolist() == [[1, 2, 3]] * 2


@pytest.mark.parametrize("kind, weights, message", [
    ("dynamic", None, "`weighting` dynamic: choose fixed or uncertainty"),
    ("uncertainty", [1.0, 2.0], "cannot be combined"),
    ("fixed", [1.0], "`task_weights`: 1 weights for 2 tasks"),
])
def test_bad_weighting_options(kind, weights, message):
    with pytest.raises(ScreenError, match=message):
        make_weighting(kind, 2, weights)
