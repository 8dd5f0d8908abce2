"""report.html: a run's results as one page that opens offline, from a laptop's file browser or
an e-mail attachment: the query and provenance, what changed since the previous run, the plot,
and the ranked table, sortable by a click on a column header.

Self-contained on purpose: the style and the script are inline, the plot is embedded as a
base64 PNG, and nothing is fetched (no CDN, no server), so the page still opens when the run's
folder is copied elsewhere or the machine has no network.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import List, Optional

import pandas as pd

from workflows.report import class_disagrees, class_note, known_status

# results column -> header; the σ of a column follows it. Columns not named here follow these,
# in their results order, under their own name (a newer column shows without a change here).
HEADERS = {
    "rank": "#", "formula": "formula", "id": "id", "stage": "stage", "pred_p_stable": "P(stable)",
    "pred_e_above_hull": "E_hull", "dft_e_above_hull": "DFT E_hull", "known": "known",
    "pred_band_gap": "Eg", "pred_class": "class", "pred_p_metal": "P(metal)",
    "pred_formation_energy_per_atom": "ΔEf", "pred_efermi": "EF",
    "dft_formation_energy_per_atom": "DFT ΔEf", "dft_band_gap": "DFT Eg", "dft_efermi": "DFT EF",
    "flags": "flags",
}
# the same for every row of a run: shown once, under provenance
PER_RUN = ("structure_key", "model_hash", "featurizer")
# rows in the page: a whole-set run without --top ranks tens of thousands, a page of tens of
# megabytes that a browser opens slowly; results.csv keeps them all
MAX_ROWS = 5000

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em 2em;color:#222;max-width:100em}
h1{font-size:1.4em;margin-bottom:.2em} h2{font-size:1.1em;margin-top:1.6em}
.lead{color:#444;margin-top:0} .note{color:#555;font-size:.9em;margin:.2em 0}
table{border-collapse:collapse;font-size:.85em}
th,td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none;background:#f3f3f3;position:sticky;top:0}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
tr:hover td{background:#f7fbff} th.sigma,td.sigma{color:#666}
dl{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;font-size:.9em}
dt{font-weight:600} dd{margin:0;word-break:break-all}
img{max-width:100%;height:auto;border:1px solid #eee}
"""

# Sorts the rows of a table.sortable by the clicked column: numbers (data-v) as numbers, text as
# text, blanks last either way; a second click reverses. No library: the page must open offline.
SCRIPT = """
(function () {
  function key(cell, numeric) {
    var v = cell.getAttribute('data-v');
    if (v === null || v === '') return null;
    return numeric ? parseFloat(v) : v.toLowerCase();
  }
  function sortBy(table, th) {
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute('data-type') === 'num';
    var ascending = th.getAttribute('aria-sort') !== 'ascending';
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
      if (x === null || y === null) return (x === null) - (y === null);
      var order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.addEventListener('click', function () { sortBy(table, th); });
    });
  });
})();
"""


