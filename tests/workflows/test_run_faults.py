"""Faults of `screen run` found by reading the code and by probing (issue 27): flags, counts, refused
inputs, lost entries, interrupted publishing. In-process Dask clusters (LocalCluster(processes=False))
where no per-process behaviour is under test."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from pymatgen.core import Lattice, Structure

from screening.domain import Domain
from screening.errors import ScreenError
from tests.helpers import DATA, rocksalt
from workflows.run.options import PipelineSettings
from workflows.run.pipeline import run_screening

NOT_CONVERGED = "relaxation did not converge"


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


def model_with_domain(model_path, folder, **domain) -> str:
    """The session's tiny model beside a domain.json of our choosing (flags come only from it)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_path, folder / "model.pt")
    (folder / "domain.json").write_text(Domain(5000, **domain).to_json())
    return str(folder / "model.pt")


EVERY_ELEMENT = {el: 1000 for el in ("H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co "
                                     "Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb "
                                     "Te I Xe Cs Ba La").split()}


def crystal_folder(folder, structures: dict):
    """A directory source: one CIF per named structure."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, s in structures.items():
        s.to(filename=str(folder / f"{name}.cif"))
    return folder


def overlapping(distance=0.1, a=5.64) -> Structure:
    """Na and Cl `distance` A apart in a cubic cell: an input error, not a crystal."""
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [distance / a, 0, 0]])


def test_hybrid_substitution_candidates_are_flagged_unrelaxed(client, model_path, tmp_path):
    """substitution:local:PATH names its candidates "substitution:local:...": hypothetical all the same."""
    templates = crystal_folder(tmp_path / "known", {"KCl": rocksalt(6.29, ("K", "Cl"))})
    model = model_with_domain(model_path, tmp_path / "m", element_counts=EVERY_ELEMENT)
    # (relax="none": the funnel would relax them all, so few they are)
    r = run_screening(client, PipelineSettings(query="Na2O", source=f"substitution:local:{templates}", model=model,
                                               device="cpu", cache_dir=str(tmp_path / "c"), out_dir=str(tmp_path / "o"),
                                               relax="none"))
    t = r.table
    assert len(t) > 1 and t.source.str.startswith("substitution:local:").all()
    assert (t.stage == "unrelaxed").all()
    assert (t["flags"] == "unrelaxed").all(), t["flags"].tolist()  # the only flag the domain leaves
    assert r.summary["flagged"] == len(t)


def test_cache_hits_are_never_negative_with_drop_flagged(client, model_path, tmp_path):
    """A cold run that drops flagged candidates: no hits at all, in summary.json and in stats.jsonl."""
    from screening.domain import density
    from screening.sources.local import LocalSource

    densities = sorted(density(c.structure) for c in LocalSource(DATA).fetch("Li-Fe-O"))
    middle = densities[len(densities) // 2]  # the denser half is flagged
    model = model_with_domain(model_path, tmp_path / "m", element_counts=EVERY_ELEMENT,
                              density_range=[0.0, middle])
    r = run_screening(client, PipelineSettings(query="Li-Fe-O", source=f"local:{DATA}", model=model, device="cpu",
                                               cache_dir=str(tmp_path / "c"), out_dir=str(tmp_path / "o"),
                                               drop_flagged=True))
    s = r.summary
    assert s["featurized"] == s["inferred"] == len(densities) == 32
    assert 0 < s["flagged_dropped"] < 32 and len(r.table) == 32 - s["flagged_dropped"]
    assert s["graph_cache_hits"] == 0 and s["prediction_cache_hits"] == 0
    stats = [json.loads(line) for line in (tmp_path / "c" / "stats.jsonl").read_text().splitlines()]
    assert (stats[-1]["graph_hits"], stats[-1]["prediction_hits"]) == (0, 0)
    warm = run_screening(client, PipelineSettings(query="Li-Fe-O", source=f"local:{DATA}", model=model, device="cpu",
                                                  cache_dir=str(tmp_path / "c"), out_dir=str(tmp_path / "o"),
                                                  drop_flagged=True)).summary
    assert warm["graph_cache_hits"] == warm["prediction_cache_hits"] == 32


def test_overlapping_atoms_are_refused_by_the_run_and_named(client, model_path, tmp_path):
    folder = crystal_folder(tmp_path / "in", {"good": rocksalt(), "close": overlapping(0.1),
                                              "same": overlapping(0.0)})
    r = run_screening(client, PipelineSettings(query="Na-Cl", source=f"local:{folder}", model=model_path, device="cpu",
                                               cache_dir=str(tmp_path / "c"), out_dir=str(tmp_path / "o")))
    assert r.table.id.tolist() == ["good"]
    assert r.summary["unusable"] == 2
    problems = sorted(r.summary["unusable_first"])
    assert problems[0].endswith("close: atoms 0 (Na) and 1 (Cl) are 0.10 A apart, closer than the 0.5 A any "
                                "two atoms of a crystal keep; check the file")
    assert "same: atoms 0 (Na) and 1 (Cl) are 0.00 A apart" in problems[1]


def test_relax_leaves_overlapping_atoms_refused_and_flags_an_unconverged_relaxation(client, model_path, tmp_path):
    """The overlapping candidate is never relaxed nor predicted. The other's relaxation did not converge
    (a real CHGNet relaxation of 2 FIRE steps, found in the relax cache where the run looks): it is
    predicted, and its flags say so."""
    pytest.importorskip("chgnet")
    from cache.cache_dir import CacheDir
    from cache.relax_cache import relax_key
    from screening.relax import Relaxer, distort

    rattled = distort(rocksalt(), seed=1)
    folder = crystal_folder(tmp_path / "in", {"rattled": rattled, "close": overlapping(0.1)})
    from screening.structures import read_structure

    as_read = read_structure(folder / "rattled.cif")
    unfinished = Relaxer("chgnet", max_steps=2).relax(as_read)
    assert not unfinished.converged
    CacheDir(tmp_path / "c").claim().relaxed(Relaxer("chgnet").version).put(
        relax_key(as_read), unfinished.structure.as_dict(), unfinished.info())
    r = run_screening(client, PipelineSettings(query="Na-Cl", source=f"local:{folder}", model=model_path, device="cpu",
                                               cache_dir=str(tmp_path / "c"), out_dir=str(tmp_path / "o"),
                                               relax="chgnet"))
    t = r.table
    assert t.id.tolist() == ["rattled"] and t["flags"].tolist() == [NOT_CONVERGED]
    assert bool(t.relax_converged.iloc[0]) is False and t.relax_steps.iloc[0] == 2
    assert r.summary["unusable"] == 1 and "close: atoms 0 (Na) and 1 (Cl) are 0.10 A apart" in \
        r.summary["unusable_first"][0]
    assert r.summary["relax_failed"] == 1 and "0.10 A apart" in r.summary["relax_failed_first"][0]


def small_set(n: int):
    """A ranked table and summary as write_outputs gets them (no band gap: no plot)."""
    table = pd.DataFrame({"rank": range(1, n + 1), "id": [f"mp-{i}" for i in range(n)],
                          "formula": ["NaCl"] * n, "pred_e_above_hull": np.linspace(0, 1, n)})
    return table, {"query": "Na-Cl", "source": "local:x", "ranked": n, "candidates": n,
                   "ranked_by": "lowest predicted E_hull first"}


@pytest.mark.parametrize("interrupted_at", ["results.csv", "summary.json"])
def test_ctrl_c_while_publishing_keeps_the_previous_results(tmp_path, monkeypatch, interrupted_at):
    """A real SIGINT (Python raises KeyboardInterrupt) just before one of the new files moves in."""
    import os
    import signal

    from cache.atomic import TMP_PREFIX
    from workflows.run import outputs

    out = tmp_path / "o"
    opts = PipelineSettings(query="Na-Cl", out_dir=str(out))
    table, summary = small_set(5)
    outputs.write_outputs(table, table, summary, opts)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"results.csv", "report.html", "summary.json"}

    replace = os.replace

    def interrupted(src, dst):
        if os.path.basename(dst) == interrupted_at and Path(src).parent.name.startswith(TMP_PREFIX):  # moving in
            signal.raise_signal(signal.SIGINT)
        return replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", interrupted)
    # Python's own Ctrl-C handler: importing dask_jobqueue (other tests do) replaces it with sys.exit
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    table, summary = small_set(3)
    try:
        with pytest.raises(KeyboardInterrupt):
            outputs.write_outputs(table, table, summary, opts)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # and no staging folder left


def test_changes_compare_against_the_same_out_from_another_working_directory(client, model_path, tmp_path,
                                                                             monkeypatch):
    """summary.json names its files relative to --out: reaching the folder from elsewhere finds its own results,
    not those of a folder with the same relative name there."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    common = dict(query="Li-Fe-O", source=f"local:{DATA}", model=model_path, device="cpu",
                  cache_dir=str(tmp_path / "c"))
    monkeypatch.chdir(tmp_path / "a")
    first = run_screening(client, PipelineSettings(out_dir="pq", **common))
    assert json.loads((tmp_path / "a" / "pq" / "summary.json").read_text())["files"]["results"] == "results.csv"
    monkeypatch.chdir(tmp_path / "b")  # a folder of the same name here, with other results of the same query
    from screening.rank import RankSettings

    run_screening(client, PipelineSettings(out_dir="pq", rank=RankSettings(top=5), **common))
    again = run_screening(client, PipelineSettings(out_dir="../a/pq", **common))
    assert len(again.table) == len(first.table) == 32
    changes = again.summary["changes"]
    assert changes["compared"] is True and changes["note"] == "no changes", changes


