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
    keep = ["id", "formula", "rank", "structure_key", "pred_e_above_hull"]
    cur = current.reindex(columns=keep)
    old = previous.reindex(columns=keep)
    both = cur.merge(old, on="id", how="outer", suffixes=("", "_old"), indicator=True)
    kind = pd.Series(None, index=both.index, dtype=object)
    there = both["_merge"] == "both"
    kind[both["_merge"] == "left_only"] = "new"
    kind[both["_merge"] == "right_only"] = "removed"
    changed = there & (both["structure_key"] != both["structure_key_old"])
    kind[changed] = "changed"
    kind[there & ~changed & (both["rank"] != both["rank_old"])] = "moved"
    both = both[kind.notna()].assign(change=kind[kind.notna()])
    removed = both["change"] == "removed"
    table = pd.DataFrame({
        "change": both["change"], "id": both["id"],
        "formula": both["formula"].where(~removed, both["formula_old"]),
        "rank": both["rank"].where(~removed), "previous_rank": both["rank_old"],
        "pred_e_above_hull": both["pred_e_above_hull"].where(~removed),
        "previous_pred_e_above_hull": both["pred_e_above_hull_old"]}, columns=COLUMNS)
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
