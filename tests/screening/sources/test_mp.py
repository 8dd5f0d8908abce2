"""`source` mp, through the real mp-api client and the local test server (tests/mp_server.py)."""
import pickle

import pytest

from screening.errors import ScreenError
from screening.query import parse_query
from screening.sources import open_source
from screening.sources.mp import MPSource
from tests.conftest import MP_TEST_KEY
from tests.screening.sources.common import assert_same_structure, summary_requests


def test_mp_li_x_o_matches_local_with_paging(mp_api_env, local_li_x_o):
    src = MPSource(chunk_size=200)  # key and endpoint from the environment
    got = src.fetch("Li-*-O")
    assert [c.id for c in got] == [c.id for c in local_li_x_o]
    for a, b in zip(got, local_li_x_o):
        assert a.formula == b.formula and a.source == "mp"
        assert {k: a.known[k] for k in b.known} == pytest.approx(b.known)
        assert_same_structure(a.structure, b.structure)
    searches = [p for path, p in mp_api_env.requests if path == "/materials/summary"]
    assert {p["chemsys"] for p in searches} == {"Li-O-*"}  # the wildcard goes to the server as is
    assert [int(p.get("_skip", 0)) for p in searches] == [0, 200, 400]
    assert set(searches[0]["_fields"].split(",")) == \
        {"material_id", "formula_pretty", "structure", "formation_energy_per_atom", "band_gap", "efermi",
         "energy_above_hull", "is_stable", "theoretical", "database_IDs", "deprecated", "builder_meta"}
    assert all(p["deprecated"] == "False" and p["batch_id_not_eq"] == "gnome_r2scan_statics" for p in searches)
    # The client asks /heartbeat once per process (mp-api caches it), so whether this test
    # sees it depends on which test made the first MPRester: every request must be a known one.
    assert {path for path, _ in mp_api_env.requests} <= {"/heartbeat", "/materials/summary"}


def test_mp_formula_ids_and_exclude_match_local(mp_api_env, mp_dev_source):
    src = open_source("mp")
    assert isinstance(src, MPSource)
    for q in ["LiFePO4", "mp-22862,mp-19017,mp-1", "Na-Cl", parse_query("Li-*-O", exclude=["Fe", "Co", "Mn", "Ni"])]:
        got, want = src.fetch(q), mp_dev_source.fetch(q)
        assert [c.id for c in got] == [c.id for c in want] and want, q
        for a, b in zip(got, want):
            assert_same_structure(a.structure, b.structure)
            assert {k: a.known[k] for k in b.known} == pytest.approx(b.known)
    sent = [p for path, p in mp_api_env.requests if path == "/materials/summary"]
    assert sent[0]["formula"] == "LiFePO4"
    assert sent[1]["material_ids"] == "mp-22862,mp-19017,mp-1"
    assert sent[2]["chemsys"] == "Cl-Na"
    assert sent[3]["exclude_elements"] == "Co,Fe,Mn,Ni"
    systems = src.fetch_systems(["Na-Cl", "Cl-K"])
    assert sorted(c.formula for c in systems) == sorted(c.formula for c in mp_dev_source.fetch_systems(["Na-Cl", "K-Cl"]))
    assert src.describe() == f"mp:{mp_api_env.endpoint} db_version=2025_01_01_fake deprecated=excluded gnome=excluded"
    copy = pickle.loads(pickle.dumps(src))  # e.g. sent to a worker: no live HTTP session inside
    assert copy.client._rester is None and [c.id for c in copy.fetch("mp-1")] == ["mp-1"]


def test_mp_errors_are_one_line(mp_api_env, monkeypatch):
    monkeypatch.setenv("MP_API_KEY", "short")
    with pytest.raises(ScreenError, match="cannot reach the Materials Project API") as e:
        open_source("mp").fetch("Na-Cl")
    assert "32 characters" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setenv("MP_API_KEY", MP_TEST_KEY)
    monkeypatch.setenv("MP_API_ENDPOINT", "http://127.0.0.1:9/")  # nothing listens on the discard port
    with pytest.raises(ScreenError, match="http://127.0.0.1:9/") as e:
        open_source("mp").fetch("Na-Cl")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("code", [429, 500, 502, 503])
def test_mp_retries_a_passing_server_fault(mp_api_env, code):
    mp_api_env.fail("/materials/summary", code, times=2)
    got = MPSource(backoff=0.01).fetch("Na-Cl")
    assert {c.formula for c in got} == {"NaCl"}
    searches = [p for p, q in mp_api_env.requests if p == "/materials/summary"]
    assert len(searches) == 3  # two failures, then the answer