def tiny_checkpoint(path, seed: int) -> str:
    """A random (untrained) checkpoint: two of other seeds have the same size, byte for byte."""
    import torch

    from screening.checkpoint import save_checkpoint
    from screening.featurize import FeaturizerSettings
    from screening.model import MTCGCNN, ModelSettings

    torch.manual_seed(seed)
    model = MTCGCNN(ModelSettings(["formation_energy_per_atom", "band_gap"], atom_fea_len=8, n_conv=1, h_fea_len=8))
    return save_checkpoint(path, model.eval(), FeaturizerSettings(), meta={})


def replace_keeping_size_and_time(path, other) -> None:
    """`other`'s bytes into `path`, which keeps its size and modification time (as `cp -p` of a retrained
    checkpoint of the same shape can leave it)."""
    import os

    st = path.stat()
    data = other.read_bytes()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_a_checkpoint_replaced_by_one_of_the_same_size_and_time_is_described_again(tmp_path):
    from workflows.run import worker_model

    hash_a, hash_b = tiny_checkpoint(tmp_path / "a.pt", 0), tiny_checkpoint(tmp_path / "b.pt", 1)
    path = tmp_path / "model.pt"
    path.write_bytes((tmp_path / "a.pt").read_bytes())
    assert worker_model.describe(path, tmp_path / "c").hash == hash_a
    replace_keeping_size_and_time(path, tmp_path / "b.pt")
    assert worker_model.describe(path, tmp_path / "c").hash == hash_b