def write_report(path, ranked: pd.DataFrame, summary: dict, gap_threshold: float, query: str,
                 plot: Optional[Path] = None, changes: Optional[pd.DataFrame] = None,
                 max_rows: int = MAX_ROWS) -> Path:
    """The page for a run: `ranked` is results' table, `query` the query as typed."""
    s = summary
    parts = [f"<h1>{_e(query)}</h1>",
             f'<p class="lead">{s["ranked"]} of {s["candidates"]} candidates, {_e(s["ranked_by"])}; '
             f"E_hull and ΔEf in eV/atom, Eg and EF in eV; predicted unless DFT; σ: one standard deviation.</p>"]
    parts += _changes(s, changes)
    if plot is not None and Path(plot).is_file():
        data = base64.b64encode(Path(plot).read_bytes()).decode()
        parts += ["<h2>Predicted E_hull against band gap</h2>",
                  f'<img id="plot" alt="predicted energy above hull against predicted band gap" '
                  f'src="data:image/png;base64,{data}">']
    parts += [f"<h2>Ranked candidates ({len(ranked)})</h2>",
              '<p class="note">Click a column header to sort by it; click again to reverse.</p>']
    shown = ranked.head(max_rows)
    if len(shown) < len(ranked):
        parts.append(f'<p class="note">The first {len(shown)} of the {len(ranked)} ranked; results holds them all '
                     f"(--top N keeps the best N).</p>")
    if "pred_class" in ranked:
        parts.append(f'<p class="note">{_e(class_note(shown, gap_threshold))}</p>')
    parts.append(_results_table(shown, gap_threshold))
    parts += ["<h2>Query and provenance</h2>", _provenance(s, query)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>screen: {_e(query)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


def _results_table(ranked: pd.DataFrame, gap_threshold: float) -> str:
    table = ranked.copy()
    status = known_status(table)
    if status is not None:
        table["known"] = status
    return _sortable("results", table, _columns(table), _header, class_disagrees(table, gap_threshold))


def _sortable(table_id: str, table: pd.DataFrame, columns: List[str], header=str,
              marks: Optional[pd.Series] = None) -> str:
    """A table the page's script sorts by a click on a header (data-type says how: num or text)."""
    head = "".join(f'<th data-col="{_e(c)}" data-type="{"num" if _numeric(table[c]) else "text"}"'
                   f'{" class=sigma" if c.endswith("_std") else ""}>{_e(header(c))}</th>' for c in columns)
    # cells column by column (a Python list each): per-cell .iloc made a 5,000-row page take seconds
    cells = [_column_cells(table[c], marks if c == "pred_class" else None) for c in columns]
    rows = ["<tr>" + "".join(row) + "</tr>" for row in zip(*cells)]
    return (f'<table id="{table_id}" class="sortable" data-rows="{len(table)}"><thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n" + "\n".join(rows) + "\n</tbody></table>")


def _column_cells(column: pd.Series, marks: Optional[pd.Series]) -> List[str]:
    """A column's <td>s: numbers right-aligned with their full value to sort by (data-v), text escaped;
    a * after a class the gap regression disagrees with (marks)."""
    values = column.tolist()
    if _numeric(column):
        kind = "num sigma" if str(column.name).endswith("_std") else "num"
        return [f'<td class="{kind}" data-v="{"" if pd.isna(v) else repr(float(v))}">{_cell(v)}</td>' for v in values]
    starred = marks.tolist() if marks is not None else [False] * len(values)
    return [f'<td data-v="{_e("" if pd.isna(v) else str(v))}">{_e(_cell(v) + ("*" if star else ""))}</td>'
            for v, star in zip(values, starred)]


def _columns(table: pd.DataFrame) -> List[str]:
    """The named columns first (each followed by its σ), then the rest; per-run values left out,
    and the source too when every row has the same."""
    leave = set(PER_RUN) | ({"source"} if table.get("source") is not None and table["source"].nunique() <= 1 else set())
    order = [c for c in HEADERS if c in table] + [c for c in table if c not in HEADERS]
    out = []
    for c in order:
        if c in leave or c in out or (c.endswith("_std") and c[:-4] in table):
            continue
        out.append(c)
        if f"{c}_std" in table and c != "pred_p_metal":  # P(metal)'s member spread says little here
            out.append(f"{c}_std")
    return out


def _header(column: str) -> str:
    if column.endswith("_std"):
        return "σ " + HEADERS.get(column[:-4], column[:-4])
    return HEADERS.get(column, column)


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _changes(s: dict, changes: Optional[pd.DataFrame]) -> List[str]:
    note = (s.get("changes") or {}).get("note")
    if not note:
        return []
    parts = ["<h2>Changes since the previous run</h2>", f'<p class="note">{_e(note)}</p>']
    if changes is not None and len(changes):
        parts.append(_sortable("changes", changes, [str(c) for c in changes.columns]))
    return parts


def _provenance(s: dict, query: str) -> str:
    p = s.get("provenance") or {}
    versions = p.get("versions") or {}
    items = [
        ("query", f"{query} (parsed as {s.get('query')})"),
        ("source", s.get("source")),
        ("source settings", json.dumps(s["source_settings"]) if s.get("source_settings") else None),
        ("source note", s.get("source_note")),
        ("model", s.get("model")), ("model hash", s.get("model_hash")),
        ("featurizer", json.dumps(s.get("featurizer")) if s.get("featurizer") else None),
        ("reference phases", s.get("reference_note")), ("uncertainty", s.get("uncertainty_note")),
        ("domain", s.get("domain_note")), ("relaxation", s.get("relax_note")),
        # what the flags and columns of known polymorphs and thin systems mean, as the terminal says it
        ("known polymorphs", s.get("anchor_note")), ("thin reference systems", s.get("thin_note")),
        ("counts", f"{s.get('candidates')} candidates, {s.get('unusable')} unusable, {s.get('featurized')} "
                   f"featurized, {s.get('inferred')} inferred, {s.get('flagged')} flagged"),
        ("wall time", f"{s.get('wall_seconds')} s on {s.get('workers')} workers"),
        ("batch job", p.get("batch_job") or "none (an interactive run)"),
        ("hosts", ", ".join([p.get("client_host") or "?"] + [h for h in p.get("worker_nodes", [])
                                                            if h != p.get("client_host")])),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
    ]
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items if v not in (None, "")) + "</dl>"


def _e(value) -> str:
    return html.escape(str(value), quote=True)
