"""Ensembles: mean and std over members, manifests that name exactly their members, old checkpoints."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from screening.checkpoint import load_checkpoint, save_checkpoint
from screening.ensemble import Ensemble, load_model
from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings, featurize
from screening.model import MTCGCNN, ModelSettings
from tests.helpers import TASKS, mp_structures
from workflows.train.training import write_ensemble


@pytest.fixture(scope="module")
def graphs():
    structures, _ = mp_structures(10)
    return [featurize(s) for s in structures]


def member(path, seed, metal_head=True, featurizer=FeaturizerSettings()):
    torch.manual_seed(seed)
    model = MTCGCNN(ModelSettings(TASKS, atom_fea_len=16, n_conv=1, h_fea_len=16, metal_head=metal_head,
                                  cutoff=featurizer.cutoff, gaussian_step=featurizer.gaussian_step))
    model.eval()
    save_checkpoint(path, model, featurizer)
    return path


def test_identical_members_have_zero_std_and_the_single_model_mean(tmp_path, graphs):
    a = member(tmp_path / "a.pt", seed=0)
    shutil.copy(a, tmp_path / "b.pt")
    ens = Ensemble([load_checkpoint(a), load_checkpoint(tmp_path / "b.pt")], "two copies")
    mean, std = ens.predict_graphs(graphs)
    single_mean, single_std = load_model(a).predict_graphs(graphs)
    assert mean.shape == (len(graphs), len(TASKS) + 1)  # the tasks and p_metal
    np.testing.assert_allclose(mean, single_mean, rtol=1e-6)
    assert np.all(std == 0) and np.all(single_std == 0)
    # as a product file, two copies of one checkpoint are a mistake: refused
    with pytest.raises(ScreenError, match="listed twice"):
        write_ensemble(tmp_path / "same.json", [a, tmp_path / "b.pt"])
    assert not (tmp_path / "same.json").exists()


def test_different_members_have_positive_std_equal_to_the_sample_std(tmp_path, graphs):
    paths = [member(tmp_path / f"m{i}.pt", seed=i) for i in range(3)]
    ens = write_ensemble(tmp_path / "ens.json", paths)
    mean, std = ens.predict_graphs(graphs)
    each = np.stack([load_model(p).predict_graphs(graphs)[0] for p in paths])
    assert np.all(std > 0)
    np.testing.assert_allclose(mean, each.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, each.std(0, ddof=1), rtol=1e-4, atol=1e-6)
    assert 0 <= mean[:, -1].min() and mean[:, -1].max() <= 1  # P(metal) is a probability
    assert ens.hash != load_model(paths[0]).hash and len(ens.hash) == 64


def test_a_replaced_member_or_a_broken_manifest_is_a_one_line_error(tmp_path):
    paths = [member(tmp_path / f"m{i}.pt", seed=i) for i in range(2)]
    write_ensemble(tmp_path / "ens.json", paths)
    member(tmp_path / "m1.pt", seed=7)  # retrained in place: not the member the ensemble lists
    with pytest.raises(ScreenError, match="not the checkpoint the ensemble lists"):
        load_model(tmp_path / "ens.json")
    (tmp_path / "bad.json").write_text("{\"members\": [")
    with pytest.raises(ScreenError, match="not a readable ensemble file"):
        load_model(tmp_path / "bad.json")
    member(tmp_path / "plain.pt", seed=0, metal_head=False)
    with pytest.raises(ScreenError, match="predict different outputs"):
        write_ensemble(tmp_path / "mixed.json", [paths[0], tmp_path / "plain.pt"])


def test_members_of_other_featurizers_are_refused_naming_cutoff_and_neighbours(tmp_path):
    a = member(tmp_path / "a.pt", seed=0)
    b = member(tmp_path / "b.pt", seed=1, featurizer=FeaturizerSettings(cutoff=6.0, max_neighbors=8))
    r = CliRunner().invoke(app, ["ensemble", str(a), str(b), "--out", str(tmp_path / "e.json")])
    assert r.exit_code == 2, r.output
    assert " ".join(r.output.split()) == (
        f"error: {tmp_path / 'e.json'}: members {a} and {b} use different featurizers (cutoff 8 A, 12 neighbours "
        f"vs cutoff 6 A, 8 neighbours); train them with one --cutoff and --max-neighbors")
    assert not (tmp_path / "e.json").exists()


PREVIOUS = Path(__file__).parents[1] / "data" / "previous_format.pt"  # the shipped model before the ensemble


def test_the_previous_checkpoint_format_loads(graphs):
    """The model shipped before the ensemble was written before the metal head existed: it loads as a one-member model."""
    ckpt = load_checkpoint(PREVIOUS)
    assert ckpt.model.config.metal_head is False and ckpt.model.outputs == TASKS
    mean, std = load_model(PREVIOUS).predict_graphs(graphs)
    assert mean.shape == (len(graphs), 3) and np.all(std == 0) and np.all(np.isfinite(mean))


def test_a_checkpoint_of_an_unknown_format_is_a_one_line_error(tmp_path):
    payload = torch.load(PREVIOUS, weights_only=True)
    payload["format"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ScreenError, match="not a readable screen checkpoint"):
        load_model(tmp_path / "future.pt")


def test_cli_ensemble_then_predict_shows_error_bars(tmp_path):
    from tests.helpers import rocksalt

    paths = [str(member(tmp_path / f"m{i}.pt", seed=i)) for i in range(2)]
    result = CliRunner().invoke(app, ["ensemble", *paths, "--out", str(tmp_path / "ens.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ens.json").read_text())["members"][1]["path"] == "m1.pt"
    rocksalt().to(filename=str(tmp_path / "NaCl.cif"))
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "NaCl.cif"), "--model", str(tmp_path / "ens.json"),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "±" in result.output
    import pandas as pd
    row = pd.read_csv(out).iloc[0]
    assert row["pred_formation_energy_per_atom_std"] > 0 and 0 <= row["pred_p_metal"] <= 1
    assert row["pred_class"] == ("metal" if row["pred_p_metal"] >= 0.5 else "non-metal")


def test_calibration_scale_recovers_a_gaussian_scale_and_ignores_outliers():
    from screening.ensemble import calibration_scale

    rng = np.random.default_rng(0)
    std = rng.uniform(0.5, 1.5, 20_000)
    err = rng.normal(0.0, 1.0, 20_000) * std * 2.0  # errors twice as large as the std says
    assert calibration_scale(err, np.zeros_like(err), std) == pytest.approx(2.0, rel=0.03)
    err[:200] = 1e3  # 1 % absurd errors (a wrong label) barely move it
    assert calibration_scale(err, np.zeros_like(err), std) == pytest.approx(2.0, rel=0.05)
    err[:10] = np.nan  # missing labels are skipped
    assert np.isfinite(calibration_scale(err, np.zeros_like(err), std))


def test_std_scale_multiplies_the_error_bar_and_is_part_of_the_hash(tmp_path, graphs):
    paths = [member(tmp_path / f"m{i}.pt", seed=i) for i in range(2)]
    plain = write_ensemble(tmp_path / "e.json", paths)
    mean, std = plain.predict_graphs(graphs)
    scaled = Ensemble(plain.members, "scaled", meta={"std_scale": {TASKS[0]: 2.0}})
    mean2, std2 = scaled.predict_graphs(graphs)
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_allclose(std2[:, 0], 2.0 * std[:, 0], rtol=1e-6)
    np.testing.assert_array_equal(std2[:, 1:], std[:, 1:])
    assert scaled.hash != plain.hash  # cached predictions of one never serve the other


def test_calibrating_members_without_a_split_is_a_one_line_error(tmp_path):
    paths = [member(tmp_path / f"m{i}.pt", seed=i) for i in range(2)]
    with pytest.raises(ScreenError, match="needs the members' split.json"):
        write_ensemble(tmp_path / "e.json", paths, calibrate=tmp_path / "data.csv", cache_dir=tmp_path / "c")


def test_an_impossible_unrelaxed_std_is_a_one_line_error_and_writes_nothing(tmp_path):
    paths = [str(member(tmp_path / f"m{i}.pt", seed=i)) for i in range(2)]
    r = CliRunner().invoke(app, ["ensemble", *paths, "--out", str(tmp_path / "ens.json"), "--unrelaxed-std", "12"])
    assert r.exit_code == 2 and r.output.strip() == "error: --unrelaxed-std 12.0: need 0 <= eV/atom < 10", r.output
    assert not (tmp_path / "ens.json").exists()


def test_members_share_each_batch_and_its_expansion(tmp_path, graphs, monkeypatch):
    from screening.model import GaussianExpansion
    from screening.predict import predict_graphs

    ens = Ensemble([load_checkpoint(member(tmp_path / f"{i}.pt", seed=i)) for i in range(3)], "three")
    alone = [predict_graphs(m.model, graphs) for m in ens.members]
    calls = []
    original = GaussianExpansion.forward
    monkeypatch.setattr(GaussianExpansion, "forward", lambda self, d: calls.append(len(d)) or original(self, d))
    mean, std = ens.predict_graphs(graphs)
    assert len(calls) == 1  # one batch (10 small crystals), expanded once for the three members
    stack = np.stack(alone)
    assert np.array_equal(mean, stack.mean(0).astype(np.float32))  # the same numbers, bit for bit
    assert np.array_equal(std, (stack.std(0, ddof=1) * ens.std_scale).astype(np.float32))
