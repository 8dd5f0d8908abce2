"""The run's files: results, plot, relaxed.jsonl.gz, changes.csv, report.html and summary.json,
written into a staging folder and published as one set, or not at all."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import pandas as pd

from cache.atomic import TMP_PREFIX
from screening.errors import ScreenError
from workflows.cluster.watch import disk_full, is_disk_full

if TYPE_CHECKING:
    from workflows.run.options import PipelineSettings


def write_outputs(ranked: pd.DataFrame, everything: pd.DataFrame, summary: dict, opts: PipelineSettings,
                  relaxed: Optional[List[dict]] = None, changes: Optional[pd.DataFrame] = None) -> dict:
    """results, plot, relaxed.jsonl.gz (with --relax), changes.csv (what changed since the previous
    run), report.html and summary.json, published as one set or not at all.

    Everything is written into a staging folder inside --out first and then moved in by rename,
    so a failure midway (a full disk, a plot that cannot be drawn, a name that cannot be
    replaced) leaves the previous run's set as it was, and no stray part of this one.
    """
    from screening.plots import hull_vs_gap
    from workflows.run.html_report import write_report

    out = Path(opts.out_dir)
    stage = out / f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}"
    names = {"results": f"results.{opts.output_format}"}
    try:
        stage.mkdir(parents=True)
        if opts.output_format == "parquet":
            ranked.to_parquet(stage / names["results"], index=False)
        else:
            ranked.to_csv(stage / names["results"], index=False)
        if len(everything) and "pred_band_gap" in everything:
            source = summary["source"].split(" ")[0]  # without the data hash
            if len(source) > 40:
                source = "..." + source[-37:]
            names["plot"] = "hull_vs_gap.png"
            hull_vs_gap(everything, stage / names["plot"], label_top=min(opts.rank.top or 10, 10),
                        title=f"{opts.query}: {len(everything)} candidates from {source}")
        if relaxed:
            import gzip

            names["relaxed"] = "relaxed.jsonl.gz"
            lines = "".join(json.dumps(r, default=str) + "\n" for r in relaxed)
            (stage / names["relaxed"]).write_bytes(gzip.compress(lines.encode(), 3))
        if changes is not None:
            names["changes"] = "changes.csv"
            changes.to_csv(stage / names["changes"], index=False)
        names["report"] = "report.html"
        write_report(stage / names["report"], ranked, summary, opts.rank.gap_threshold, opts.query,
                     plot=stage / names["plot"] if "plot" in names else None, changes=changes)
        names["summary"] = "summary.json"
        # relative to --out: the folder is the same set whichever working directory reaches it (or it moves)
        (stage / "summary.json").write_text(json.dumps(dict(summary, files=names), indent=2, default=str))
        files = {k: str(out / v) for k, v in names.items()}
        _publish(stage, out, list(names.values()))
    except OSError as e:
        if is_disk_full(e):
            raise ScreenError(f"`out` {out}: {disk_full(e)}; the previous results were kept") from None
        raise ScreenError(f"`out` {out}: cannot write the results ({e.strerror or e}); "
                          f"the previous results were kept") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return files


OUTPUT_FILES = ("results.csv", "results.parquet", "hull_vs_gap.png", "relaxed.jsonl.gz", "changes.csv",
                "report.html", "summary.json")


def _publish(stage: Path, out: Path, names: List[str]) -> None:
    """Swap the previous set in `out` for the one in `stage` by renames, undone if one fails.

    The previous set's files go into stage/previous/ first (a file of it that this set lacks,
    say results.parquet after a csv run, goes too), then the new files move in, summary.json last.
    Whatever stops it midway (an OSError, Ctrl-C's KeyboardInterrupt, any exception) puts the
    previous set back before it goes on: the caller's cleanup removes the stage, previous/ with it.
    """
    previous = stage / "previous"
    previous.mkdir()
    moved_out: List[str] = []
    moved_in: List[str] = []
    try:  # each name noted before its rename: an interrupt may come between the two
        for name in OUTPUT_FILES:
            if (out / name).is_file():  # never a folder of the user's that happens to have this name
                moved_out.append(name)
                os.replace(out / name, previous / name)
        for name in sorted(names, key=lambda n: n == "summary.json"):
            moved_in.append(name)
            os.replace(stage / name, out / name)
    except BaseException:
        for name in moved_in:
            if not (stage / name).exists():  # (else it never moved)
                os.replace(out / name, stage / name)
        for name in moved_out:
            if (previous / name).exists():
                os.replace(previous / name, out / name)
        raise
