"""The records the run's tasks pass (workflows/run/records.py): sums, slices and JSON round trips."""
import json

from pymatgen.core import Lattice, Structure

from screening.sources.base import Candidate
from workflows.run.records import FetchCounts, Fetched, Keyed, Row, total


def test_fetch_counts_add_up_by_reason_and_pair():
    a = FetchCounts(mp_fetched=2, mp_cached=1, rejected_valence=1, rejected_distance={"Br-O": 2})
    b = FetchCounts(mp_fetched=3, rejected_distance={"Br-O": 1, "Cl-Na": 4})
    s = total([a, b, FetchCounts()])
    assert s == FetchCounts(5, 1, 1, {"Br-O": 3, "Cl-Na": 4})
    assert FetchCounts.from_json(json.loads(json.dumps(s.to_json()))) == s


def test_a_partition_s_rows_come_back_from_json_as_the_structure_cache_keeps_them():
    keyed = Keyed([Row(0, "local", "mp-1", "LiO2", {"band_gap": 1.5}, "k1", 0, 2.25, "Li-O"),
                   Row(2, "local", "mp-3", "Li2O", {}, "k3", 1, 2.0, "Li-O")], ["mp-2: unreadable"])
    back = Keyed.from_json(json.loads(json.dumps(keyed.to_json())))
    assert back.rows == keyed.rows and back.errors == keyed.errors and back.keys == ["k1", "k3"]
    assert back.rows[1].density == 2.0 and back.rows[0].known == {"band_gap": 1.5}


def test_a_fetch_slices_without_its_counts_and_round_trips_its_structures():
    s = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    fetched = Fetched([Candidate("local", f"mp-{i}", "NaCl", s, known={"band_gap": 5.0}) for i in range(3)],
                      FetchCounts(rejected_valence=2))
    part = fetched[1:3]
    assert [c.id for c in part.candidates] == ["mp-1", "mp-2"] and part.counts == FetchCounts()
    assert fetched.size() == (3, FetchCounts(rejected_valence=2))
    back = Fetched.from_json(json.loads(json.dumps(fetched.to_json())))
    assert back.counts == fetched.counts and [c.id for c in back.candidates] == ["mp-0", "mp-1", "mp-2"]
    assert back.candidates[0].structure == s and back.candidates[0].known == {"band_gap": 5.0}