def test_workers_predict_only_with_the_weights_their_cache_key_names(tmp_path):
    """A worker that kept the old model loads the new one; one that finds other weights than the run's
    key refuses them, and nothing is cached under that key."""
    from cache.cache_dir import CacheDir
    from screening.ensemble import load_model
    from screening.featurize import FeaturizerSettings, featurize
    from screening.sources.local import LocalSource
    from workflows.run.records import Fetched
    from workflows.run.tasks import featurize_task, infer_task

    config = FeaturizerSettings()
    hash_a, hash_b = tiny_checkpoint(tmp_path / "a.pt", 0), tiny_checkpoint(tmp_path / "b.pt", 1)
    path = tmp_path / "model.pt"
    path.write_bytes((tmp_path / "a.pt").read_bytes())
    outputs = load_model(path).outputs
    columns = tuple(outputs) + tuple(f"{o}_std" for o in outputs)
    candidates = LocalSource(DATA).fetch("Li-Fe-O")
    parts = [candidates[0:10], candidates[10:20], candidates[20:30]]
    cache = str(tmp_path / "c")
    feats = [featurize_task(Fetched(p), cache, config) for p in parts]

    def infer(i, model_hash):
        return infer_task(feats[i], cache, str(path), "cpu", config, 20_000, model_hash, columns)

    assert infer(0, hash_a)["inferred"] == 10  # this process now holds model A
    replace_keeping_size_and_time(path, tmp_path / "b.pt")
    got = infer(1, hash_b)["predictions"]  # the client described the new file: B
    mean, _ = load_model(tmp_path / "b.pt").predict_graphs([featurize(c.structure, config) for c in parts[1]])
    keys = feats[1].keys
    np.testing.assert_allclose(np.stack([got[k][:len(outputs)] for k in keys]), mean, rtol=1e-5, atol=1e-6)
    with pytest.raises(ScreenError, match=r"`model` .*model.pt: the file changed after the run described it"):
        infer(2, hash_a)  # a description of A while the file holds B
    keys = feats[2].keys
    assert CacheDir(cache).predictions(hash_a, list(columns)).get_many(keys) == {}


