"""`--relax chgnet`: real CHGNet relaxations (CPU, small cells) of distorted known crystals."""
import gzip
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from screening.errors import ScreenError
from screening.relax import Relaxer, check_relaxer, distort
from tests.helpers import DATA

runner = CliRunner()
IDS = ["mp-191", "mp-215", "mp-252"]  # YRh, YSb, BeTe: two atoms each, so fast


@pytest.fixture(scope="module")
def originals():
    from screening.structures import structure_from_cif_text

    df = pd.read_csv(DATA, nrows=200)
    df = df[df.material_id.isin(IDS)].set_index("material_id").loc[IDS]
    return df, {i: structure_from_cif_text(df.cif[i], i) for i in IDS}


def lattice_error(s, ref) -> float:
    return float(np.abs(np.array(s.lattice.abc) - ref.lattice.abc).sum())


def test_relax_lowers_the_energy_and_moves_the_lattice_back(originals):
    _, structures = originals
    relaxer = Relaxer("chgnet")
    for i, (mid, s) in enumerate(structures.items()):
        d = distort(s, seed=i)
        r = relaxer.relax(d)
        assert r.converged and 0 < r.steps <= 500
        assert r.energy_change < -0.005, (mid, r.energy_change)  # eV/atom: the distortion cost energy
        assert lattice_error(r.structure, s) < 0.5 * lattice_error(d, s), mid
        assert abs(r.structure.volume / s.volume - 1) < 0.05, mid


def test_unknown_relaxer_is_one_line():
    with pytest.raises(ScreenError, match=r"^`relax` mace: choose chgnet$"):
        check_relaxer("mace")


def test_run_with_relax_writes_relaxed_structures_and_caches_them(originals, tmp_path, inprocess_run):
    from pymatgen.core import Structure

    from cache.keys import structure_key
    from screening.checkpoint import default_model_path
    from screening.ensemble import load_model

    df, structures = originals
    rows = df.reset_index().copy()
    rows["cif"] = [distort(structures[m], seed=i).to(fmt="cif") for i, m in enumerate(IDS)]
    data = tmp_path / "distorted.csv"
    rows.to_csv(data, index=False)
    args = ["run", "--query", ",".join(IDS), "--source", f"local:{data}", "--relax", "chgnet", *inprocess_run,
            "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "relaxation (chgnet, FIRE, fmax 0.05 eV/A): 3 relaxed (3 converged, 0 from the cache)" in r.output
    table = pd.read_csv(tmp_path / "o" / "results.csv").set_index("id")
    assert table.relax_converged.all() and (table.relax_energy_change < 0).all()
    lines = [json.loads(x) for x in gzip.decompress((tmp_path / "o" / "relaxed.jsonl.gz").read_bytes()).splitlines()]
    assert sorted(x["id"] for x in lines) == sorted(IDS)
    featurizer = load_model(default_model_path()).featurizer
    for x in lines:
        relaxed = Structure.from_dict(x["structure"])
        # what was predicted is the relaxed structure: its graph key is the row's
        assert structure_key(relaxed, featurizer) == table.structure_key[x["id"]]
        assert lattice_error(relaxed, structures[x["id"]]) < lattice_error(
            distort(structures[x["id"]], seed=IDS.index(x["id"])), structures[x["id"]])
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["relaxed"] == 3 and summary["relax"].startswith("chgnet-")
    # again, in partitions of 2 (relax tasks slice them on the workers): every relaxation comes
    # from the cache, with the same predictions
    r = runner.invoke(app, args + ["--partition-size", "2"])
    assert r.exit_code == 0 and "3 relaxed (3 converged, 3 from the cache)" in r.output, r.output
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["partitions"] == 2
    again = pd.read_csv(tmp_path / "o" / "results.csv").set_index("id")
    pd.testing.assert_series_equal(again.pred_formation_energy_per_atom.sort_index(),
                                   table.pred_formation_energy_per_atom.sort_index())
