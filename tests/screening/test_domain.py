"""The model's training domain and the flags it puts on candidates outside it."""
import json

import numpy as np
import pytest

from screening.checkpoint import default_model_path
from screening.domain import Domain, density, domain_path
from screening.errors import ScreenError


def test_counts_crystals_per_element_and_flags_what_is_rare():
    # Z 3 = Li, 8 = O, 27 = Co: Li and O in three crystals, Co in one
    domain = Domain.from_atomic_numbers([np.array([3, 3, 8]), np.array([3, 8, 8, 8]), np.array([3, 27, 8])])
    assert domain.n_train == 3 and domain.element_counts == {"Li": 3, "O": 3, "Co": 1}
    assert domain.flags({"Li", "O"}, min_count=2) == []
    assert domain.flags({"Li", "Co", "O"}, min_count=2) == ["Co in 1 training crystals"]
    assert domain.flags({"Li", "Og"}, isolated_atoms=2, unrelaxed=True, min_count=2) == [
        "Og in 0 training crystals", "2 atom(s) without neighbours", "unrelaxed"]
    # density: only outside the range, and only where the training data gave one
    assert domain.flags({"Li"}, density=30.0, min_count=2) == []
    domain.density_range = Domain.density_range_of(np.linspace(2.0, 6.0, 1001))
    assert domain.density_range == [2.004, 5.996]
    assert domain.flags({"Li"}, density=3.0, min_count=2) == []
    assert domain.flags({"Li"}, density=0.9, min_count=2) == ["density 0.90 g/cm3 outside 2.004-5.996"]


def test_the_bundled_model_ships_its_domain(tmp_path):
    path = domain_path(default_model_path())
    assert path == default_model_path().parent / "domain.json"
    domain = Domain.read(path)
    # 80 % of 33,038 crystals; oxygen is the most common element of Materials Project crystals
    assert domain.n_train == 26430 and max(domain.element_counts, key=domain.element_counts.get) == "O"
    assert domain.flags({"He"}) == ["He in 1 training crystals"]
    lo, hi = domain.density_range
    assert 0.5 < lo < 1.5 and 15 < hi < 25  # g/cm3: from molecular solids to 5d metals
    assert Domain.read(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text(json.dumps({"n_train": 3}))
    with pytest.raises(ScreenError, match="not a readable model domain file"):
        Domain.read(tmp_path / "bad.json")


def test_density_is_pymatgens_number_without_its_unit_objects():
    from tests.helpers import mp_structures

    structures, _ = mp_structures(200)
    assert len(structures) == 200
    assert [density(s) for s in structures] == [float(s.density) for s in structures]  # the same floats


def test_densities_from_atomic_numbers_match_the_structures_own():
    """write_domain measures training densities from graphs (atomic numbers) and cell volumes; a
    candidate's comes from its structure: one conversion, so the two agree to the last digit."""
    from pymatgen.core import Lattice, Structure

    from screening.domain import densities, density

    crystals = [Structure(Lattice.cubic(4.2), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
                Structure(Lattice.hexagonal(3.1, 5.0), ["Fe", "Fe", "P"], [[0, 0, 0], [1 / 3, 2 / 3, 0.5], [0, 0, 0.5]])]
    got = densities([[site.specie.Z for site in s] for s in crystals], [s.volume for s in crystals])
    assert got.tolist() == [density(s) for s in crystals]
    assert abs(got[0] - float(crystals[0].density)) < 1e-12
