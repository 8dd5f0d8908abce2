import numpy as np
from pymatgen.core import Lattice, Structure

from cache.keys import STORE_FORMAT, canonical_structure, structure_key, structures_key
from cache.prediction_cache import PredictionCache, verify_predictions
from cache.structure_cache import StructureCache
from screening.featurize import FeaturizerSettings
from screening.sources import Candidate
from tests.helpers import mp_rows, mp_structures

CFG = FeaturizerSettings()


def test_same_crystal_same_key_other_crystal_or_cutoff_other_key():
    structures = mp_structures(3)[0]
    s = structures[2]
    assert len(s) > 1
    permuted = Structure.from_sites([s[i] for i in reversed(range(len(s)))])
    shifted = s.copy()
    # Whole lattice vectors, left unwrapped so the key's own wrapping is what is tested.
    shifted.translate_sites(list(range(len(s))), [1.0, -2.0, 3.0], to_unit_cell=False)
    assert not np.allclose(shifted.frac_coords, s.frac_coords)
    key = structure_key(s, CFG)
    assert len(key) == 32 and key == structure_key(permuted, CFG) == structure_key(shifted, CFG)
    assert key != structure_key(s, FeaturizerSettings(cutoff=6.0))
    assert key != structure_key(s, FeaturizerSettings(max_neighbors=8))
    assert key != structure_key(structures[1], CFG)
    strained = s.copy()
    strained.scale_lattice(s.volume * 1.01)
    assert key != structure_key(strained, CFG)
    moved = s.copy()
    moved.translate_sites([0], [0.01, 0, 0])  # one atom moved: another crystal
    assert key != structure_key(moved, CFG)


def test_coordinates_at_the_cell_edge_wrap_to_the_same_key():
    a = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    for edge in ([0.99999996, 0, 1e-7], [-3e-8, 1.0, 0.99999999], [2.0, -1.0, 0.00000004]):
        b = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [edge, [0.5, 0.5, 0.5]], coords_are_cartesian=False,
                      to_unit_cell=False)
        assert structure_key(a, CFG) == structure_key(b, CFG), edge
    # Below the tolerance: same key; above it: another key.
    c = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.00001, 0, 0], [0.5, 0.5, 0.5]])
    d = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.001, 0, 0], [0.5, 0.5, 0.5]])
    assert structure_key(a, CFG) == structure_key(c, CFG) != structure_key(d, CFG)
    assert structure_key(a, CFG, tol=1e-6) != structure_key(c, CFG, tol=1e-6)


def test_key_covers_species_and_format_and_tolerates_disorder():
    a = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    b = Structure(Lattice.cubic(4.0), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structure_key(a, CFG) != structure_key(b, CFG)
    # A disordered site keys (the featurizer refuses it later with a clear error), not a crash.
    mixed = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structure_key(mixed, CFG) not in (structure_key(a, CFG), structure_key(b, CFG))
    assert '"sites":[[[[11,10000]],[0,0,0]]' in canonical_structure(a)
    assert STORE_FORMAT >= 2 and structures_key("q", "src") != structures_key("q", "src v2")


def test_structure_cache_hit_and_miss(tmp_path):
    cache = StructureCache(tmp_path)
    df = mp_rows(3)
    s = mp_structures(3)[0][0]
    cands = [Candidate("local:x", df.material_id[1], "Pd", cif=df.cif[1], known={"band_gap": 0.0}),
             Candidate("substitution", "sub-1", s.composition.reduced_formula, s)]
    assert cache.get("Li-O-*", "local:x sha=1") is None
    cache.put("Li-O-*", "local:x sha=1", cands)
    back = cache.get("Li-O-*", "local:x sha=1")
    assert [c.id for c in back] == [c.id for c in cands] and back[0].known == {"band_gap": 0.0}
    assert back[1].structure == s and back[0].cif == df.cif[1]
    assert cache.get("Li-O-*", "local:x sha=2") is None  # the data changed: a miss
    assert cache.get("Li-*-O", "local:x sha=1") is None  # another query: a miss
    assert cache.verify() == []
    entry = cache.entries()[0]
    entry.write_bytes(entry.read_bytes()[:-5])  # truncated
    assert cache.get("Li-O-*", "local:x sha=1") is None  # a damaged entry is a miss, not a crash
    assert len(cache.verify()) == 1 and "unreadable" in cache.verify()[0]


def test_reference_cache_grows_per_system_and_is_keyed_by_database(tmp_path):
    from cache.reference_cache import ReferenceCache

    cache = ReferenceCache(tmp_path)
    db1 = "mp:http://x/ db_version=2025_01 deprecated=excluded gnome=excluded thermo=GGA_GGA+U_R2SCAN"
    cache.add(db1, {"Li-O": [("mp-1", "Li2O", -2.0)], "Li": []})  # a system without entries is kept too
    cache.add(db1, {"O": [("mp-12957", "O2", 0.0)]})  # a later run adds a system
    assert cache.get(db1, ["Li", "Li-O", "O", "Na"]) == {"Li": [], "Li-O": [("mp-1", "Li2O", -2.0)],
                                                         "O": [("mp-12957", "O2", 0.0)]}
    assert cache.get(db1.replace("2025_01", "2025_02"), ["Li-O"]) == {}  # a new database: a miss
    assert cache.get(db1.replace("gnome=excluded", "gnome=included"), ["Li-O"]) == {}
    assert cache.verify() == [] and len(cache.entries()) == 1
    entry = cache.entries()[0]
    entry.write_bytes(entry.read_bytes()[:-5])
    assert cache.get(db1, ["Li-O"]) == {} and "unreadable" in cache.verify()[0]


def test_prediction_cache_is_keyed_by_graph_key_and_model(tmp_path):
    a = PredictionCache(tmp_path, "hash-a", ["x", "y"])
    a.put_many(["k1", "k2"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    a.put_many(["k3"], np.array([[5, np.nan]], dtype=np.float32))
    again = PredictionCache(tmp_path, "hash-a", ["x", "y"])
    got = again.get_many(["k1", "k2", "k3", "k4"])
    assert set(got) == {"k1", "k2", "k3"} and np.array_equal(got["k2"], [3, 4]) and np.isnan(got["k3"][1])
    assert len(again) == 3
    assert PredictionCache(tmp_path, "hash-b", ["x", "y"]).get_many(["k1"]) == {}  # another model: a miss
    # the same model with other columns (say, mean and std of an ensemble) is another entry, not a clash
    assert PredictionCache(tmp_path, "hash-a", ["x"]).get_many(["k1"]) == {}
    assert verify_predictions(tmp_path) == []
    part = next(tmp_path.glob("hash-a-*/part-*.npz"))
    part.write_bytes(b"not a zip")
    assert len(verify_predictions(tmp_path)) == 1


def test_a_damaged_prediction_part_is_a_miss_not_a_failure(tmp_path):
    cache = PredictionCache(tmp_path, "model-a", ["x", "y"])
    cache.put_many(["k1", "k2"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    part = next(tmp_path.glob("model-a*/part-*.npz"))
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    part.write_bytes(bytes(raw))
    again = PredictionCache(tmp_path, "model-a", ["x", "y"])
    assert again.get_many(["k1", "k2"]) == {}  # recomputed by the run, not served and not a traceback
    assert not part.exists() and part.with_name(part.name + ".damaged").exists()
    assert any("moved aside" in p for p in verify_predictions(tmp_path))
    again.put_many(["k1"], np.array([[1, 2]], dtype=np.float32))
    assert np.array_equal(PredictionCache(tmp_path, "model-a", ["x", "y"]).get_many(["k1"])["k1"], [1, 2])