@pytest.mark.parametrize("mode, message", [
    (500, "search for Fe-Li-O failed (HTTP 500: server trouble 500)"),
    (401, "HTTP 401: Invalid API key: it does not match any account"),
    ("truncated", "got a damaged answer"),
    ("short", "documents the server counted; nothing was kept"),
])
def test_mp_faults_that_do_not_pass_are_one_line(mp_api_env, mode, message):
    mp_api_env.fail("/materials/summary", mode, times=None)
    with pytest.raises(ScreenError) as e:
        MPSource(backoff=0.01).fetch("Li-Fe-O")
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    if mode == "short":  # half of what was counted
        got, counted = (int(x) for x in str(e.value).split("received ")[1].split(" documents")[0].split(" of the "))
        assert got == counted // 2 and counted > 10


def test_mp_server_that_never_answers_is_a_one_line_error(mp_api_env):
    import time

    mp_api_env.fail("/heartbeat", "hang", times=1)
    t0 = time.perf_counter()
    with pytest.raises(ScreenError, match="did not answer within 1 s"):
        MPSource(timeout=1).fetch("Na-Cl")
    assert time.perf_counter() - t0 < 10


def server_ids(server, query_params, kind=None):
    """Ids of the test server's documents a search matches (all kinds), or those of one kind."""
    rows = server.data.search(query_params)
    return {server.data.ids[r] for r in rows if kind is None or server.data.kind[r] == kind}


def test_mp_deprecated_and_gnome_entries_only_when_asked(mp_api_env):
    deprecated, gnome, plain = (server_ids(mp_api_env, {"chemsys": "Ni-O-*"}, k) for k in ("deprecated", "gnome", "mp"))
    assert len(deprecated) == 4 and len(gnome) == 3 and len(plain) == 120

    assert {c.id for c in MPSource().fetch("Ni-*-O")} == plain
    mp_api_env.ignore_filters = True  # a server that returns them anyway: we still drop them
    default = MPSource().fetch("Ni-*-O")
    assert {c.id for c in default} == plain and not any(c.known["gnome"] for c in default)

    with_gnome = MPSource(gnome=True)
    got = with_gnome.fetch("Ni-*-O")
    assert {c.id for c in got} == plain | gnome
    assert {c.id for c in got if c.known["gnome"]} == gnome
    assert all(c.known["experimental"] is False for c in got if c.id in gnome)  # hypothetical structures
    assert with_gnome.describe().endswith("deprecated=excluded gnome=included")
    sent = [p for path, p in mp_api_env.requests if path == "/materials/summary"]
    assert [(p["deprecated"], p.get("batch_id_not_eq")) for p in sent] == \
        [("False", "gnome_r2scan_statics")] * 2 + [("False", None)]


def test_mp_known_columns_are_the_servers_values(mp_api_env):
    got = MPSource().fetch("Li-Ni-O")
    assert len(got) == 15
    for c in got:
        doc = mp_api_env.data.document(mp_api_env.data.by_id[c.id])
        theoretical, ids = doc["theoretical"], doc["database_IDs"]
        assert c.known["dft_e_above_hull"] == doc["energy_above_hull"]
        assert c.known["dft_is_stable"] is doc["is_stable"]
        assert c.known["experimental"] is (not theoretical or bool(ids.get("icsd")))
        assert c.known["formation_energy_per_atom"] == doc["formation_energy_per_atom"]
    known = {c.id: c.known for c in got}
    status = ("dft_e_above_hull", "dft_is_stable", "experimental", "gnome")
    assert [known["mp-850062"][k] for k in status] == [0.0, True, True, False]  # LiNiO2 on the hull, ICSD
    assert [known["mp-770635"][k] for k in status] == [0.006044, False, False, False]  # LiNiO2, theoretical


