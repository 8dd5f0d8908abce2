"""Training reads its crystals from the graph store; runs resume from committed state."""
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings, featurize
from screening.graphset import GraphSet
from screening.model import MTCGCNN
from screening.train import TrainSettings
from tests.helpers import TASKS, mp_rows, mp_structures
from workflows.train.training import TrainHooks, load_training_data, train_model

N = 48


@pytest.fixture(scope="module")
def csv48(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "mp48.csv"
    mp_rows(N).to_csv(path, index=False)
    return path


def small(**kw):
    base = dict(tasks=TASKS, epochs=4, batch_size=16, atom_fea_len=16, h_fea_len=16, n_conv=2,
                warmup_epochs=1, split=[0.5, 0.25, 0.25])
    return TrainSettings(**{**base, **kw})


def test_store_batches_equal_in_memory_batches_and_first_step_loss(tmp_path, csv48):
    loaded = load_training_data(csv48, TASKS, FeaturizerSettings(), tmp_path / "cache")
    assert loaded.featurized == N and len(loaded.graphs) == N and not loaded.skipped
    structures, targets = mp_structures(N)
    memory = GraphSet.from_graphs([featurize(s) for s in structures], targets, list(mp_rows(N).material_id))
    assert loaded.graphs.ids == memory.ids
    np.testing.assert_array_equal(loaded.graphs.targets, memory.targets)
    idx = np.random.default_rng(0).permutation(N)[:16]
    losses = []
    for data in (loaded.graphs, memory):
        torch.manual_seed(0)
        model = MTCGCNN(small().model_config(FeaturizerSettings()))
        model.set_normalizer(data.targets)
        per_task, present = model.task_losses(data.batch(idx), "l1")
        losses.append(per_task.detach().numpy())
    assert present.all() and np.all(losses[0] > 0)
    np.testing.assert_array_equal(losses[0], losses[1])


def test_second_load_reads_the_store_and_a_damaged_unit_is_remade(tmp_path, csv48):
    first = load_training_data(csv48, TASKS, FeaturizerSettings(), tmp_path / "cache")
    again = load_training_data(csv48, TASKS, FeaturizerSettings(), tmp_path / "cache")
    assert again.featurized == 0
    for name in ("atomic_numbers", "neighbor_counts", "dst", "distances", "atom_offsets", "edge_offsets"):
        np.testing.assert_array_equal(getattr(first.graphs, name), getattr(again.graphs, name))
    shard = sorted((tmp_path / "cache" / "graphs").rglob("distances/c/*"))[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    healed = load_training_data(csv48, TASKS, FeaturizerSettings(), tmp_path / "cache")
    assert healed.featurized == N  # the damaged unit held all 48: quarantined and made again
    for name in ("atomic_numbers", "neighbor_counts", "dst", "distances", "atom_offsets", "edge_offsets"):
        np.testing.assert_array_equal(getattr(first.graphs, name), getattr(healed.graphs, name))
    assert len(list((tmp_path / "cache" / "graphs").rglob("manifest/*.json.damaged-*"))) == 1


def test_resume_from_committed_files_on_a_fresh_machine_continues_without_a_gap(tmp_path, csv48, one_thread):
    fresh = tmp_path / "fresh"
    fresh.mkdir()

    def snapshot(row):  # what a session commits when it stops after epoch 2; nothing else travels
        if row["epoch"] == 2:
            for name in ("last.pt", "last.opt", "metrics.csv", "split.json"):
                shutil.copy(tmp_path / "straight" / name, fresh / name)

    train_model(csv48, tmp_path / "straight", small(), FeaturizerSettings(), tmp_path / "cache",
                hooks=TrainHooks(on_epoch=snapshot))
    assert pd.read_csv(fresh / "metrics.csv").epoch.tolist() == [1, 2]
    # the fresh machine has a cold cache: it featurizes again, then continues at epoch 3
    train_model(csv48, fresh, small(), FeaturizerSettings(), tmp_path / "cold-cache", resume=fresh / "last.pt")
    resumed = pd.read_csv(fresh / "metrics.csv").drop(columns="seconds")
    straight = pd.read_csv(tmp_path / "straight/metrics.csv").drop(columns="seconds")
    assert resumed.epoch.tolist() == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(resumed, straight, rtol=1e-5)


def test_resume_without_the_split_file_is_a_one_line_error(tmp_path, csv48):
    cache = tmp_path / "cache"
    train_model(csv48, tmp_path / "run", small(epochs=1), FeaturizerSettings(), cache)
    (tmp_path / "run" / "split.json").unlink()
    with pytest.raises(ScreenError, match="split.json is missing"):
        train_model(csv48, tmp_path / "run", small(epochs=2), FeaturizerSettings(), cache,
                    resume=tmp_path / "run" / "last.pt")


def test_resume_with_another_recipe_is_refused(tmp_path, csv48):
    cache = tmp_path / "cache"
    train_model(csv48, tmp_path / "run", small(epochs=1), FeaturizerSettings(), cache)
    with pytest.raises(ScreenError, match=r"lr 0.005 -> 0.01"):
        train_model(csv48, tmp_path / "run", small(epochs=2, lr=0.01), FeaturizerSettings(), cache,
                    resume=tmp_path / "run" / "last.pt")
    # more epochs is how a run is continued: allowed
    train_model(csv48, tmp_path / "run", small(epochs=2), FeaturizerSettings(), cache, resume=tmp_path / "run" / "last.pt")
    assert pd.read_csv(tmp_path / "run" / "metrics.csv").epoch.tolist() == [1, 2]


def test_resume_needs_a_sound_last_opt_and_its_own_directory(tmp_path, csv48):
    from typer.testing import CliRunner

    from cli import app

    cache = tmp_path / "cache"
    run = tmp_path / "run"
    train_model(csv48, run, small(epochs=1), FeaturizerSettings(), cache)
    state = (run / "last.opt").read_bytes()
    (run / "last.opt").write_bytes(state[: len(state) // 2])
    with pytest.raises(ScreenError, match="not a usable training state"):
        train_model(csv48, run, small(epochs=2), FeaturizerSettings(), cache, resume=run / "last.pt")
    (run / "last.opt").unlink()
    with pytest.raises(ScreenError, match="last.opt is missing"):
        train_model(csv48, run, small(epochs=2), FeaturizerSettings(), cache, resume=run / "last.pt")
    r = CliRunner().invoke(app, ["train", "--data", str(csv48), "--resume", str(run / "last.pt"),
                                 "--out", str(tmp_path / "elsewhere"), "--cache", str(cache)])
    assert r.exit_code == 2 and "continues the run in" in r.output and "Traceback" not in r.output


def test_too_little_data_is_a_one_line_error(tmp_path, csv48):
    with pytest.raises(ScreenError, match="at least 2 training and 1 validation"):
        train_model(csv48, tmp_path / "run", small(split=[1.0, 0.0, 0.0]), FeaturizerSettings(), tmp_path / "cache")


def test_evaluate_an_ensemble_on_its_members_shared_test_split(tmp_path, csv48):
    from workflows.train.training import evaluate_model, write_ensemble

    cache = tmp_path / "cache"
    for seed in (0, 1):
        train_model(csv48, tmp_path / f"m{seed}", small(epochs=2, seed=seed), FeaturizerSettings(), cache)
    write_ensemble(tmp_path / "ens.json", [tmp_path / "m0/best.pt", tmp_path / "m1/best.pt"])
    # the members' training domain travels with the ensemble file
    from screening.domain import Domain, domain_path
    domain = Domain.read(domain_path(tmp_path / "ens.json"))
    assert domain.n_train == 24 and domain == Domain.read(tmp_path / "m1" / "domain.json")
    metrics, where = evaluate_model(tmp_path / "ens.json", csv48, cache)
    assert metrics["n"] == 12 and metrics["members"] == 2 and where == tmp_path
    for task in TASKS:
        assert 0 <= metrics[f"within_1std_{task}"] <= metrics[f"within_2std_{task}"] <= 1
        assert metrics[f"mean_std_{task}"] > 0 and f"member1_mae_{task}" in metrics
    assert {"auc_nonmetal", "auc_nonmetal_from_gap", "spearman_formation_energy"} <= set(metrics)
    # members trained on another split cannot form one ensemble
    train_model(csv48, tmp_path / "other", small(epochs=1, split_seed=5), FeaturizerSettings(), cache)
    with pytest.raises(ScreenError, match="different splits"):
        write_ensemble(tmp_path / "bad.json", [tmp_path / "m0/best.pt", tmp_path / "other/best.pt"])
