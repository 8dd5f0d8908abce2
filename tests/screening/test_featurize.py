import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from screening.elements import MAX_Z, N_FEATURES, atom_feature_table, computed_atom_feature_table
from screening.errors import ScreenError
from screening.featurize import FeaturizerSettings, featurize
from screening.structures import read_structure
from tests.helpers import diamond, mp_structures, rocksalt


def nearest_shell(graph, atom, n):
    d = np.sort(graph.distances[graph.src == atom])
    return d[:n], d[n]


def test_rocksalt_has_six_nearest_neighbors_at_half_a():
    a = 5.64
    g = featurize(rocksalt(a))
    for atom in range(g.n_atoms):
        shell, next_d = nearest_shell(g, atom, 6)
        np.testing.assert_allclose(shell, a / 2, rtol=1e-5)
        assert next_d == pytest.approx(a / np.sqrt(2), rel=1e-5)
        nbr_z = g.atomic_numbers[g.dst[(g.src == atom) & np.isclose(g.distances, a / 2)]]
        assert set(nbr_z) == {11 if g.atomic_numbers[atom] == 17 else 17}  # Na sees Cl, Cl sees Na
    assert g.n_edges == 12 * g.n_atoms


def test_diamond_has_four_nearest_neighbors_at_sqrt3_a_over_4():
    a = 5.43
    g = featurize(diamond(a))
    for atom in range(g.n_atoms):
        shell, next_d = nearest_shell(g, atom, 4)
        np.testing.assert_allclose(shell, np.sqrt(3) * a / 4, rtol=1e-5)
        assert next_d == pytest.approx(a / np.sqrt(2), rel=1e-5)


def test_cutoff_and_neighbor_count_are_configurable():
    g = featurize(rocksalt(), FeaturizerSettings(cutoff=3.0, max_neighbors=12))
    assert np.all(g.neighbor_counts() == 6) and np.all(g.distances <= 3.0)
    g = featurize(rocksalt(), FeaturizerSettings(max_neighbors=4))
    assert np.all(g.neighbor_counts() == 4)


def test_atoms_short_of_neighbors_keep_only_real_ones():
    # Simple cubic, a = 7 A: 6 neighbors at 7 A, the next shell (9.9 A) is outside 8 A.
    g = featurize(Structure(Lattice.cubic(7.0), ["Cu"], [[0, 0, 0]]))
    assert g.neighbor_counts().tolist() == [6]
    np.testing.assert_allclose(g.distances, 7.0, rtol=1e-6)
    # a = 10 A: nothing inside the cutoff; the atom stays, with no edges.
    g = featurize(Structure(Lattice.cubic(10.0), ["Cu"], [[0, 0, 0]]))
    assert g.n_atoms == 1 and g.n_edges == 0


def test_graph_is_csr_ordered_and_nearest_first():
    structures, _ = mp_structures(20)
    for s in structures:
        g = featurize(s)
        assert np.all(np.diff(g.src) >= 0)
        for atom in range(g.n_atoms):
            d = g.distances[g.src == atom]
            assert np.all(np.diff(d) >= -1e-4)
            assert len(d) == min(12, len(s.get_neighbors(s[atom], 8.0)))


def test_feature_table_is_one_hot_per_property():
    t = atom_feature_table()
    assert t.shape == (MAX_Z + 1, N_FEATURES) == (95, 92)
    assert np.all(t[1:].sum(axis=1) == 9)  # nine properties, one bin each
    assert not np.array_equal(t[3], t[11])  # Li and Na differ (period)
    # O: group 16, period 2, p block
    assert t[8][15] == 1 and t[8][18 + 1] == 1 and t[8][18 + 7 + 11 + 10 + 12 + 10 + 10 + 1] == 1


def test_shipped_feature_table_is_pymatgens():
    """The model reads the table from screening/data; it must be what pymatgen's data gives."""
    shipped, computed = atom_feature_table(), computed_atom_feature_table()
    assert shipped.dtype == computed.dtype == np.float32
    np.testing.assert_array_equal(shipped, computed)


BAD_CIF = "data_x\n_cell_length_a 4.0\n_cell_length_b zz\nloop_\n_atom_site_label\n"


def test_malformed_cif_is_a_one_line_error_naming_the_input(tmp_path):
    f = tmp_path / "broken.cif"
    f.write_text(BAD_CIF)
    with pytest.raises(ScreenError) as e:
        read_structure(f)
    assert "broken.cif" in str(e.value) and "CIF" in str(e.value) and "\n" not in str(e.value)


def test_disordered_structure_is_refused(tmp_path):
    s = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    f = tmp_path / "alloy.cif"
    s.to(filename=str(f))
    with pytest.raises(ScreenError, match=r"alloy\.cif: disordered structure"):
        featurize(read_structure(f), name=str(f))


def test_element_outside_feature_table_is_refused():
    s = Structure(Lattice.cubic(4.0), ["Am"], [[0, 0, 0]])
    with pytest.raises(ScreenError, match=r"AmO\?|am\.cif: element Am is outside the atom feature table"):
        featurize(s, name="am.cif")


def test_featurizer_config_is_validated():
    with pytest.raises(ScreenError, match="cutoff"):
        FeaturizerSettings(cutoff=-1)
    assert FeaturizerSettings().fingerprint() != FeaturizerSettings(cutoff=6.0).fingerprint()
    assert len(FeaturizerSettings().gaussian_centers()) == 41
