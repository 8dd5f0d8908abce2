import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from cache.keys import structure_key
from cache.prediction_cache import PredictionCache
from cache.structure_cache import StructureCache
from screening.featurize import FeaturizerConfig
from screening.sources import Candidate
from tests.helpers import mp_rows, mp_structures

CFG = FeaturizerConfig()


def test_same_crystal_same_key_other_crystal_or_cutoff_other_key():
    s = mp_structures(3)[0][2]
    permuted = Structure.from_sites([s[i] for i in reversed(range(len(s)))])
    shifted = s.copy()
    shifted.translate_sites(list(range(len(s))), [1.0, -2.0, 0.0])  # whole lattice vectors
    assert structure_key(s, CFG) == structure_key(permuted, CFG) == structure_key(shifted, CFG)
    assert structure_key(s, CFG) != structure_key(s, FeaturizerConfig(cutoff=6.0))
    assert structure_key(s, CFG) != structure_key(mp_structures(3)[0][1], CFG)
    strained = s.copy()
    strained.scale_lattice(s.volume * 1.01)
    assert structure_key(s, CFG) != structure_key(strained, CFG)


def test_coordinates_at_the_cell_edge_wrap_to_the_same_key():
    a = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    b = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.999999, 0, 1e-7], [0.5, 0.5, 0.5]])
    assert structure_key(a, CFG) == structure_key(b, CFG)


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


def test_prediction_cache_is_keyed_by_model(tmp_path):
    a = PredictionCache(tmp_path, "hash-a", ["x", "y"])
    a.put_many(["k1", "k2"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    again = PredictionCache(tmp_path, "hash-a", ["x", "y"])
    got = again.get_many(["k1", "k2", "k3"])
    assert set(got) == {"k1", "k2"} and np.array_equal(got["k2"], [3, 4])
    assert PredictionCache(tmp_path, "hash-b", ["x", "y"]).get_many(["k1"]) == {}
