"""End-to-end screening runs on real Dask clusters: an in-process one (tests/conftest.py) for what a run
computes, worker processes (dashboard on) where what happens per process is tested."""
import json
import urllib.request

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from screening import kernels
from screening.rank import RankSettings
from tests.helpers import DATA, tiny_ensemble
from workflows import allocator
from workflows.run import worker_model
from workflows.cluster.connection import ClusterSettings, connect
from workflows.run.options import PipelineSettings
from workflows.run.pipeline import run_screening

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def process_client():
    """Two worker processes, dashboard on: the model is loaded once per process, allocator per process."""
    with connect(ClusterSettings(workers=2, threads_per_worker=1, dashboard="127.0.0.1:0")) as c:
        yield c


def li_x_o_ids():
    """Every ternary Li-X-O crystal in the file, by a plain pandas filter."""
    df = pd.read_csv(DATA, usecols=["material_id", "formula"])
    els = {f: frozenset(e.symbol for e in Composition(f).elements) for f in df.formula.unique()}
    mask = df.formula.map(lambda f: len(els[f]) == 3 and {"Li", "O"} <= els[f])
    return set(df.material_id[mask])


def test_local_li_x_o_run_then_cached_rerun(process_client, model_path, tmp_path):
    client = process_client
    opts = PipelineSettings(query="Li-*-O", source=f"local:{DATA}", model=model_path, device="cpu",
                            cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "out"), partition_size=150)
    dashboard_status = []

    def probe_dashboard():
        url = client.dashboard_link.replace("/status", "") + "/health"
        with urllib.request.urlopen(url, timeout=10) as r:
            dashboard_status.append((r.status, r.read().decode()))

    first = run_screening(client, opts, on_started=probe_dashboard)
    assert dashboard_status == [(200, "ok")]

    expected = li_x_o_ids()
    assert len(expected) > 100
    table = first.table
    assert set(table.id) == expected and table.id.is_unique
    assert first.summary["featurized"] == first.summary["inferred"] == len(expected)
    # ranked: E_hull ascending, ranks 1..n, provenance on every row
    assert np.all(np.diff(table.pred_e_above_hull.to_numpy()) >= -1e-12)
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert table.source.str.startswith("local:").all() and table.model_hash.notna().all()
    assert table.structure_key.is_unique and table.featurizer.str.startswith("v1-").all()
    saved = pd.read_csv(first.files["results"])
    assert len(saved) == len(table) and set(saved.id) == expected
    assert json.loads(open(first.files["summary"]).read())["candidates"] == len(expected)
    assert open(first.files["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # the model was loaded at most once per worker process
    loads = client.run(worker_model.load_count)
    assert all(n <= 1 for n in loads.values())
    # and each worker that loaded it reuses freed memory for its batches (workflows/allocator.py)
    tuned = client.run(allocator.active)
    assert sum(loads.values()) >= 1 and all(tuned[w] for w, n in loads.items() if n)
    # and the summary says which path the workers' inference took: the C kernel where this machine
    # builds it, else torch's ops and why (the workers inherit this process's SCREEN_KERNEL and PATH)
    assert first.summary["provenance"]["kernel"] == kernels.inference_path("cpu")

    second = run_screening(client, opts)
    assert second.summary["featurized"] == 0 and second.summary["inferred"] == 0
    assert second.summary["provenance"]["kernel"] == "none: every prediction came from the cache"
    assert second.summary["structure_cache_hit"] is True
    # a warm run reads each partition's keyed rows: no CIF parsed, no structure re-keyed
    assert first.summary["parsed"] == len(expected) and second.summary["parsed"] == 0
    assert first.summary["partitions"] == second.summary["partitions"] == -(-len(expected) // 150)
    pd.testing.assert_frame_equal(second.table, first.table)
    # the profile in the summary: the stages within the run's wall time; the workers' featurizing and
    # inference in the cold run, reading caches in the warm one
    for run in (first, second):
        stages = run.summary["stage_seconds"]
        assert list(stages) == ["fetch_featurize_infer", "table", "hulls", "rank"]
        assert min(stages.values()) >= 0 and sum(stages.values()) <= run.summary["wall_seconds"] + 0.05
    cold, warm = first.summary["worker_seconds"], second.summary["worker_seconds"]
    assert cold["partitions"] > warm["partitions"] >= 0 and cold["inference"] > warm["inference"] >= 0


def test_filters_and_top(inprocess_client, tmp_path):
    """--nonmetal keeps exactly the non-metals of the unfiltered table, --top 5 the first five of those.
    The bundled ensemble: its P(metal) finds both classes among Li-X-O (the tiny test model calls all
    of them non-metals)."""
    from dataclasses import replace

    from screening.checkpoint import default_model_path

    opts = PipelineSettings(query="Li-*-O", source=f"local:{DATA}", model=str(default_model_path()), device="cpu",
                            cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "o1"))
    every = run_screening(inprocess_client, opts).table
    nonmetal = run_screening(inprocess_client, replace(opts, out_dir=str(tmp_path / "o2"),
                                                       rank=RankSettings(nonmetal=True))).table
    top = run_screening(inprocess_client, replace(opts, out_dir=str(tmp_path / "o3"),
                                                  rank=RankSettings(nonmetal=True, top=5))).table
    metal = every.pred_p_metal >= 0.5
    assert metal.sum() > 5 and (~metal).sum() > 5
    assert (every.pred_class == np.where(metal, "metal", "non-metal")).all()
    assert nonmetal.id.tolist() == every.id[~metal].tolist()  # in the same order: E_hull ascending
    assert (nonmetal.pred_class == "non-metal").all() and (nonmetal.pred_p_metal < 0.5).all()
    assert top.id.tolist() == nonmetal.id.head(5).tolist() and top["rank"].tolist() == [1, 2, 3, 4, 5]
    for column in ("pred_e_above_hull", "pred_band_gap", "pred_p_metal"):
        np.testing.assert_array_equal(top[column], nonmetal[column].head(5))


def test_mp_source_through_real_client_matches_local_source(inprocess_client, mp_api_env, model_path, tmp_path):
    """The real mp-api client, pointed at the local MP test server, on the cluster's workers."""
    common = dict(query="Li-*-O", model=model_path, device="cpu", partition_size=200)
    via_mp = run_screening(inprocess_client, PipelineSettings(source="mp", cache_dir=str(tmp_path / "c1"),
                                                              out_dir=str(tmp_path / "o1"), **common)).table
    via_local = run_screening(inprocess_client, PipelineSettings(source=f"local:{DATA}", cache_dir=str(tmp_path / "c2"),
                                                                 out_dir=str(tmp_path / "o2"), **common)).table
    assert any(path.startswith("/materials/summary") for path, _ in mp_api_env.requests)
    assert (via_mp.source == "mp").all()
    assert set(via_mp.id) == set(via_local.id) == li_x_o_ids()
    mp_rows = via_mp.set_index("id").sort_index()
    local_rows = via_local.set_index("id").sort_index()
    assert (mp_rows.structure_key == local_rows.structure_key).all()  # same crystals, same graphs
    np.testing.assert_allclose(mp_rows.pred_band_gap, local_rows.pred_band_gap, rtol=1e-6)
    np.testing.assert_allclose(mp_rows.dft_formation_energy_per_atom, local_rows.dft_formation_energy_per_atom)


def test_mp_key_and_endpoint_travel_with_the_task_not_the_worker_env(mp_api_env, model_path, tmp_path, monkeypatch):
    """Workers started without MP_API_KEY / MP_API_ENDPOINT (another machine's shell) still fetch: worker
    processes of their own, whose environment is not this process's."""
    env = {k: v for k, v in __import__("os").environ.items() if k in ("MP_API_KEY", "MP_API_ENDPOINT")}
    for k in env:
        monkeypatch.delenv(k)
    with connect(ClusterSettings(workers=1, threads_per_worker=1, dashboard="127.0.0.1:0")) as c:
        assert not any(c.run(lambda: "MP_API_KEY" in __import__("os").environ).values())
        for k, v in env.items():
            monkeypatch.setenv(k, v)  # the user's shell, on the client only
        t = run_screening(c, PipelineSettings(query="Li-Fe-O", source="mp", model=model_path, device="cpu",
                                              cache_dir=str(tmp_path / "c"), out_dir=str(tmp_path / "o"))).table
    assert len(t) > 5 and (t.source == "mp").all()
    assert any(path.startswith("/materials/summary") for path, _ in mp_api_env.requests)


def test_mp_run_states_its_entries_shows_mp_columns_and_uses_mp_thermo(inprocess_client, mp_api_env, model_path, tmp_path):
    """Li-Ni-O on the test server: 15 current entries, a deprecated twin, a GNoME twin."""
    from dataclasses import replace

    data = mp_api_env.data
    docs = {data.ids[r]: data.document(r) for r in data.by_chemsys["Li-Ni-O"]}
    kind = {data.ids[r]: data.kind[r] for r in data.by_chemsys["Li-Ni-O"]}
    current = {i for i, k in kind.items() if k == "mp"}
    opts = PipelineSettings(query="Li-Ni-O", source="mp", model=model_path, device="cpu",
                            cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "o1"))
    first = run_screening(inprocess_client, opts)
    t = first.table.set_index("id")
    assert set(t.index) == current and len(current) == 15
    for i, row in t.iterrows():  # MP's own values, not recomputed
        assert row.dft_e_above_hull == docs[i]["energy_above_hull"] and row.dft_is_stable == docs[i]["is_stable"]
        assert row.experimental == (not docs[i]["theoretical"] or "icsd" in docs[i]["database_IDs"])
    assert not t.gnome.any()
    s = json.loads(open(first.files["summary"]).read())
    assert s["source_settings"] == {"endpoint": mp_api_env.endpoint, "db_version": "2025_01_01_fake",
                                    "deprecated": "excluded", "gnome": "excluded",
                                    "request_budget": "at most 10 requests per second per key (shared by the cluster)"}
    assert s["source_note"] == ("source: Materials Project entries: deprecated ones left out; GNoME r2SCAN entries "
                                "left out (--gnome includes them), db_version 2025_01_01_fake")
    assert s["reference_note"].startswith("reference phases: Materials Project thermo data (db_version 2025_01_01_fake)")
    assert "thermo type GGA_GGA+U_R2SCAN" in s["reference_note"] and s["reference_note"].endswith("fetched now")
    thermo = [p for path, p in mp_api_env.requests if path == "/materials/thermo"]
    assert len(thermo) == 1 and thermo[0]["chemsys"] == "Li,Li-Ni,Li-Ni-O,Li-O,Ni,Ni-O,O"
    systems = thermo[0]["chemsys"].split(",")
    assert s["reference_phases"] == sum(data.kind[r] == "mp" for x in systems for r in data.by_chemsys.get(x, []))

    # --new-only: LiNiO2 on the hull with an ICSD id goes, the theoretical LiNiO2 above it stays;
    # the reference phases come from the cache, the candidates from the structure cache
    mp_api_env.requests.clear()
    new = run_screening(inprocess_client, replace(opts, out_dir=str(tmp_path / "o2"), rank=RankSettings(new_only=True)))
    expected = {i for i in current if not docs[i]["is_stable"] and docs[i]["theoretical"]
                and "icsd" not in docs[i]["database_IDs"]}
    assert set(new.table.id) == expected and "mp-770635" in expected and "mp-850062" not in expected
    assert len(expected) == 6 and new.summary["new_only"] is True
    assert new.summary["reference_note"].endswith("from the cache")
    assert not [path for path, _ in mp_api_env.requests if path.startswith("/materials/")]
    lines = printed_run(new, opts)  # the terminal: MP's E_hull right beside the predicted one
    header = next(line for line in lines if "P(stable)" in line)
    assert [h.strip() for h in header.strip("┃│ ").split("┃")][3:7] == ["P(stable)", "E_hull", "DFT E_hull", "known"]
    assert "0.006" in next(line for line in lines if "mp-770635" in line)  # MP: 0.006 eV/atom above its hull
    assert any(line.startswith("source: Materials Project entries: deprecated ones left out") and
               "db_version 2025_01_01_fake" in line for line in lines)

    # --gnome: the GNoME entry joins, is marked, and the run says so; its own reference cache entry
    g = run_screening(inprocess_client, replace(opts, gnome=True, out_dir=str(tmp_path / "o3")))
    assert set(g.table.id) == current | {i for i, k in kind.items() if k == "gnome"}
    assert g.table.set_index("id").gnome.to_dict()["mp-3121027"] is True and int(g.table.gnome.sum()) == 1
    assert g.summary["source_settings"]["gnome"] == "included"
    assert "GNoME r2SCAN entries included" in g.summary["source_note"]
    assert g.summary["source_note"].endswith("1 GNoME entries among the candidates")
    assert "GNoME entries included; fetched now" in g.summary["reference_note"]
    assert g.summary["reference_phases"] == s["reference_phases"] + 1
    assert open(g.files["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_mp_rerun_fetches_only_new_and_changed_entries(inprocess_client, fresh_mp_server, model_path, tmp_path):
    """Fe-Li-O (32 entries, partitions of 10): a new release that changed nothing fetches no structure;
    one with 10 new entries and one changed fetches those 11; each table is a cold run's, and the
    candidates are those of one full (non-incremental) fetch."""
    from dataclasses import replace

    from cache.keys import structure_key
    from screening.ensemble import load_model
    from screening.sources.mp import MPSource
    from tests.conftest import new_release
    from tests.screening.sources.common import summary_requests

    srv = fresh_mp_server
    opts = PipelineSettings(query="Li-Fe-O", source="mp", model=model_path, device="cpu", partition_size=10,
                            cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "o1"))

    def fetched_in_full():
        return [i for p in summary_requests(srv)[1] for i in p["material_ids"].split(",")]

    def run(out, **changes):
        srv.requests.clear()
        return run_screening(inprocess_client, replace(opts, out_dir=str(tmp_path / out), **changes))

    first = run("o1")
    assert len(first.table) == 32 and first.summary["partitions"] == 4
    assert (first.summary["mp_fetched"], first.summary["mp_cached"]) == (32, 0)
    assert sorted(fetched_in_full()) == sorted(first.table.id)

    new_release(srv, "2025_02_01_fake")  # nothing changed but the release
    second = run("o2")
    assert "db_version=2025_02_01_fake" in second.summary["source"]
    assert len(summary_requests(srv)[0]) == 1 and fetched_in_full() == []  # the listing only
    assert (second.summary["mp_fetched"], second.summary["mp_cached"]) == (0, 32)
    assert second.summary["featurized"] == 0 and second.summary["inferred"] == 0
    assert second.summary["provenance"]["kernel"] == "none: every prediction came from the cache"
    pd.testing.assert_frame_equal(second.table, first.table)

    new = srv.data.add_entries("Fe-Li-O", 10)
    changed = sorted(first.table.id)[0]
    srv.data.touch(changed, scale=1.02, band_gap=1.234)
    new_release(srv, "2025_03_01_fake")
    third = run("o3")
    assert len(summary_requests(srv)[0]) == 1 and sorted(fetched_in_full()) == sorted(new + [changed])
    assert (third.summary["mp_fetched"], third.summary["mp_cached"]) == (11, 31)
    cold = run("o4", cache_dir=str(tmp_path / "cold"))
    assert (cold.summary["mp_fetched"], cold.summary["mp_cached"]) == (42, 0)
    pd.testing.assert_frame_equal(third.table, cold.table)
    row = third.table.set_index("id").loc[changed]
    assert row.dft_band_gap == 1.234
    assert row.structure_key != first.table.set_index("id").structure_key[changed]  # its new structure

    # the same crystals and values as one full fetch, so the same graphs and predictions
    featurizer = load_model(model_path).featurizer
    full = {c.id: c for c in MPSource().fetch("Li-Fe-O")}
    t = third.table.set_index("id")
    assert set(t.index) == set(full) and len(full) == 42
    assert all(t.structure_key[i] == structure_key(c.structure, featurizer) for i, c in full.items())
    assert all(t.dft_band_gap[i] == c.known["band_gap"] for i, c in full.items())
    lines = printed_run(third, opts)
    assert "Materials Project entries: 11 fetched in full, 31 from the entry cache" in lines


def printed_run(result, opts):
    import cli
    from workflows.run.terminal import print_run

    with cli.console.capture() as out:
        print_run(cli.console, result, opts)
    return out.get().splitlines()


def test_substitution_run_is_charge_balanced_unique_and_in_system(inprocess_client, model_path, tmp_path):
    opts = PipelineSettings(query="Na-*-Cl", source="substitution", model=model_path, device="cpu",
                            cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "out"), relax="none")
    t = run_screening(inprocess_client, opts).table
    assert len(t) > 10 and t.id.is_unique and t.structure_key.is_unique
    for formula in t.formula.unique():
        comp = Composition(formula)
        els = {e.symbol for e in comp.elements}
        assert len(els) == 3 and {"Na", "Cl"} <= els
        assert comp.oxi_state_guesses(), f"{formula} is not charge balanced"


@pytest.fixture(scope="module")
def ensemble_path(tmp_path_factory):
    """Two members of the default recipe (with the metal head), one split, different seeds."""
    return tiny_ensemble(tmp_path_factory.mktemp("ensemble"))


def test_ensemble_run_carries_the_std_everywhere(inprocess_client, ensemble_path, tmp_path):
    opts = PipelineSettings(query="Li-*-O", source=f"local:{DATA}", model=ensemble_path, device="cpu",
                            cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "out"))
    first = run_screening(inprocess_client, opts)
    t = first.table
    for col in ("pred_formation_energy_per_atom", "pred_band_gap", "pred_efermi", "pred_p_metal"):
        assert (t[f"{col}_std"] > 0).all(), col
    np.testing.assert_array_equal(t.pred_e_above_hull_std, t.pred_formation_energy_per_atom_std)
    assert (t.pred_class == np.where(t.pred_p_metal >= 0.5, "metal", "non-metal")).all()
    assert first.summary["model_members"] == 2 and "std over the 2 members" in first.summary["uncertainty_note"]
    saved = pd.read_csv(first.files["results"])
    assert {"pred_e_above_hull_std", "pred_band_gap_std", "pred_p_metal"} <= set(saved.columns)
    # the std comes back from the prediction cache unchanged
    second = run_screening(inprocess_client, opts)
    assert second.summary["inferred"] == 0
    pd.testing.assert_frame_equal(second.table, t)


