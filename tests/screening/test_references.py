"""The reference table that ships with the package: built from ../shared/data, same hull as the full data."""
import hashlib
import json

import numpy as np
import pandas as pd

from screening.formula import element_set
from screening.rank import ReferencePhases, energy_above_hull
from screening.references import SHIPPED, load_references
from workflows.run.hulls import choose_reference
from tests.helpers import DATA


def test_shipped_table_is_built_from_this_data():
    about = json.loads(SHIPPED.with_suffix("").with_suffix(".json").read_text())
    assert about["sha256"] == hashlib.sha256(DATA.read_bytes()).hexdigest()[:16], \
        "../shared/data changed: rebuild with python -m screening.data.build_references"
    assert about["entries"] == len(pd.read_csv(SHIPPED))


def test_shipped_table_gives_the_same_hull_as_the_whole_data():
    full = pd.read_csv(DATA, usecols=["material_id", "formula", "formation_energy_per_atom"])
    everything = ReferencePhases(full.formula, full.formation_energy_per_atom, full.material_id)
    systems = [element_set(f) for f in ("LiFeO2", "NaCl", "Li2MnO3", "BaTiO3", "CuInSe2")]
    shipped, note = load_references(choose_reference(None, "substitution"), systems)
    assert note.startswith("reference phases: the table shipped with screen (17167 phases")
    rng = np.random.default_rng(0)
    formulas = ["LiFeO2", "NaCl", "Li2MnO3", "BaTiO3", "CuInSe2"] * 4
    energies = rng.uniform(-3.0, 0.5, len(formulas))
    np.testing.assert_allclose(energy_above_hull(formulas, energies, shipped),
                               energy_above_hull(formulas, energies, everything), atol=1e-9)