def test_mp_partitions_equal_a_full_fetch_and_the_entry_cache_serves_them(mp_api_env, tmp_path):
    """Listing + partitions fetched through the entry cache: the very candidates of one full fetch;
    a second pass fetches nothing, a damaged entry is a miss fetched again, faults stay one line."""
    from cache.cache_dir import CacheDir

    src, query = MPSource(), parse_query("Li-*-O", exclude=["Co"])
    full = src.fetch(query)
    mp_api_env.requests.clear()
    parts = src.partitions(query, 100)
    listings, fetches = summary_requests(mp_api_env)
    assert len(listings) == 1 and fetches == []
    assert {"material_id", "last_updated", "band_gap"} <= set(listings[0]["_fields"].split(","))
    assert listings[0]["exclude_elements"] == "Co" and listings[0]["deprecated"] == "False"
    assert [len(p.entries) for p in parts] == [100] * (len(full) // 100) + [len(full) % 100]

    cache = CacheDir(tmp_path).mp_entries()
    got = [c for p in parts for c in src.fetch_partition(query, p, cache)]
    assert [c.id for c in got] == [c.id for c in full] and len(got) > 400
    for a, b in zip(got, full):
        assert (a.source, a.formula, a.known) == (b.source, b.formula, b.known)
        assert a.structure.as_dict() == b.structure.as_dict()
    _, fetches = summary_requests(mp_api_env)
    assert [len(p["material_ids"].split(",")) for p in fetches] == [len(p.entries) for p in parts]
    assert cache.served == 0 and len(cache.entries()) == len(full)

    mp_api_env.requests.clear()
    warm = CacheDir(tmp_path).mp_entries()
    again = [c for p in parts for c in src.fetch_partition(query, p, warm)]
    assert mp_api_env.requests == [] and warm.served == len(full)
    assert [(c.id, c.structure.as_dict(), c.known) for c in again] == [(c.id, c.structure.as_dict(), c.known) for c in got]

    old_shape = CacheDir(tmp_path).mp_entries()  # `store=`, the earlier name of `entries`
    assert [c.id for c in src.fetch_partition(query, parts[0], store=old_shape)] == [c.id for c in got[:100]]
    assert old_shape.served == 100 and mp_api_env.requests == []

    damaged = warm.entries()[0]
    damaged.write_bytes(damaged.read_bytes()[:40])  # cut off: a miss, fetched again and rewritten
    third = CacheDir(tmp_path).mp_entries()
    assert len([c for p in parts for c in src.fetch_partition(query, p, third)]) == len(full)
    _, fetches = summary_requests(mp_api_env)
    assert third.served == len(full) - 1 and [len(p["material_ids"].split(",")) for p in fetches] == [1]
    assert CacheDir(tmp_path).mp_entries().verify() == []

    mp_api_env.fail("/materials/summary", 500, times=None)
    with pytest.raises(ScreenError, match="search for 100 entries of ") as e:
        MPSource(backoff=0.01).fetch_partition(query, parts[0])
    assert "HTTP 500: server trouble 500" in str(e.value) and "\n" not in str(e.value)


def test_experimental_means_not_theoretical_or_icsd_ids():
    from screening.sources.mp import is_experimental

    assert is_experimental(False, {}) is True
    assert is_experimental(True, {"icsd": ["icsd-1"]}) is True
    assert is_experimental(None, {"icsd": ["icsd-1"]}) is True
    assert is_experimental(True, {"pf": ["pf-1"]}) is False
    assert is_experimental(True, None) is False
    assert is_experimental(None, {}) is None  # MP says nothing: unknown, not "new"


@pytest.mark.parametrize("gnome", [False, True])
def test_mp_thermo_references_in_one_request(mp_api_env, gnome):
    from screening.references import load_references, subsystems

    systems = subsystems([frozenset({"Li", "Ni", "O"}), frozenset({"Li", "Mo", "O"})])
    source = MPSource(gnome=gnome)
    thermo = source.thermo().fetch(systems)  # the declared capability: MP's fetch_thermo
    assert sorted(thermo) == systems
    sent = [p for path, p in mp_api_env.requests if path.startswith("/materials/")]
    assert len(sent) == 1 and sent[0]["thermo_types"] == "GGA_GGA+U_R2SCAN"
    assert source.fetch_thermo(systems) == thermo
    assert source.thermo().describe() == source.thermo_description() == f"{source.describe()} thermo=GGA_GGA+U_R2SCAN"
    data = mp_api_env.data
    for system in systems:
        kinds = {"mp", "gnome"} if gnome else {"mp"}
        rows = [r for r in data.by_chemsys.get(system, []) if data.kind[r] in kinds]
        assert thermo[system] == [(data.ids[r], data.formula_pretty[r], data.formation_energy(r)) for r in rows]
    assert any(data.kind[data.by_id[i]] == "gnome" for rows in thermo.values() for i, _, _ in rows) is gnome
    phases, note = load_references("mp", [frozenset({"Li", "Ni", "O"})])  # its own source: no GNoME
    assert len(phases) == sum(data.kind[r] == "mp" for s in subsystems([frozenset({"Li", "Ni", "O"})])
                              for r in data.by_chemsys.get(s, []))
    assert "Materials Project thermo data (db_version 2025_01_01_fake)" in note and "GGA_GGA+U_R2SCAN" in note
    assert "mp-3027087|Li9(NiO4)2" not in phases.ids  # the deprecated twin


def test_a_request_budget_bounds_every_second_across_threads():
    import threading
    import time

    from screening.sources.budget import RequestBudget

    starts = []

    def requests(budget):
        for _ in range(8):
            with budget.lease():
                starts.append(time.monotonic())
                time.sleep(0.01)

    threads = [threading.Thread(target=requests, args=(RequestBudget(20, "test-budget"),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    busiest = max(sum(1 for u in starts if t <= u < t + 1.0) for t in starts)
    assert busiest == 20 and starts[-1] - starts[0] > 1.0  # copies share the pool: 12 of 32 wait a second
