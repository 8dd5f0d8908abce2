"""`screen cache`: what a cache directory holds, whether it is sound, and cleaning it up.

Thin on purpose: cache/cache_dir.py's CacheDir owns the layout and does the work;
this is the door the CLI goes through (cli.py imports workflows only), and it words
what the commands print, on the consoles cli.py passes.
"""
from __future__ import annotations

from typing import List, Tuple

import pandas as pd

from cache.cache_dir import CacheDir


def summary(cache) -> dict:
    return CacheDir(cache).summary()


def show_listing(console, cache, limit: int) -> None:
    """`screen cache ls`: the first `limit` stored crystals, and how many more there are."""
    from workflows.report import print_table

    table, total = listing(cache, limit)
    print_table(console, table, title=f"{total} crystals", max_rows=limit)
    if total > len(table):
        console.print(f"... {total - len(table)} more (--limit)", highlight=False)


def listing(cache, limit: int) -> Tuple[pd.DataFrame, int]:
    """(up to `limit` stored crystals: id, key, atoms, edges, store; how many there are in all)."""
    rows, total = [], 0
    for store in CacheDir(cache).checked().graph_stores():
        total += len(store)
        for e in store.entries():
            if len(rows) >= limit:
                break
            rows.append({"id": e["id"], "key": e["key"][:16], "atoms": e["atoms"], "edges": e["edges"],
                         "store": store.root.name})
    return pd.DataFrame(rows, columns=["id", "key", "atoms", "edges", "store"]), total


def verify(cache, repair: bool) -> Tuple[int, List[str], int]:
    """(units checked, problems (removed with repair), unpublished leftovers)."""
    units, problems = CacheDir(cache).verify(repair=repair)
    return units, problems, len(CacheDir(cache).stale())


Lines = List[Tuple[str, str]]  # ("out" or "err", text), in the order they are printed


def verify_report(cache, repair: bool) -> Tuple[Lines, bool]:
    """`screen cache verify`'s lines, and whether it found problems it left in place."""
    units, problems, leftovers = verify(cache, repair=repair)
    lines = [("out", f"{leftovers} unpublished leftovers (interrupted or still-running writers; never "
                     f"served; `screen cache clear --stale` removes them)")] if leftovers else []
    lines += [("err", f"{'removed' if repair else 'problem'}: {p}") for p in problems]
    if repair:
        return lines + [("out", f"repaired: {len(problems)} damaged items removed (re-made by the next run); "
                                f"{units} units checked")], False
    if problems:
        return lines + [("err", "`screen cache verify --repair` removes them")], True
    return lines + [("out", f"ok: {units} units verified")], False


def show_verify(console, err_console, cache, repair: bool) -> bool:
    """`screen cache verify`, its problems on `err_console`; whether it found problems it left in place."""
    lines, failed = verify_report(cache, repair)
    for stream, line in lines:
        (console if stream == "out" else err_console).print(line, highlight=False, soft_wrap=True)
    return failed


def show_info(console, cache) -> None:
    table, lines = info_report(cache)
    console.print(table)
    for line in lines:
        console.print(line, highlight=False)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def info_report(cache):
    """`screen cache info`: a table of sizes and counts, then lines of leftovers and hit rates."""
    from rich.table import Table

    s = summary(cache)
    table = Table(title=f"cache {cache}")
    for col, justify in (("part", "left"), ("entries", "right"), ("size", "right"), ("detail", "left")):
        table.add_column(col, justify=justify)
    for g in s["graph_stores"]:
        f = g["featurizer"]
        table.add_row(g["name"], f"{g['crystals']} crystals", _mb(g["bytes"]),
                      f"cutoff {f['cutoff']} A, {f['max_neighbors']} neighbors; {g['units']} units, "
                      f"{g['atoms']} atoms, {g['edges']} edges")
    table.add_row("structures", f"{s['structures']['entries']} lists", _mb(s["structures"]["bytes"]),
                  "fetched candidate lists")
    table.add_row("mp entries", f"{s['mp_entries']['entries']} entries", _mb(s["mp_entries"]["bytes"]),
                  "Materials Project structures by material_id and last_updated")
    p = s["predictions"]
    table.add_row("predictions", f"{p['models']} models", _mb(p["bytes"]), f"{p['parts']} parts")
    lines = [f"{g['name']}: {g['duplicate_copies']} duplicate copies (not served), {g['stale_items']} "
             f"unpublished leftovers, {g['unreadable_manifests']} unreadable manifests" for g in s["graph_stores"]]
    for part, r in s["hit_rates"].items():
        rate = f"{100 * r['rate']:.0f}%" if r["rate"] is not None else "n/a"
        lines.append(f"{part} cache: {r['hits']} hits, {r['misses']} misses ({rate}) over {s['runs']} runs")
    return table, lines


def clear_showing(console, cache, stale: bool, min_age_s: float, confirm=None) -> bool:
    """`screen cache clear`: the stale leftovers only, or (if `confirm(question)` agrees, or there is
    no one to ask) everything. Whether anything was cleared as asked."""
    check(cache)
    if stale:
        console.print(f"removed {clear_stale(cache, min_age_s)} stale items")
        return True
    if confirm and not confirm(f"remove everything under {cache}?"):
        return False
    clear(cache)
    console.print(f"removed {cache}")
    return True


def clear_stale(cache, min_age_s: float) -> int:
    return CacheDir(cache).checked().clean_stale(min_age_s)


def clear(cache) -> None:
    CacheDir(cache).clear()


def check(cache) -> None:
    CacheDir(cache).checked()
