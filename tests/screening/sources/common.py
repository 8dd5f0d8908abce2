"""What the source tests share: element sets of formulas and structure equality."""
import warnings

import numpy as np
from pymatgen.core import Composition


def elements_of(formula):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return frozenset(el.symbol for el in Composition(formula).elements)


def assert_same_structure(a, b):
    assert [str(s.specie) for s in a] == [str(s.specie) for s in b]
    np.testing.assert_allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-6)
    np.testing.assert_allclose(a.frac_coords, b.frac_coords, atol=1e-6)
