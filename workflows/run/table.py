"""The run's table, assembled on the client from the partitions' keyed rows (records.Row) and their
predictions: no structure comes to the client (but the relaxed ones of `relax` all, for relaxed.jsonl.gz).
Each row gets its stage, its domain and relax flags, the predictions, the source's known values and
the provenance of its prediction."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pandas as pd

from screening.domain import UNRELAXED, Domain, domain_path
from screening.errors import ScreenError
from screening.model_info import prediction_columns
from screening.sources.base import known_column
from workflows.run import funnel
from workflows.run.records import Keyed, Row


@dataclass
class Made:
    """The assembled table and what the later stages need of its making."""
    table: pd.DataFrame
    domain: Optional[Domain]
    errors: List[str]  # one line per unusable candidate
    candidates: int  # every candidate fetched, usable or not
    rows: int  # rows made, before `drop_flagged`
    flagged: int
    system_of: Dict[str, str] = field(default_factory=dict)  # formula -> element set "Fe-Li-O"
    where: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # id -> (partition, position): for the funnel
    relaxed_structures: List[dict] = field(default_factory=list)  # relaxed.jsonl.gz's lines


def assemble(run, feat_results: List[Keyed], infer_results: List[dict], relax_results: List[dict]) -> Made:
    opts, ckpt = run.opts, run.checked.model
    n_candidates = sum(len(fr.rows) + len(fr.errors) for fr in feat_results)
    if not n_candidates:
        raise ScreenError(f"`query` {opts.query}: no candidates found in {run.description}")
    made = Made(None, Domain.read(domain_path(opts.model)), [], n_candidates, 0, 0)
    relaxed_all = run.checked.relax.mode == "all"
    hypothetical = run.checked.source.hypothetical  # every row's candidate comes from this source
    provenance = {"model_hash": ckpt.short_hash,
                  "featurizer": f"v{run.featurizer.version}-{run.featurizer.fingerprint()}"}
    rows = []
    for p, (fr, ir, rx) in enumerate(zip(feat_results, infer_results, _per_partition(relax_results, run.parts))):
        made.errors.extend(fr.errors)
        for r in fr.rows:
            rc, info = rx[r.i]
            made.system_of[r.formula] = r.system
            made.where[r.id] = (p, r.i)  # for the funnel, which fetches the candidates it relaxes again
            stage = funnel.stage_of(hypothetical, relaxed=relaxed_all and "relax_error" not in info)
            row = _row(r, info, stage, made.domain, relaxed_all, ir["predictions"][r.key], ckpt.outputs)
            if relaxed_all and "relax_error" not in info:
                made.relaxed_structures.append({"source": r.source, "id": r.id, "formula": r.formula,
                                                "structure_key": r.key, **info, "structure": rc.structure.as_dict()})
            row.update(provenance)
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        raise ScreenError(f"`query` {opts.query}: none of the {n_candidates} candidates could be featurized "
                          f"(first problem: {made.errors[0] if made.errors else 'unknown'})")
    made.rows = len(table)  # before drop_flagged: the cache hits are counted over every row made
    made.flagged = int((table["flags"] != "").sum())
    if opts.drop_flagged:
        table = table[table["flags"] == ""].reset_index(drop=True)
        if table.empty:
            raise ScreenError(f"`drop_flagged`: all {made.flagged} candidates are flagged; nothing left to rank")
    made.table = table
    return made


def _row(r: Row, info: dict, stage: str, domain: Optional[Domain], relaxed_all: bool, values, outputs) -> dict:
    """One candidate's row: what it is, its stage and flags, its relax columns, predictions and known values."""
    row = {"source": r.source, "id": r.id, "formula": r.formula, "stage": stage}
    flags = [UNRELAXED] * (stage == funnel.UNRELAXED) if domain is None else domain.flags(
        r.system.split("-"), r.isolated, unrelaxed=stage == funnel.UNRELAXED, density=r.density)
    flags += funnel.flags_of(info)
    if relaxed_all:
        row.update({k: v for k, v in info.items() if k != "relax_cached"})
    row["flags"] = "; ".join(flags)
    values = values[None, :]
    n = len(outputs)
    row.update({c: float(v[0]) for c, v in prediction_columns(outputs, values[:, :n], values[:, n:]).items()})
    for name, value in r.known.items():
        row[known_column(name)] = value
    row["structure_key"] = r.key
    return row


def _per_partition(relax_results: list, parts: list) -> list:
    """Per partition, (relaxed candidate, relax info) for each candidate; (None, {}) without `relax` all
    (with it, parts are the partitions' sizes)."""
    if not relax_results:
        return [defaultdict(lambda: (None, {})) for _ in parts]
    flat = [(c, info) for r in relax_results for c, info in zip(r["candidates"], r["relax"])]
    out, i = [], 0
    for size in parts:
        out.append(flat[i:i + size])
        i += size
    return out
