import itertools
import pickle
import warnings
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from screening.errors import ScreenError
from screening.featurize import check_structure
from screening.query import parse_query
from screening.sources import Candidate, default_source_note, open_source
from screening.sources.local import LocalSource
from screening.sources.mp import MPSource
from screening.sources.substitution import CANDIDATE_ELEMENTS, SubstitutionSource
from tests.conftest import MP_TEST_KEY
from tests.helpers import DATA, mp_rows, rocksalt


def elements_of(formula):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return frozenset(el.symbol for el in Composition(formula).elements)


@pytest.fixture(scope="module")
def table():
    return pd.read_csv(DATA)


@pytest.fixture(scope="module")
def local_li_x_o(mp_dev_source):
    return mp_dev_source.fetch("Li-*-O")


def assert_same_structure(a, b):
    assert [str(s.specie) for s in a] == [str(s.specie) for s in b]
    np.testing.assert_allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-6)
    np.testing.assert_allclose(a.frac_coords, b.frac_coords, atol=1e-6)


# ---- local: -------------------------------------------------------------------------

def test_local_csv_li_x_o_is_exactly_the_pandas_filter(table, local_li_x_o):
    els = table["formula"].map(elements_of)
    expected = table.loc[els.map(lambda e: len(e) == 3 and {"Li", "O"} <= e), "material_id"].tolist()
    ids = [c.id for c in local_li_x_o]
    assert len(expected) > 400
    assert ids == expected and len(set(ids)) == len(ids)  # file order, each once
    for c in local_li_x_o[:50]:
        comp_els = {el.symbol for el in c.structure.composition.elements}
        assert len(comp_els) == 3 and {"Li", "O"} <= comp_els
        assert c.formula == c.structure.composition.reduced_formula
        assert c.source == f"local:{DATA.resolve()}"
    row = table.set_index("material_id").loc[ids[0]]
    assert local_li_x_o[0].known == pytest.approx({k: row[k] for k in ("formation_energy_per_atom", "band_gap", "efermi")})


def test_local_csv_formula_ids_and_exclude(mp_dev_source, table, local_li_x_o):
    lfp = mp_dev_source.fetch("LiFePO4")
    red = {f: Composition(f).reduced_formula for f in table["formula"].unique()}
    assert [c.id for c in lfp] == table.loc[table["formula"].map(red) == "LiFePO4", "material_id"].tolist()
    assert len(lfp) >= 2 and all(c.formula == "LiFePO4" for c in lfp)
    by_id = mp_dev_source.fetch("mp-22862,mp-1,mp-999999999")  # the unknown id is simply absent
    assert [c.id for c in by_id] == ["mp-22862", "mp-1"]
    assert by_id[0].formula == "NaCl"
    all_li_x_o = {c.id for c in local_li_x_o}
    no_co = {c.id for c in mp_dev_source.fetch(parse_query("Li-*-O", exclude=["Co", "Fe"]))}
    dropped = all_li_x_o - no_co
    assert no_co < all_li_x_o and dropped
    assert all(elements_of(f) & {"Co", "Fe"} for f in table.set_index("material_id").loc[sorted(dropped), "formula"])


def test_local_csv_lazy_carries_cif(local_li_x_o):
    lazy = LocalSource(DATA, lazy=True).fetch("Li-*-O")
    assert [c.id for c in lazy] == [c.id for c in local_li_x_o]
    c = lazy[0]
    assert c._structure is None and c.cif.startswith("# generated using pymatgen")
    c2 = pickle.loads(pickle.dumps(c))
    assert c2._structure is None
    assert_same_structure(c2.structure, local_li_x_o[0].structure)


def _write_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)


def test_local_csv_bad_cif_in_matching_row_names_the_row(tmp_path):
    good = mp_rows(40)
    rows = good.to_dict("records")
    nacl = rows[0] | {"material_id": "mp-bad", "formula": "NaCl", "cif": "data_x\n_cell_length_a 1\nloop_\n"}
    other = rows[0] | {"material_id": "mp-other", "formula": "KBr", "cif": "not a cif"}
    path = tmp_path / "rows.csv"
    _write_csv(path, rows + [nacl, other])
    src = LocalSource(path)
    with pytest.raises(ScreenError, match="mp-bad") as e:
        src.fetch("Na-Cl")
    assert "\n" not in str(e.value) and "could not parse CIF" in str(e.value)
    assert src.fetch("K-Cl") == []  # the bad KBr row is never parsed for other queries
    lazy = LocalSource(path, lazy=True).fetch("Na-Cl")
    assert [c.id for c in lazy] == ["mp-bad"]
    with pytest.raises(ScreenError, match="mp-bad"):
        lazy[0].structure