def test_candidates_outside_the_training_domain_are_flagged_and_can_be_dropped(inprocess_client, model_path, tmp_path):
    import shutil

    from screening.domain import Domain

    shutil.copy(model_path, tmp_path / "model.pt")
    # a model that has seen every element often, except cobalt
    counts = {el: 1000 for el in ("Li", "O", "Co", "Fe", "Mn", "Ni", "B", "Al", "Si", "P")}
    counts["Co"] = 0
    (tmp_path / "domain.json").write_text(Domain(5000, counts).to_json())
    common = dict(query="Li-*-O", source=f"local:{DATA}", model=str(tmp_path / "model.pt"), device="cpu",
                  cache_dir=str(tmp_path / "cache"))
    first = run_screening(inprocess_client, PipelineSettings(out_dir=str(tmp_path / "o1"), **common))
    t = first.table
    has_co = t.formula.map(lambda f: "Co" in {e.symbol for e in Composition(f).elements})
    assert has_co.any() and t["flags"][has_co].str.contains("Co in 0 training crystals").all()
    # elements outside the toy count list are flagged too; Li-Fe-O and Li-Mn-O are not
    plain = t.formula.map(lambda f: {e.symbol for e in Composition(f).elements} <= set(counts) - {"Co"})
    # the domain's flags: thin_references (Li-Fe and Li-Mn hold no compound among the reference phases) is
    # about the hull, not the model, and --drop-flagged keeps those candidates
    domain_flags = t["flags"].str.replace("thin_references", "").str.strip("; ")
    assert plain.any() and (domain_flags[plain] == "").all()
    assert first.summary["flagged"] == int((domain_flags != "").sum())
    kept = run_screening(inprocess_client, PipelineSettings(out_dir=str(tmp_path / "o2"), drop_flagged=True, **common)).table
    assert set(kept.id) == set(t.id[domain_flags == ""])


def test_a_flipped_byte_in_the_graph_store_is_remade_not_served(inprocess_client, model_path, tmp_path):
    opts = PipelineSettings(query="Li-Fe-O", source=f"local:{DATA}", model=model_path, device="cpu",
                            cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "out"))
    first = run_screening(inprocess_client, opts).table
    shard = sorted((tmp_path / "cache" / "graphs").rglob("units/*.zarr/distances/c/0"))[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    shard.write_bytes(bytes(raw))
    shutil_rmtree(tmp_path / "cache" / "predictions")  # so the damaged graphs would be read for inference
    second = run_screening(inprocess_client, opts)
    assert second.summary["featurized"] > 0
    pd.testing.assert_frame_equal(second.table, first)


def shutil_rmtree(path):
    import shutil

    shutil.rmtree(path)