def test_mp_entries_left_out_of_an_answer_are_asked_again_and_never_cached_missing(mp_api_env, tmp_path):
    """The server leaves one entry out of every material_ids answer, with a total_doc that agrees: the
    partition fails in one line and is not remembered; left out once only, the second ask gets it."""
    from cache.cache_dir import CacheDir
    from screening.featurize import FeaturizerSettings
    from screening.query import parse_query
    from screening.sources import open_source
    from workflows.run.plan import part_key
    from workflows.run.tasks import partition_task

    source, query, config, cache = open_source("mp", lazy=True), parse_query("Li-Fe-O"), FeaturizerSettings(), \
        str(tmp_path / "c")
    [part] = source.partitions(query, 100)
    assert len(part.entries) == 32
    description = source.describe()

    def remembered():
        return CacheDir(cache).structures().get_keyed(part_key(query.key(), part.label), description,
                                                      config.fingerprint())

    mp_api_env.fail("/materials/summary", "omit", times=None, with_param="material_ids")
    with pytest.raises(ScreenError, match=r"^`source` mp: the server's answers lacked 1 of the entries of Fe-Li-O "
                                          r"asked for, twice \(mp-\d+\); nothing of their partition was kept"):
        partition_task(source, query, part, description, cache, config)
    assert remembered() is None
    mp_api_env.faults.clear()
    mp_api_env.fail("/materials/summary", "omit", times=1, with_param="material_ids")
    done = partition_task(source, query, part, description, cache, config)
    assert sorted(row.id for row in done.rows) == sorted(e[0] for e in part.entries)
    assert len(remembered()["rows"]) == 32
    # the entries that did come the first time were kept, each whole, in the entry cache
    assert (done.counts.mp_fetched, done.counts.mp_cached) == (1, 31)


def test_a_directory_with_unreadable_files_is_screened_and_lists_them(client, model_path, tmp_path):
    import cli
    from workflows.run.terminal import print_run

    folder = crystal_folder(tmp_path / "in", {"NaCl": rocksalt(), "KCl": rocksalt(6.29, ("K", "Cl"))})
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a 5\nthis is not a CIF\n")
    (folder / "empty.cif").write_text("")
    opts = PipelineSettings(query="*-Cl", source=f"local:{folder}", model=model_path, device="cpu",
                            cache_dir=str(tmp_path / "c"), out_dir=str(tmp_path / "o"))
    r = run_screening(client, opts)
    assert sorted(r.table.id) == ["KCl", "NaCl"]
    assert r.summary["candidates"] == 4 and r.summary["unusable"] == 2
    assert sorted(p.split(":")[0] for p in r.summary["unusable_first"]) == [str(folder / "broken.cif"),
                                                                            str(folder / "empty.cif")]
    with cli.console.capture() as printed:
        print_run(cli.console, r, opts)
    assert f"not screened: 2 unusable candidates; first: {r.summary['unusable_first'][0]}" in \
        " ".join(printed.get().split())
