"""The model that ships in screening/models/: loads, matches the default featurizer, predicts sensibly."""
import json

from screening.checkpoint import default_model_path
from screening.ensemble import load_model
from screening.featurize import FeaturizerSettings, featurize
from screening.metrics import mae
from tests.helpers import TASKS, mp_rows, mp_structures


def test_the_bundled_model_ships():
    """It is part of the package (pyproject's package-data): its absence is a failure, not a skip."""
    path = default_model_path()
    assert path.is_file(), f"{path}: the bundled model is missing"
    assert {"ensemble.json", "split.json"} <= {p.name for p in path.parent.iterdir()}


def test_bundled_model_is_an_ensemble_with_its_card_and_default_featurizer():
    model = load_model(default_model_path(), expect_featurizer=FeaturizerSettings())
    assert model.tasks == TASKS and len(model.members) == 10
    assert len({m.hash for m in model.members}) == 10
    card = (default_model_path().parent.parent / "README.md").read_text()
    assert model.short_hash in card and "screen train" in card


def test_bundled_model_predictions_are_close_to_dft_on_its_test_split():
    model = load_model(default_model_path())
    split = json.loads((default_model_path().parent / "split.json").read_text())
    test_ids = set(split["test"])
    df = mp_rows(1000)
    keep = [i for i, m in enumerate(df.material_id) if m in test_ids]
    structures, targets = mp_structures(1000)
    pred, std = model.predict_graphs([featurize(structures[i]) for i in keep])
    true = targets[keep]
    assert len(keep) > 70  # 10 % of the rows
    assert mae(true[:, 0], pred[:, 0]) < 0.12  # eV/atom; the card gives the full test-split figures
    assert mae(true[:, 1], pred[:, 1]) < 0.5  # eV
    assert (std[:, :3] > 0).all()  # ten members disagree a little on every crystal


def test_the_cards_stage_error_row_gives_the_manifests_stages_and_terms():
    """The card's figures are the manifest's: the stages a run uses, their (scale, add), their out-of-fold
    coverage, and the prototypes they were fitted on (no stage the runs no longer use)."""
    import re

    stage_std = json.loads(default_model_path().read_text())["stage_std"]
    card = (default_model_path().parent.parent / "README.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith("| stage error |"))
    stages = set(stage_std) - {"fitted_on", "out_of_fold"}
    assert stages == {"unrelaxed", "relaxed"}
    for stage in stages:
        terms, oof = stage_std[stage], stage_std["out_of_fold"][stage]
        assert f"{stage} ({terms['scale']:g}, {terms['add']:g}" in row or \
            f"{stage} with CHGNet ({terms['scale']:g}, {terms['add']:g}" in row
        assert f"{oof['within 1σ'] * 100:.1f} / {oof['within 2σ'] * 100:.1f} %" in row
    assert re.search(r"\d+ substitution prototypes", stage_std["fitted_on"])[0] in row
    assert "anchored on" not in row
