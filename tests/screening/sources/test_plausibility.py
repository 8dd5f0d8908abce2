"""The substitution source's plausibility filter (`min_substitution_probability`): pymatgen's data-mined
ion substitution probabilities score a decoration against its template's own compound."""
import math

import pytest

from screening.errors import ScreenError
from screening.sources import open_source
from screening.sources.plausibility import site_probability, substitution_probability
from screening.sources.substitution import IMPROBABLE, SubstitutionSource
from tests.helpers import DATA
from workflows.api import RUN
from workflows.run.options import RunSettings, checked

PEROVSKITE = "sub-AB3C_cP5_221_a_c_b-SrTiO3-"  # CaTiO3's cubic perovskite: Ca on the A site, Ti on the B site


def shortest_sr_o(structure) -> float:
    return min(structure.get_distance(i, j) for i, a in enumerate(structure) for j, b in enumerate(structure)
               if a.specie.symbol == "Sr" and b.specie.symbol == "O")


def test_a_perovskite_with_sr_on_the_b_site_scores_below_sr_on_the_a_site_and_is_rejected_between():
    scored = SubstitutionSource(min_probability=0.0)  # scores every candidate, rejects none
    made = {c.id: c for c in scored.fetch("Sr-Ti-O")}
    p = scored.probabilities
    a_site, b_site = made[PEROVSKITE + "1"], made[PEROVSKITE + "2"]
    # -1 is real SrTiO3 (Sr 12-fold at a/sqrt2 from O), -2 has Sr and Ti swapped (Sr 6-fold at a/2)
    assert shortest_sr_o(a_site.structure) > 1.2 * shortest_sr_o(b_site.structure)
    assert p[b_site.id] < 0.02 < p[a_site.id]
    assert p[a_site.id] == pytest.approx(0.0966, abs=1e-3)  # Sr2+ for Ca2+, the least likely of its three ions
    assert scored.rejection_counts()[IMPROBABLE] == 0

    filtered = SubstitutionSource(min_probability=0.02)
    kept = {c.id for c in filtered.fetch("Sr-Ti-O")}
    below = {i for i, s in p.items() if s is not None and s < 0.02}
    assert a_site.id in kept and b_site.id in below and b_site.id not in kept
    assert kept == set(made) - below
    # the filter comes before the distance check: what both would reject counts as improbable
    distance_too = sum(scored.rejection_counts()["distance"].values()) - \
        sum(filtered.rejection_counts()["distance"].values())
    assert filtered.rejection_counts()[IMPROBABLE] == len(below) + distance_too and len(below) >= 10
    assert f"{len(below) + distance_too} prototypes rejected: substitution probability below 0.02" in \
        filtered.rejection_notes()


def test_the_score_is_the_least_likely_substitution_among_the_ions_the_table_knows():
    nacl, zns = {"Na": 1.0, "Cl": -1.0}, {"Zn": 2.0, "S": -2.0}
    kbr = [{"K": 1.0, "Br": -1.0}]
    rocksalt = substitution_probability(nacl, {"Na": "K", "Cl": "Br"}, kbr)
    zincblende = substitution_probability(zns, {"Zn": "K", "S": "Br"}, kbr)
    assert rocksalt == pytest.approx(site_probability("K", 1, "Na", 1))  # 0.053 < Br- for Cl- 0.067
    assert zincblende == pytest.approx(site_probability("Br", -1, "S", -2))  # 0.009 < K+ for Zn2+ 0.016
    assert zincblende < 0.5 * rocksalt  # KBr is a rocksalt
    # the candidate's best charge-balanced states count: Fe2+ for Mg2+ beats Fe3+ for Mg2+
    both = substitution_probability({"Mg": 2.0, "O": -2.0}, {"Mg": "Fe", "O": "O"}, [{"Fe": 3.0, "O": -2.0},
                                                                                  {"Fe": 2.0, "O": -2.0}])
    assert both == substitution_probability({"Mg": 2.0, "O": -2.0}, {"Mg": "Fe", "O": "O"}, [{"Fe": 2.0, "O": -2.0}])
    assert both > substitution_probability({"Mg": 2.0, "O": -2.0}, {"Mg": "Fe", "O": "O"}, [{"Fe": 3.0, "O": -2.0}])
    # C4- is not in the table: only the W site counts, and with no ion known there is no score
    assert substitution_probability({"W": 4.0, "C": -4.0}, {"W": "Ti", "C": "C"}, [{"Ti": 4.0, "C": -4.0}]) == \
        pytest.approx(substitution_probability({"W": 4.0}, {"W": "Ti"}, [{"Ti": 4.0}]))
    assert substitution_probability({"W": 0.0, "C": -4.0}, {"W": "Na", "C": "Cl"}, [{"Na": 1.0, "Cl": -1.0}]) is None


def test_the_threshold_keys_the_cache_and_off_changes_nothing():
    off = SubstitutionSource().describe()
    assert "min_probability" not in off
    assert SubstitutionSource(min_probability=0.01).describe() == off + " min_probability=0.01"
    assert SubstitutionSource(min_probability=0.01).describe() != SubstitutionSource(min_probability=0.02).describe()


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, "abc", True])
def test_a_threshold_that_is_not_a_probability_is_refused(value):
    with pytest.raises(ScreenError, match=r"^`min_substitution_probability` .*: a probability, from 0 to 1$"):
        SubstitutionSource(min_probability=value)


def test_only_the_substitution_source_takes_a_threshold():
    assert open_source("substitution", min_probability=0.02).min_probability == 0.02
    with pytest.raises(ScreenError, match="only `source` substitution makes substitutions"):
        open_source(f"local:{DATA}", min_probability=0.02)


def test_the_run_option_reaches_the_source(tmp_path):
    def source(**settings):
        opts, _ = checked(RunSettings(**dict(RUN, query="Li-Fe-O", source="substitution", cache=tmp_path / "c",
                                             out=tmp_path / "o", **settings)))
        return opts.checked().source

    assert source(min_substitution_probability=0.03).min_probability == 0.03
    assert source().min_probability is None