def test_local_directories_and_single_file(tmp_path):
    nacl, kcl = rocksalt(5.64, ("Na", "Cl")), rocksalt(6.29, ("K", "Cl"))
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    nacl.to(filename=str(cifs / "nacl.cif"))
    kcl.to(filename=str(cifs / "POSCAR"), fmt="poscar")
    src = LocalSource(cifs)
    assert [(c.id, c.formula) for c in src.fetch("*-Cl")] == [("POSCAR", "KCl"), ("nacl", "NaCl")]
    assert [c.id for c in src.fetch("Na-Cl")] == ["nacl"] and src.fetch("Li-*-O") == []

    cgcnn = tmp_path / "cgcnn"
    cgcnn.mkdir()
    (cgcnn / "id_prop.csv").write_text("101,-2.1\n102,-2.2\n")
    nacl.to(filename=str(cgcnn / "101.cif"))
    kcl.to(filename=str(cgcnn / "102.cif"))
    hits = LocalSource(cgcnn).fetch("K-Cl")
    assert [(c.id, c.formula, c.known) for c in hits] == [("102", "KCl", {})]
    assert_same_structure(hits[0].structure, LocalSource(cifs / "POSCAR").fetch("KCl")[0].structure)


def test_local_describe_is_stable_and_tracks_content(tmp_path):
    path = tmp_path / "rows.csv"
    _write_csv(path, mp_rows(5).to_dict("records"))
    a = LocalSource(path).describe()
    assert a == LocalSource(path).describe() and a.startswith(f"local:{path.resolve()} sha256=")
    src = LocalSource(path)
    src.fetch("mp-1")
    copy = pickle.loads(pickle.dumps(src))  # the path travels, not the table
    assert copy._table is None and [c.id for c in copy.fetch("mp-1")] == ["mp-1"]
    _write_csv(path, mp_rows(6).to_dict("records"))
    assert LocalSource(path).describe() != a


# ---- open_source / defaults ------------------------------------------------------------

def test_open_source_specs_and_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    assert isinstance(open_source(f"local:{DATA}"), LocalSource)
    assert isinstance(open_source(None), SubstitutionSource)
    assert isinstance(open_source("substitution"), SubstitutionSource)
    assert open_source(f"substitution:local:{DATA}").base.path == DATA.resolve()
    note = default_source_note(None)
    assert "MP_API_KEY not set" in note and "substitution" in note and "\n" not in note
    assert default_source_note("mp") is None
    for spec, fragment in [("local:/no/such/file.csv", "no such file or directory"),
                           ("local:", "needs a path"),
                           ("mpx", "unknown source"),
                           (str(DATA), f"did you mean local:{DATA}"),
                           ("mp", "MP_API_KEY is not set"),
                           ("substitution:mp", "MP_API_KEY is not set"),
                           ("substitution:substitution", "must come from mp or local:PATH")]:
        with pytest.raises(ScreenError, match=fragment) as e:
            open_source(spec)
        assert "\n" not in str(e.value)
    monkeypatch.setenv("MP_API_KEY", MP_TEST_KEY)
    assert isinstance(open_source(None), MPSource)
    assert "MP_API_KEY is set" in default_source_note("")


def test_candidate_pickles_and_needs_a_structure():
    c = Candidate("local:x", "mp-1", "NaCl", rocksalt(), known={"band_gap": 5.0})
    c2 = pickle.loads(pickle.dumps(c))
    assert (c2.source, c2.id, c2.formula, c2.known) == ("local:x", "mp-1", "NaCl", {"band_gap": 5.0})
    assert_same_structure(c2.structure, c.structure)
    with pytest.raises(ValueError):
        Candidate("x", "y", "NaCl")


# ---- mp, through the real mp-api client and the local test server -------------------------

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
    assert copy._rester is None and [c.id for c in copy.fetch("mp-1")] == ["mp-1"]


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
    assert "GNoME r2SCAN entries included" in with_gnome.entries_note()
    assert "GNoME r2SCAN entries left out (--gnome includes them)" in MPSource().entries_note()
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


def summary_requests(server):
    """(listings, full fetches) among the server's summary requests: a full one asks for structures."""
    sent = [p for path, p in server.requests if path == "/materials/summary"]
    full = [p for p in sent if "structure" in p.get("_fields", "").split(",")]
    return [p for p in sent if p not in full], full


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
    thermo = MPSource(gnome=gnome).fetch_thermo(systems)
    assert sorted(thermo) == systems
    sent = [p for path, p in mp_api_env.requests if path.startswith("/materials/")]
    assert len(sent) == 1 and sent[0]["thermo_types"] == "GGA_GGA+U_R2SCAN"
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


def test_mp_gnome_and_rate_options_are_checked(monkeypatch):
    monkeypatch.setenv("MP_API_KEY", MP_TEST_KEY)
    for spec in (f"local:{DATA}", "substitution", f"substitution:local:{DATA}"):
        with pytest.raises(ScreenError, match="--gnome: only the Materials Project"):
            open_source(spec, gnome=True)
    assert open_source("substitution:mp", gnome=True).base.gnome is True
    assert open_source(None, gnome=True).gnome is True  # the key is set: mp
    for rate in (0, -1, 2.5):
        with pytest.raises(ScreenError, match=f"--mp-rate {rate}: a whole number"):
            open_source("mp", rate=rate)
    assert open_source("mp", rate=3).budget.rate == 3


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


