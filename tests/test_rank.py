import numpy as np
import pandas as pd
import pytest

from screening.errors import ScreenError
from screening.rank import RankOptions, ReferencePhases, energy_above_hull, rank


@pytest.fixture
def refs():
    # Li2O (-2.0 eV/atom) and the elements: the Li-O hull
    return ReferencePhases(["Li2O", "LiO8"], [-2.0, float("nan")])  # NaN rows are ignored


def test_energy_above_hull_matches_hand_computation(refs):
    # LiO (50% O): hull between Li2O (33% O, -2.0) and O (100%, 0): at x_O=0.5 the hull is
    # -2.0 * (1 - 0.5) / (1 - 1/3) = -1.5 eV/atom
    e = energy_above_hull(["LiO", "Li2O", "LiO"], np.array([-1.2, -2.1, -1.6]), refs)
    np.testing.assert_allclose(e, [0.3, -0.1, -0.1], atol=1e-9)
    # a system with no known phases: the elements alone, so E_hull = dEf where dEf > 0
    np.testing.assert_allclose(energy_above_hull(["NaCl"], np.array([0.2]), refs), [0.2])


def table():
    return pd.DataFrame({
        "id": ["a", "b", "c", "d"], "formula": ["LiO", "Li2O", "LiO2", "Li3O"],
        "pred_formation_energy_per_atom": [-1.2, -2.1, -0.9, -1.0],
        "pred_band_gap": [0.0, 4.0, 1.0, 0.02],
    })


def test_rank_sorts_classifies_and_filters(refs):
    t = rank(table(), refs)
    assert t.id.tolist()[0] == "b" and t["rank"].tolist() == [1, 2, 3, 4]
    assert np.all(np.diff(t.pred_e_above_hull) >= 0)
    assert dict(zip(t.id, t.pred_class)) == {"a": "metal", "b": "non-metal", "c": "non-metal", "d": "metal"}
    assert set(rank(table(), refs, RankOptions(nonmetal=True)).id) == {"b", "c"}
    assert set(rank(table(), refs, RankOptions(gap_min=0.5, gap_max=2.0)).id) == {"c"}
    assert set(rank(table(), refs, RankOptions(gap_threshold=0.01)).query("pred_class == 'metal'").id) == {"a"}
    assert rank(table(), refs, RankOptions(ehull_max=0.0)).id.tolist() == ["b"]
    assert rank(table(), refs, RankOptions(top=2)).id.tolist() == t.id.tolist()[:2]


def test_contradictory_gap_filters_are_an_error(refs):
    with pytest.raises(ScreenError, match="--gap-min 2.0 is above --gap-max 1.0"):
        rank(table(), refs, RankOptions(gap_min=2.0, gap_max=1.0))
