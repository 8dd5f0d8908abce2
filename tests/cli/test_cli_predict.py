import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from screening.checkpoint import load_checkpoint
from screening.featurize import featurize
from screening.predict import predict_graphs
from tests.helpers import TASKS, mp_rows, mp_structures

runner = CliRunner()


@pytest.fixture(scope="module")
def cif_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cifs")
    for mid, cif in zip(mp_rows(6).material_id, mp_rows(6).cif):
        (d / f"{mid}.cif").write_text(cif)
    structures, _ = mp_structures(6)
    structures[0].to(filename=str(d / "POSCAR"), fmt="poscar")
    return d


def test_predict_directory_writes_csv_matching_direct_predictions(tmp_path, model_path, cif_dir):
    out = tmp_path / "p.csv"
    r = runner.invoke(app, ["predict", str(cif_dir), "--model", str(model_path), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out)
    assert len(table) == 7 and set(table.pred_class) <= {"metal", "non-metal"}
    ckpt = load_checkpoint(model_path)
    structures, _ = mp_structures(6)
    direct = predict_graphs(ckpt.model, [featurize(s) for s in structures])
    by_file = table.set_index(table.file.str.rsplit("/", n=1).str[-1])
    for mid, row in zip(mp_rows(6).material_id, direct):
        np.testing.assert_allclose(by_file.loc[f"{mid}.cif", [f"pred_{t}" for t in TASKS]].to_numpy(float),
                                   row, rtol=1e-5)
    # the POSCAR copy of the first crystal predicts the same as its CIF
    np.testing.assert_allclose(by_file.loc["POSCAR", "pred_band_gap"], direct[0, 1], rtol=1e-4)
    assert "pred_formation_energy_per_atom" in r.output or "structures" in r.output


def test_predict_folder_with_bad_files_predicts_the_rest_lists_the_bad_and_exits_1(tmp_path, model_path):
    folder = tmp_path / "many"
    folder.mkdir()
    rows = mp_rows(3)
    for mid, cif in zip(rows.material_id, rows.cif):
        (folder / f"{mid}.cif").write_text(cif)
    (folder / "zz_broken.cif").write_text("data_broken\n_cell_length_a x\n")
    (folder / "zz_empty.cif").write_text("")
    out = tmp_path / "p.csv"
    r = runner.invoke(app, ["predict", str(folder), "--model", str(model_path), "--out", str(out)])
    assert r.exit_code == 1, r.output
    assert "zz_broken.cif: could not parse CIF" in r.output and "2 of 5 files unreadable" in r.output
    assert "Traceback" not in r.output
    table = pd.read_csv(out)
    assert sorted(table.file.str.rsplit("/", n=1).str[-1]) == sorted(f"{m}.cif" for m in rows.material_id)
    bad = pd.read_csv(tmp_path / "p.bad.csv")
    assert sorted(bad.file.str.rsplit("/", n=1).str[-1]) == ["zz_broken.cif", "zz_empty.cif"]
    # --skip-bad: the same files and lists, exit 0
    r = runner.invoke(app, ["predict", str(folder), "--model", str(model_path), "--out", str(out), "--skip-bad"])
    assert r.exit_code == 0 and len(pd.read_csv(out)) == 3 and len(pd.read_csv(tmp_path / "p.bad.csv")) == 2
    # --strict: the first bad file stops the run in one line, nothing written
    r = runner.invoke(app, ["predict", str(folder), "--model", str(model_path), "--out", str(tmp_path / "s.csv"),
                            "--strict"])
    assert r.exit_code == 2 and "zz_broken.cif: could not parse CIF" in r.output
    assert len([line for line in r.output.splitlines() if line.strip()]) == 1 and not (tmp_path / "s.csv").exists()
    # only good files: exit 0, and a stale list of bad files from the earlier run is gone
    for name in ("zz_broken.cif", "zz_empty.cif"):
        (folder / name).unlink()
    r = runner.invoke(app, ["predict", str(folder), "--model", str(model_path), "--out", str(out)])
    assert r.exit_code == 0 and not (tmp_path / "p.bad.csv").exists()


def test_predict_unwritable_out_fails_before_any_work(tmp_path, model_path, cif_dir):
    (tmp_path / "taken").write_text("a file")
    r = runner.invoke(app, ["predict", str(cif_dir), "--model", str(model_path), "--out",
                            str(tmp_path / "taken" / "p.csv")])
    assert r.exit_code == 2 and "--out" in r.output and "cannot write there" in r.output


def test_predict_with_mismatched_or_missing_model(tmp_path, cif_dir):
    r = runner.invoke(app, ["predict", str(cif_dir), "--model", str(tmp_path / "nope.pt")])
    assert r.exit_code == 2 and "nope.pt: checkpoint file not found" in r.output