# ---- substitution ----------------------------------------------------------------------

def assert_sensible(cands, query):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    q = parse_query(query)
    assert cands and len({c.id for c in cands}) == len(cands)
    groups = defaultdict(list)
    for c in cands:
        comp = c.structure.composition
        assert q.matches({el.symbol for el in comp.elements}, comp.reduced_formula), c.id
        assert c.formula == comp.reduced_formula and c.source.startswith("substitution") and c.known == {}
        assert c.id.startswith("sub-")
        assert comp.oxi_state_guesses(max_sites=-1), f"{c.id} is not charge-balanced"
        check_structure(c.structure, c.id)
        assert 5 < c.structure.volume / len(c.structure) < 60  # A^3/atom: rescaled, not absurd
        groups[c.formula].append(c)
    return groups, StructureMatcher()


def test_substitution_na_cl_is_charge_balanced_and_unique():
    cands = open_source("substitution").fetch("Na-Cl")
    groups, matcher = assert_sensible(cands, "Na-Cl")
    assert set(groups) == {"NaCl"}
    for a, b in itertools.combinations(cands, 2):
        assert not matcher.fit(a.structure, b.structure), (a.id, b.id)
    rs = next(c.structure for c in cands if c.id == "sub-AB_cF8_225_a_b-NaCl-1")  # rocksalt
    other = [i for i, site in enumerate(rs) if site.specie != rs[0].specie]
    assert min(rs.get_distance(0, i) for i in other) == pytest.approx(2.82, rel=0.05)  # Na-Cl in real NaCl


def test_substitution_li_x_o(monkeypatch):
    src = SubstitutionSource()
    cands = src.fetch("Li-*-O")
    groups, matcher = assert_sensible(cands, "Li-*-O")
    third = {next(iter(elements_of(f) - {"Li", "O"})) for f in groups}
    assert third <= set(CANDIDATE_ELEMENTS) and {"Fe", "Co", "Ti", "Al"} <= third
    assert len(cands) > 500
    for f, group in groups.items():  # every pair with the same formula (~3,600 fits, ~9 s)
        for a, b in itertools.combinations(group, 2):
            assert not matcher.fit(a.structure, b.structure), (a.id, b.id)
    # ids do not depend on the query: the Li-Fe-O ones are a subset, same structures
    fe = {c.id: c for c in src.fetch("Li-Fe-O")}
    sub = {c.id: c for c in cands if elements_of(c.formula) == {"Li", "Fe", "O"}}
    assert fe.keys() == sub.keys() and fe
    for k in fe:
        assert_same_structure(fe[k].structure, sub[k].structure)
    assert [c.id for c in src.fetch(parse_query("Li-*-O", exclude=["Fe"]))] == \
        [c.id for c in cands if "Fe" not in elements_of(c.formula)]


def test_substitution_with_known_templates(mp_dev_source):
    src = SubstitutionSource(base=mp_dev_source)
    cands = src.fetch("Li-Fe-O")
    groups, matcher = assert_sensible(cands, "Li-Fe-O")
    from_known = [c for c in cands if c.id.startswith("sub-mp-")]
    assert from_known and len(cands) > len(SubstitutionSource().fetch("Li-Fe-O"))
    known = defaultdict(list)
    for k in mp_dev_source.fetch("Li-Fe-O"):
        known[k.formula].append(k.structure)
    for c in cands:  # nothing already known comes back as "hypothetical"
        assert not any(matcher.fit(c.structure, k) for k in known[c.formula]), c.id
    assert src.name == f"substitution:local:{DATA.resolve()}"
    assert src.describe().endswith(f"templates=[{mp_dev_source.describe()}]")


def test_substitution_refuses_ids_and_has_stable_describe():
    src = SubstitutionSource()
    with pytest.raises(ScreenError, match="material ids name known crystals"):
        src.fetch("mp-1")
    assert src.describe() == SubstitutionSource().describe()
    assert src.describe() != SubstitutionSource(elements=["Fe", "Co"]).describe()
    assert src.fetch("Li-*-*-*-*-*-O") == []  # no prototype has seven elements


@pytest.mark.parametrize("text, size", [("*-*-O", 97), ("Li-*-O", 5), ("all", 4000), ("mp-1,mp-1001", 1)])
def test_csv_partitions_cover_each_matching_row_exactly_once(text, size):
    """Workers fetch partitions themselves; together they are exactly what one fetch returns."""
    from screening.query import parse_query
    from screening.sources.local import LocalSource

    source, query = LocalSource(DATA, lazy=True), parse_query(text)
    parts = source.partitions(query, size)
    rows = [r for p in parts for r in p.rows]
    assert len(rows) == len(set(rows)) and all(0 < len(p.rows) <= size for p in parts)
    assert len({p.label for p in parts}) == len(parts)
    got = [c.id for p in parts for c in source.fetch_partition(query, p)]
    assert got == [c.id for c in source.fetch(query)]
    assert len(got) == len(set(got))
