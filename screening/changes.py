"""What changed between two runs of the same screening: new candidates, candidates whose crystal
changed in the source, candidates whose rank moved, and candidates that left the table.

A scheduled campaign re-runs the same query in the same folder; this is the part of its output
a person reads first (`changes.csv`, and the `changes` entry of summary.json).
"""
from __future__ import annotations

from typing import Optional

import pandas as pd

KINDS = ("new", "changed", "moved", "removed")
COLUMNS = ["change", "id", "formula", "rank", "previous_rank", "pred_e_above_hull", "previous_pred_e_above_hull"]


def compare(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """One row per candidate that is new, changed (another structure under the same id), moved
    (same structure, another rank) or removed; the rest are unchanged and left out."""
    cur = current.set_index("id")
    old = previous.set_index("id")
    rows = []
    for i in cur.index:
        row = cur.loc[i]
        if i not in old.index:
            kind = "new"
        elif row["structure_key"] != old.at[i, "structure_key"]:
            kind = "changed"
        elif row["rank"] != old.at[i, "rank"]:
            kind = "moved"
        else:
            continue
        rows.append({"change": kind, "id": i, "formula": row["formula"], "rank": row["rank"],
                     "previous_rank": old.at[i, "rank"] if i in old.index else None,
                     "pred_e_above_hull": row.get("pred_e_above_hull"),
                     "previous_pred_e_above_hull": old.at[i, "pred_e_above_hull"] if i in old.index else None})
    for i in old.index.difference(cur.index):
        rows.append({"change": "removed", "id": i, "formula": old.at[i, "formula"], "rank": None,
                     "previous_rank": old.at[i, "rank"], "pred_e_above_hull": None,
                     "previous_pred_e_above_hull": old.at[i, "pred_e_above_hull"]})
    table = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("rank", "previous_rank"):
        table[col] = table[col].astype("Int64")  # blank where a candidate is new or removed
    order = {k: n for n, k in enumerate(KINDS)}
    return table.sort_values(["change", "rank", "previous_rank"], key=lambda c: c.map(order) if c.name == "change" else c,
                             na_position="last").reset_index(drop=True)


def describe(changes: Optional[pd.DataFrame], why_not: str = "") -> dict:
    """Counts per kind and a one-line note (`no changes`, or `10 new (mp-1, ...), 3 moved`)."""
    if changes is None:
        return {"compared": False, "note": why_not}
    counts = {k: int((changes["change"] == k).sum()) for k in KINDS}
    parts = []
    for k in KINDS:
        if counts[k]:
            ids = changes.loc[changes["change"] == k, "id"].tolist()
            shown = ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")
            parts.append(f"{counts[k]} {k} ({shown})" if k != "moved" else f"{counts[k]} {k}")
    return {"compared": True, **counts, "note": "; ".join(parts) if parts else "no changes"}
