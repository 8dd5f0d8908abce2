"""The fast P1 CIF path (gemmi) gives exactly pymatgen's structure, or steps aside."""
import numpy as np
import pandas as pd
import pytest

from screening.structures import fast_p1_cif, pymatgen_cif, structure_from_cif_text
from tests.helpers import DATA


def identical(a, b) -> bool:
    return (np.array_equal(a.lattice.matrix, b.lattice.matrix) and a.labels == b.labels
            and [str(s) for s in a.species] == [str(s) for s in b.species]
            and np.array_equal(a.frac_coords, b.frac_coords))


def test_fast_path_equals_pymatgen_on_thousands_of_crystals():
    df = pd.read_csv(DATA, usecols=["material_id", "cif"])
    sample = df.sample(n=2500, random_state=0)
    fast_used = 0
    for mid, cif in zip(sample.material_id, sample.cif):
        fast = fast_p1_cif(cif)
        if fast is None:
            continue
        fast_used += 1
        assert identical(fast, pymatgen_cif(cif, mid)), mid
    assert fast_used >= 0.99 * len(sample)  # the fast path is really taken, not silently skipped


NON_P1 = """data_NaCl
_symmetry_space_group_name_H-M 'F m -3 m'
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
 _symmetry_equiv_pos_as_xyz
 'x, y, z'
 'x+1/2, y+1/2, z'
 'x+1/2, y, z+1/2'
 'x, y+1/2, z+1/2'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
 Na Na1 0 0 0 1
 Cl Cl1 0.5 0.5 0.5 1
"""


@pytest.mark.parametrize("change", [
    lambda t: t,  # symmetry operations to apply
    lambda t: t.replace(" 'x+1/2, y+1/2, z'\n 'x+1/2, y, z+1/2'\n 'x, y+1/2, z+1/2'\n", "").replace(
        "Na Na1 0 0 0 1", "Na Na1 0 0 0 0.5"),  # partial occupancy
    lambda t: t.replace(" 'x+1/2, y+1/2, z'\n 'x+1/2, y, z+1/2'\n 'x, y+1/2, z+1/2'\n", "").replace(
        "0.5 0.5 0.5 1", "0.5(2) 0.5 0.5 1"),  # a number with its uncertainty
    lambda t: t.replace(" 'x+1/2, y+1/2, z'\n 'x+1/2, y, z+1/2'\n 'x, y+1/2, z+1/2'\n", "").replace(
        "Na Na1", "Na+ Na1"),  # an oxidation state
])
def test_anything_but_a_plain_p1_cif_falls_back_to_pymatgen(change):
    text = change(NON_P1)
    assert fast_p1_cif(text) is None
    assert structure_from_cif_text(text, "x").as_dict() == pymatgen_cif(text, "x").as_dict()
