"""What changed between two runs of the same query: new, changed, moved, removed."""
import pandas as pd

from screening.changes import compare, describe


def table(rows):
    return pd.DataFrame(rows, columns=["id", "formula", "structure_key", "rank", "pred_e_above_hull"])


def test_new_changed_moved_and_removed_candidates_are_listed_the_rest_left_out():
    before = table([("a", "LiO", "k1", 1, 0.0), ("b", "Li2O", "k2", 2, 0.1), ("c", "LiO2", "k3", 3, 0.2),
                    ("d", "Li2O2", "k4", 4, 0.3)])
    after = table([("a", "LiO", "k1", 1, 0.0), ("n", "Li3O", "k9", 2, 0.05), ("b", "Li2O", "k2", 3, 0.1),
                   ("c", "LiO2", "k3x", 4, 0.25)])
    changes = compare(after, before)
    assert changes.change.tolist() == ["new", "changed", "moved", "removed"]
    assert changes.id.tolist() == ["n", "c", "b", "d"]
    assert changes["rank"].fillna(0).tolist() == [2, 4, 3, 0]  # 0: blank
    assert changes["previous_rank"].fillna(0).tolist() == [0, 3, 2, 4]
    summary = describe(changes)
    assert (summary["new"], summary["changed"], summary["moved"], summary["removed"]) == (1, 1, 1, 1)
    assert summary["note"] == "1 new (n); 1 changed (c); 1 moved; 1 removed (d)"


def test_the_same_table_twice_is_no_changes():
    t = table([("a", "LiO", "k1", 1, 0.0), ("b", "Li2O", "k2", 2, 0.1)])
    changes = compare(t, t.copy())
    assert changes.empty and describe(changes)["note"] == "no changes"
    assert describe(None, "first run in this folder: nothing to compare") == {
        "compared": False, "note": "first run in this folder: nothing to compare"}
