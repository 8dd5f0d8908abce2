import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cache.graph_store import GraphStore
from cache.keys import structure_key
from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings, featurize
from tests.helpers import mp_structures
from tests.store_workers import synthetic_graph, write_range

ROOT = Path(__file__).resolve().parents[2]
CFG = FeaturizerSettings()


def keys_of(r):
    return [f"key{i:06d}" for i in r]


def test_round_trip_is_bit_identical(tmp_path):
    structures, targets = mp_structures(120)
    targets[5, 2] = np.nan  # a missing target survives as NaN
    graphs = [featurize(s) for s in structures]
    keys = [structure_key(s, CFG) for s in structures]
    store = GraphStore.open(tmp_path, CFG)
    tasks = ["a", "b", "c"]
    store.write(keys[:70], [f"mp{i}" for i in range(70)], graphs[:70], targets[:70], task_names=tasks)
    store.write(keys[50:], [f"mp{i}" for i in range(50, 120)], graphs[50:], targets[50:], task_names=tasks)
    reopened = GraphStore.open(tmp_path, CFG)
    assert len(reopened) == len(set(keys)) == 120
    assert reopened.info()["duplicate_copies"] == 0  # the second write skipped the 20 published keys
    for i, (k, g) in enumerate(zip(keys, graphs)):
        got = reopened.get_record(k)
        assert got.id == f"mp{i}"
        for f in ("atomic_numbers", "src", "dst", "distances"):
            a, b = getattr(got.graph, f), getattr(g, f)
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        assert got.targets.tobytes() == targets[i].tobytes()  # NaN included, bit for bit
    assert reopened.get("mp7").equals(graphs[7])  # by id
    streamed = list(reopened.iter_records())
    assert sorted(r.key for r in streamed) == sorted(keys)
    assert all(r.graph.equals(graphs[keys.index(r.key)]) for r in streamed)
    with pytest.raises(ScreenError, match="no crystal with key or id nope"):
        reopened.get("nope")


def test_other_featurizer_is_a_separate_store_and_a_miss(tmp_path):
    a = GraphStore.open(tmp_path, CFG)
    a.write(["k1"], ["x"], [synthetic_graph(1)])
    b = GraphStore.open(tmp_path, FeaturizerSettings(cutoff=6.0))
    assert b.root != a.root and len(b) == 0 and not b.contains("k1")
    assert GraphStore.at(a.root).featurizer == CFG and len(GraphStore.at(a.root)) == 1
    with pytest.raises(ScreenError, match="built with featurizer"):
        GraphStore.at(a.root, FeaturizerSettings(cutoff=6.0))


def test_overlapping_units_serve_each_crystal_once(tmp_path):
    # What two writers that did not see each other's work leave: the same crystals in two units.
    store = GraphStore.open(tmp_path, CFG)
    u1 = store.write(keys_of(range(0, 60)), [f"id{i}" for i in range(60)], [synthetic_graph(i) for i in range(60)])
    u2 = store.write(keys_of(range(40, 100)), [f"id{i}" for i in range(40, 100)],
                     [synthetic_graph(i) for i in range(40, 100)], skip_published=False)
    store = GraphStore.open(tmp_path, CFG)
    served = [r.key for r in store.iter_records()]
    assert sorted(served) == keys_of(range(100))
    info = store.info()
    assert info["crystals"] == 100 and info["units"] == 2 and info["duplicate_copies"] == 20
    first = min(u1, u2)
    assert all(store.index()[k][0] == first for k in keys_of(range(40, 60)))
    assert len(list(store.entries())) == 100
    # The very same unit written twice is published once; the loser removes its copy.
    again = store.write(keys_of(range(0, 60)), [f"id{i}" for i in range(60)],
                        [synthetic_graph(i) for i in range(60)], skip_published=False)
    assert again == u1 and GraphStore.open(tmp_path, CFG).info()["units"] == 2
    assert store.stale() == [] and store.verify() == []


