"""What the source tests share (and test_run_e2e): element sets, structure equality, MP requests."""
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


def summary_requests(server):
    """(listings, full fetches) among the server's summary requests: a full one asks for structures."""
    sent = [p for path, p in server.requests if path == "/materials/summary"]
    full = [p for p in sent if "structure" in p.get("_fields", "").split(",")]
    return [p for p in sent if p not in full], full
