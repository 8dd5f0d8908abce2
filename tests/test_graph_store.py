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
from screening.featurize import FeaturizerConfig, featurize
from tests.helpers import mp_structures
from tests.store_workers import synthetic_graph, write_range

ROOT = Path(__file__).resolve().parents[1]


def test_round_trip_is_bit_identical(tmp_path):
    structures, targets = mp_structures(120)
    cfg = FeaturizerConfig()
    graphs = [featurize(s) for s in structures]
    keys = [structure_key(s, cfg) for s in structures]
    store = GraphStore.open(tmp_path, cfg)
    store.write(keys[:70], [f"mp{i}" for i in range(70)], graphs[:70], targets[:70], task_names=["a", "b", "c"])
    store.write(keys[50:], [f"mp{i}" for i in range(50, 120)], graphs[50:], targets[50:])
    reopened = GraphStore.open(tmp_path, cfg)
    assert len(reopened) == len(set(keys))
    for i, (k, g) in enumerate(zip(keys, graphs)):
        got = reopened.get_record(k)
        for f in ("atomic_numbers", "src", "dst", "distances"):
            a, b = getattr(got.graph, f), getattr(g, f)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        assert np.array_equal(got.targets, targets[i], equal_nan=True)
    assert reopened.get("mp7").equals(graphs[7])
    streamed = [r for batch in reopened.iter_batches(max_atoms=300) for r in batch]
    assert sorted(r.key for r in streamed) == sorted(set(keys))
    for batch in reopened.iter_batches(max_atoms=300):
        assert sum(r.graph.n_atoms for r in batch) <= 300 or len(batch) == 1
    with pytest.raises(ScreenError, match="no crystal with key or id nope"):
        reopened.get("nope")


def test_store_refuses_another_featurizer(tmp_path):
    GraphStore.open(tmp_path, FeaturizerConfig())
    with pytest.raises(ScreenError, match="built with featurizer"):
        GraphStore.open(tmp_path, FeaturizerConfig(cutoff=6.0))


def test_four_concurrent_writers_store_every_crystal_exactly_once(tmp_path):
    # overlapping ranges: 0-300, 100-400, 200-500, 0-500 in units of 40
    ranges = [(0, 300), (100, 400), (200, 500), (0, 500)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=write_range, args=(str(tmp_path), a, b, 40)) for a, b in ranges]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = GraphStore.open(tmp_path, FeaturizerConfig())
    served = [r.key for r in store.iter_records()]
    assert len(served) == len(set(served)) == 500
    assert set(served) == {f"key{i:06d}" for i in range(500)}
    assert all(store.get(f"key{i:06d}").equals(synthetic_graph(i)) for i in range(0, 500, 37))
    assert store.verify() == [] and store.info()["crystals"] == 500


def test_writer_killed_mid_unit_leaves_a_valid_store_and_rerun_completes(tmp_path):
    write_range(str(tmp_path), 0, 100, 50)  # two published units first
    flag = tmp_path / "paused.flag"
    env = dict(os.environ, SCREEN_STORE_PAUSE_BEFORE_PUBLISH="60",
               SCREEN_STORE_PAUSE_BEFORE_PUBLISH_FLAG=str(flag), PYTHONPATH=str(ROOT))
    writer = subprocess.Popen([sys.executable, "-m", "tests.store_workers", str(tmp_path), "100", "150", "50"],
                              cwd=ROOT, env=env)
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert flag.exists(), "writer never reached the pause"
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    store = GraphStore.open(tmp_path, FeaturizerConfig())
    assert store.verify() == []
    assert len(store) == 100 and not store.contains("key000120")
    assert len(store.stale()) == 1  # the half-written unit, never served
    write_range(str(tmp_path), 100, 150, 50)  # the re-run
    store = GraphStore.open(tmp_path, FeaturizerConfig())
    assert len(store) == 150 and store.verify() == []
    assert store.get("key000120").equals(synthetic_graph(120))
    assert store.clean_stale() == 1 and store.stale() == []


def test_flipped_byte_in_a_chunk_is_caught_by_verify(tmp_path):
    write_range(str(tmp_path), 0, 60, 60)
    shard = next((tmp_path / "units").glob("*.zarr/distances/c/0"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    problems = GraphStore.open(tmp_path, FeaturizerConfig()).verify()
    assert len(problems) == 1 and "checksum mismatch in distances/c/0" in problems[0]


MEMORY_SCRIPT = """
import sys, psutil
from cache.graph_store import GraphStore
from screening.featurize import FeaturizerConfig
store = GraphStore.open(sys.argv[1], FeaturizerConfig())
proc = psutil.Process()
base = peak = None
n = 0
for batch in store.iter_batches(max_atoms=5000):
    n += len(batch)
    rss = proc.memory_info().rss
    if base is None and n >= 2000:  # after two units: libraries loaded, buffers sized
        base = peak = rss
    elif base is not None:
        peak = max(peak, rss)
print(n, (peak - base) / 1e6)
"""


@pytest.mark.slow
def test_reader_memory_stays_flat_over_20000_graphs(tmp_path):
    write_range(str(tmp_path), 0, 20_000, 1000)  # 20 units, ~2.5 M edges
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True).stdout.split()
    n, growth_mb = int(out[0]), float(out[1])
    assert n == 20_000
    # 19 more units (~1 MB of arrays each) stream past; a reader holding them all would grow
    # by ~20 MB of arrays plus their graphs. Streaming keeps at most two units.
    assert growth_mb < 10, f"reader grew by {growth_mb:.1f} MB after two units"