def test_four_concurrent_writers_store_every_crystal_exactly_once(tmp_path):
    # Overlapping ranges with different unit boundaries, all released at once by a barrier.
    jobs = [(0, 300, 40), (100, 400, 30), (200, 500, 50), (0, 500, 40)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(jobs))
    procs = [ctx.Process(target=write_range, args=(str(tmp_path), a, b, u, barrier)) for a, b, u in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = GraphStore.open(tmp_path, CFG)
    served = [r.key for r in store.iter_records()]
    assert len(served) == len(set(served)) == 500
    assert set(served) == set(keys_of(range(500)))
    assert all(store.get(f"key{i:06d}").equals(synthetic_graph(i)) for i in range(0, 500, 7))
    info = store.info()
    assert info["crystals"] == 500 and info["stale_items"] == 0 and store.verify() == []
    copies = sum(len(m["keys"]) for m in store.manifests().values())
    assert info["duplicate_copies"] == copies - 500


@pytest.mark.parametrize("point", ["arrays", "publish"])
def test_writer_killed_mid_unit_leaves_a_valid_store_and_rerun_completes(tmp_path, point):
    # "arrays": killed with half the arrays of its unit written; "publish": unit complete, not published.
    write_range(str(tmp_path), 0, 100, 50)
    flag = tmp_path / "paused.flag"
    env = dict(os.environ, STORE_PAUSE_AT=point, STORE_PAUSE_FLAG=str(flag), PYTHONPATH=str(ROOT))
    writer = subprocess.Popen([sys.executable, "-m", "tests.store_workers", str(tmp_path), "100", "150", "50"],
                              cwd=ROOT, env=env)
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline and writer.poll() is None:
        time.sleep(0.05)
    assert flag.read_text() == point, "writer never reached the pause"
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(10) == -signal.SIGKILL
    store = GraphStore.open(tmp_path, CFG)
    assert store.verify() == []
    assert len(store) == 100 and not store.contains("key000120")
    leftovers = store.stale()
    assert len(leftovers) == 1 and leftovers[0].parent.name == ("tmp" if point == "arrays" else "units")
    assert store.stale(min_age_s=3600) == []  # a young leftover might be a live writer: kept
    write_range(str(tmp_path), 100, 150, 50)  # the re-run
    store = GraphStore.open(tmp_path, CFG)
    assert len(store) == 150 and store.verify() == []
    assert all(store.get(f"key{i:06d}").equals(synthetic_graph(i)) for i in range(100, 150))
    assert store.clean_stale() == 1 and store.stale() == [] and len(store) == 150


def test_flipped_byte_in_a_chunk_is_caught_by_verify(tmp_path):
    write_range(str(tmp_path), 0, 60, 60)
    store = GraphStore.open(tmp_path, CFG)
    shard = next((store.root / "units").glob("*.zarr/distances/c/0"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    problems = GraphStore.open(tmp_path, CFG).verify()
    assert len(problems) == 1 and "checksum mismatch in distances/c/0" in problems[0]


def test_damaged_manifest_is_not_served_and_is_reported(tmp_path):
    write_range(str(tmp_path), 0, 40, 20)
    store = GraphStore.open(tmp_path, CFG)
    manifest = sorted((store.root / "manifest").glob("*.json"))[0]
    m = json.loads(manifest.read_text())
    m["ids"][0] = "forged"  # valid JSON, but no longer what the writer published
    manifest.write_text(json.dumps(m))
    store = GraphStore.open(tmp_path, CFG)
    assert len(store) == 20  # its crystals count as missing and will be re-made
    problems = store.verify()
    assert len(problems) == 1 and "unreadable (its own checksum does not match)" in problems[0]
    assert store.stale() == []  # the damaged unit's data is kept as evidence


def test_a_remembered_manifest_is_read_again_once_it_changes(tmp_path, monkeypatch):
    """A process remembers the manifests it checked (a warm run opens a store per partition), and
    reads one again when the file changes: a forged manifest is still refused, not served from memory."""
    import cache.graph_units as graph_units

    write_range(str(tmp_path), 0, 40, 20)
    monkeypatch.setattr(graph_units, "MANIFEST_SETTLED", -1.0)  # remember even a manifest written just now
    assert len(GraphStore.open(tmp_path, CFG)) == 40
    checks = []
    monkeypatch.setattr(graph_units, "_digest", lambda obj, real=graph_units._digest: checks.append(1) or real(obj))
    assert len(GraphStore.open(tmp_path, CFG)) == 40 and checks == []  # from memory: no manifest parsed again
    manifest = sorted((tmp_path / f"featurizer-{CFG.fingerprint()}" / "manifest").glob("*.json"))[0]
    m = json.loads(manifest.read_text())
    m["ids"][0] = "forged"
    manifest.write_text(json.dumps(m))
    os.utime(manifest, ns=(time.time_ns(), time.time_ns() + 10**9))  # a later mtime, whatever the clock's tick
    store = GraphStore.open(tmp_path, CFG)
    assert len(store) == 20 and len(checks) == 1
    assert "unreadable (its own checksum does not match)" in store.verify()[0]


def test_readers_refuse_a_flipped_byte_with_one_line(tmp_path):
    write_range(str(tmp_path), 0, 60, 60)
    store = GraphStore.open(tmp_path, CFG)
    key = keys_of(range(1))[0]
    shard = next((store.root / "units").glob("*.zarr/distances/c/0"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    for read in (lambda s: s.get(key), lambda s: list(s.iter_records()), lambda s: s.graph_set([key])):
        with pytest.raises(ScreenError, match="is damaged .distances/c/0 does not match its manifest"):
            read(GraphStore.open(tmp_path, CFG))


def test_a_truncated_manifest_does_not_block_its_unit_for_good(tmp_path):
    write_range(str(tmp_path), 0, 20, 20)
    store = GraphStore.open(tmp_path, CFG)
    manifest = next((store.root / "manifest").glob("*.json"))
    manifest.write_bytes(manifest.read_bytes()[:100])
    store = GraphStore.open(tmp_path, CFG)
    assert len(store) == 0  # not served
    write_range(str(tmp_path), 0, 20, 20)  # the same crystals again: the same unit name
    store = GraphStore.open(tmp_path, CFG)
    assert len(store) == 20 and store.verify() == []
    assert store.get(keys_of(range(1))[0]).n_atoms > 0


MEMORY_SCRIPT = """
import sys, psutil
from cache.graph_store import GraphStore
from screening.featurize import FeaturizerSettings
store = GraphStore.open(sys.argv[1], FeaturizerSettings())
proc = psutil.Process()
base = peak = None
n = 0
for record in store.iter_records():
    n += 1
    rss = proc.memory_info().rss
    if base is None and n >= 2000:  # after two units: libraries loaded, buffers sized, index built
        base = peak = rss
    elif base is not None:
        peak = max(peak, rss)
print(n, (peak - base) / 1e6)
"""


def test_reader_memory_stays_flat_over_20000_graphs(tmp_path):
    write_range(str(tmp_path), 0, 20_000, 1000)  # 20 units, ~200k atoms, ~2.4 M edges (~30 MB decoded)
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True).stdout.split()
    n, growth_mb = int(out[0]), float(out[1])
    assert n == 20_000
    # 18 more units (~1.5 MB of arrays each) stream past after the baseline; a reader that kept
    # them (or the graphs made from them) would grow by 25+ MB. Streaming holds at most two units.
    assert growth_mb < 10, f"reader grew by {growth_mb:.1f} MB after two units"


def test_a_damaged_unit_error_crosses_process_boundaries_intact():
    import pickle

    from cache.graph_store import DamagedUnit

    e = pickle.loads(pickle.dumps(DamagedUnit("store: unit abc is damaged", "abc")))
    assert isinstance(e, ScreenError) and str(e) == "store: unit abc is damaged" and e.unit == "abc"


def test_atoms_without_neighbours_come_from_the_manifest_and_old_manifests_fall_back(tmp_path):
    from screening.graph import CrystalGraph

    lonely = CrystalGraph.from_csr(np.array([8, 3, 3]), np.array([0, 1, 1]), np.array([2, 1], dtype=np.int32),
                                   np.array([2.0, 2.0], dtype=np.float32))  # atom 0 has no neighbour
    store = GraphStore.open(tmp_path, FeaturizerSettings())
    store.write(["k-lonely", "k-full"], ["a", "b"], [lonely, synthetic_graph(1)])
    manifest = next((store.root / "manifest").glob("*.json"))
    assert json.loads(manifest.read_text())["isolated"] == [1, 0]
    assert store.isolated_atoms("k-lonely") == 1 and store.isolated_atoms("k-full") == 0
    # a manifest written before the count was recorded: the graph is read instead
    from cache.graph_units import _digest

    m = json.loads(manifest.read_text())
    del m["isolated"], m["sha256"]
    m["sha256"] = _digest(m)
    manifest.write_text(json.dumps(m))
    old = GraphStore.open(tmp_path, FeaturizerSettings())
    assert old.isolated_atoms("k-lonely") == 1 and old.isolated_atoms("k-full") == 0
