import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cache import stats
from cache.cache_dir import MARKER, CacheDir


def claim(path):
    return CacheDir(path).claim().root
from cache.structure_cache import StructureCache
from cache.prediction_cache import PredictionCache
from cli import app
from tests.store_workers import write_range

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def screen(*args, **env):
    return runner.invoke(app, ["cache", *args], env=env or None)


def test_cache_info_ls_verify_clear(tmp_path):
    cache = claim(tmp_path / "cache")
    write_range(str(cache / "graphs"), 0, 90, 30)
    PredictionCache(cache / "predictions", "model-a", ["x"]).put_many(["k1"], np.ones((1, 1)))
    stats.record(cache, runs=1, graph_hits=30, graph_misses=90, prediction_hits=0, prediction_misses=90)
    r = screen("info", "--cache", str(cache))
    assert r.exit_code == 0, r.output
    assert "90 crystals" in r.output and "3 units" in r.output and "0 duplicate copies" in r.output
    assert "1 models" in r.output and "graph cache: 30 hits, 90 misses (25%) over 1 runs" in r.output
    r = screen("ls", "--limit", "5", SCREEN_CACHE=str(cache))  # the directory from the environment
    assert r.exit_code == 0 and "90 crystals" in r.output and "85 more" in r.output
    assert sum(line.startswith("│ id") for line in r.output.splitlines()) == 5
    r = screen("verify", "--store", str(cache))
    assert r.exit_code == 0 and "ok: 3 units verified" in r.output
    shard = next((cache / "graphs").glob("*/units/*.zarr/dst/c/0"))
    shard.write_bytes(shard.read_bytes()[:-3] + b"xyz")
    r = screen("verify", "--cache", str(cache))
    assert r.exit_code == 1 and "checksum mismatch in dst/c/0" in r.output
    assert sum(line.startswith("problem:") for line in r.output.splitlines()) == 1
    r = screen("clear", "--cache", str(cache), "--yes")
    assert r.exit_code == 0 and not cache.exists()
    r = screen("info", "--cache", str(cache))
    assert r.exit_code == 2 and "no cache directory" in r.output


def test_verify_and_clear_stale_after_a_killed_writer(tmp_path):
    cache = tmp_path / "cache"
    write_range(str(cache / "graphs"), 0, 40, 20)
    flag = tmp_path / "flag"
    env = dict(os.environ, STORE_PAUSE_AT="publish", STORE_PAUSE_FLAG=str(flag), PYTHONPATH=str(ROOT))
    writer = subprocess.Popen([sys.executable, "-m", "tests.store_workers", str(cache / "graphs"), "40", "60", "20"],
                              cwd=ROOT, env=env)
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline and writer.poll() is None:
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    r = screen("verify", "--cache", str(cache))
    assert r.exit_code == 0 and "ok: 2 units verified" in r.output and "1 unpublished leftovers" in r.output
    r = screen("clear", "--cache", str(cache), "--stale")
    assert r.exit_code == 0 and "removed 0 stale items" in r.output  # too young: might be a live writer
    r = screen("clear", "--cache", str(cache), "--stale", "--min-age", "0")
    assert r.exit_code == 0 and "removed 1 stale items" in r.output
    r = screen("info", "--cache", str(cache))
    assert "40 crystals" in r.output and "0 unpublished leftovers" in r.output


def test_clear_refuses_a_directory_that_is_not_a_cache(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    r = screen("clear", "--cache", str(tmp_path), "--yes")
    assert r.exit_code == 2 and "thesis.tex" in r.output and "not removing" in r.output
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_clear_refuses_a_folder_screen_did_not_make(tmp_path):
    """Only cache-part names inside, but no marker: a user's folder that happens to look like a cache."""
    folder = tmp_path / "reports"
    (folder / "predictions").mkdir(parents=True)
    (folder / "predictions" / "results_2024.xlsx").write_bytes(b"precious")
    r = screen("clear", "--cache", str(folder), "--yes")
    assert r.exit_code == 2 and f"has no {MARKER}" in r.output and "not removing" in r.output
    assert (folder / "predictions" / "results_2024.xlsx").read_bytes() == b"precious"
    claim(folder)  # not empty: screen cannot know it made this, so no marker
    assert not (folder / MARKER).exists()
    fresh = claim(tmp_path / "new-cache")
    assert (fresh / MARKER).read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_verify_repair_removes_every_damaged_item_and_the_store_is_remade(tmp_path):
    from cache.graph_store import GraphStore
    from screening.featurize import FeaturizerSettings
    from tests.store_workers import synthetic_graph

    cache = claim(tmp_path / "cache")
    write_range(str(cache / "graphs"), 0, 90, 30)  # 3 units
    manifests = sorted((cache / "graphs").glob("*/manifest/*.json"))
    shard = next((cache / "graphs").glob(f"*/units/{manifests[0].stem}-*.zarr/distances/c/0"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x40
    shard.write_bytes(bytes(data))  # unit 0: one flipped byte
    manifests[1].write_bytes(manifests[1].read_bytes()[:50])  # unit 1: a truncated manifest
    preds = PredictionCache(cache / "predictions", "model-a", ["x"])
    bad_part = preds.put_many(["k1"], np.ones((1, 1)))
    good_part = preds.put_many(["k2"], np.full((1, 1), 2.0))
    bad_part.write_bytes(bad_part.read_bytes()[:-10])
    structures = StructureCache(cache / "structures")
    entry = structures.put("q", "src", [])
    entry.write_bytes(b"not gzip")
    hulls = CacheDir(cache).hulls("references v1")
    answer = {"formulas": {"Li2O": ["Li2O", 3.0, -2.0, []]}, "loo": {}, "on_hull": [], "references": []}
    hulls.put("Li-O", answer)
    hulls.put("Fe-O", dict(answer, formulas={"FeO": "not a hull point"}))  # readable, but not an answer
    hulls.put_phases(12)
    r = screen("verify", "--cache", str(cache))
    assert r.exit_code == 1 and sum(line.startswith("problem:") for line in r.output.splitlines()) == 5
    assert "Fe-O.json.gz: not a chemical system's hull answer" in r.output
    assert "verify --repair" in r.output
    r = screen("verify", "--cache", str(cache), "--repair")
    assert r.exit_code == 0 and "repaired: 5 damaged items removed" in r.output, r.output
    assert not bad_part.exists() and good_part.exists() and not entry.exists()
    assert set(hulls.get_many(["Li-O", "Fe-O"])) == {"Li-O"} and hulls.phases() == 12
    r = screen("verify", "--cache", str(cache))
    assert r.exit_code == 0 and "ok: 1 units verified" in r.output, r.output
    r = screen("info", "--cache", str(cache))
    assert "30 crystals" in r.output and "0 unpublished leftovers" in r.output
    # the removed crystals are missing, so a writer makes them again, and they are served right
    store = GraphStore.open(cache / "graphs", FeaturizerSettings())
    assert sum(store.contains(f"key{i:06d}") for i in range(90)) == 30
    write_range(str(cache / "graphs"), 0, 90, 30)
    store.refresh()
    np.testing.assert_array_equal(store.get("key000005").distances, synthetic_graph(5).distances)
    assert screen("verify", "--cache", str(cache)).exit_code == 0
    assert PredictionCache(cache / "predictions", "model-a", ["x"]).get_many(["k1", "k2"]).keys() == {"k2"}
