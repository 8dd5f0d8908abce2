"""What `screen run` shows on the terminal: its progress while it runs, then the table and notes."""
from __future__ import annotations

STAGES = {"fetch": "fetching candidates", "relax": "relaxing candidates (chunks)",
          "infer": "screening partitions", "infer_relaxed": "predicting the relaxed candidates"}

COLUMNS = {  # result column -> short terminal header
    "rank": "#", "formula": "formula", "id": "id", "pred_p_stable": "P(stable)", "pred_e_above_hull": "E_hull",
    "dft_e_above_hull": "DFT E_hull", "known": "known", "stage": "stage", "pred_band_gap": "Eg",
    "pred_class": "class", "pred_p_metal": "P(metal)", "pred_formation_energy_per_atom": "dEf", "pred_efermi": "EF",
    "dft_formation_energy_per_atom": "DFT dEf", "dft_band_gap": "DFT Eg",
    "flags": "flags"}


def progress_lines(console):
    """Progress for output that is not a terminal (a log, CI, a batch job): a line when a stage
    starts, then at most one every 10 s, and the last one."""
    import time

    t0, last, fetching = time.time(), [0.0], [False]

    def show(stage: str, done: int, total: int) -> None:
        now = time.time()
        if stage == "fetch":  # a run may announce its fetch more than once (a plan, then the fetch)
            if not fetching[0]:
                console.print(STAGES[stage], highlight=False)
            fetching[0] = True
        elif done in (0, total) or now - last[0] >= 10:
            console.print(f"{STAGES.get(stage, stage)}: {done}/{total} ({now - t0:.0f} s)", highlight=False)
            last[0] = now
    return show


def run_showing_progress(console, settings) -> None:
    """`screen run`: check the settings, connect to the cluster, screen with progress, print the results."""
    from workflows.cluster.connection import connect, dashboard_link
    from workflows.run.options import checked

    opts, spec = checked(settings)
    with connect(spec) as client:
        # (with `runner`, only the client task gets here: the others ran their part inside connect)
        console.print(f"dask dashboard: {dashboard_link(client)}", highlight=False)
        result = screen_showing_progress(console, client, opts)
    print_run(console, result, opts)


def screen_showing_progress(console, client, opts):
    """The run on `client`, with its progress: a bar on a terminal, lines in a log."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workflows.run.pipeline import run_screening, source_notes

    for note in source_notes(opts):
        console.print(note, highlight=False)
    if not console.is_terminal:
        return run_screening(client, opts, progress=progress_lines(console))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        job = bar.add_task("screening partitions", total=None)
        return run_screening(client, opts, progress=lambda stage, d, n: bar.update(
            job, description=STAGES.get(stage, stage), completed=d, total=n))


def print_run(console, result, opts) -> None:
    """The ranked table (its first 25 rows) and the run's notes, as `screen run` ends."""
    from workflows.report import class_note, known_status, print_table, shown_class, with_error_bars

    s = result.summary
    shown = with_error_bars(result.table.drop(columns=["pred_p_metal_std"], errors="ignore"))
    status = known_status(result.table)
    if status is not None:
        shown["known"] = status
    if "pred_class" in shown:
        shown["pred_class"] = shown_class(result.table, opts.rank.gap_threshold)
    shown = shown[[c for c in COLUMNS if c in shown.columns]].rename(columns=COLUMNS)
    print_table(console, shown, max_rows=25,  # the query as typed (Li-*-O), not as parsed (Li-O-*)
                title=f"{opts.query}: {s['ranked']} of {s['candidates']} candidates, {s['ranked_by']} "
                      f"(E_hull, dEf in eV/atom; Eg, EF in eV; predicted unless DFT)")
    if "pred_class" in result.table:
        console.print(class_note(result.table.head(25), opts.rank.gap_threshold), highlight=False)
    console.print(f"featurized {s['featurized']}, inferred {s['inferred']} "
                  f"(cache hits: {s['graph_cache_hits']} graphs, {s['prediction_cache_hits']} predictions); "
                  f"{s['unusable']} unusable; {s['wall_seconds']:.1f}s", highlight=False)
    if s["unusable"]:  # refused inputs (unreadable, atoms on top of each other): named, never predicted
        console.print(f"not screened: {s['unusable']} unusable candidates; first: {s['unusable_first'][0]}",
                      highlight=False, soft_wrap=True)
    if s.get("source_note"):
        console.print(s["source_note"], highlight=False)
    if s.get("rejection_note"):
        console.print(s["rejection_note"], highlight=False)
    if "mp_fetched" in s:
        console.print(f"Materials Project entries: {s['mp_fetched']} fetched in full, {s['mp_cached']} from the "
                      f"entry cache", highlight=False)
    console.print(s["reference_note"], highlight=False)
    console.print(s["uncertainty_note"], highlight=False)
    console.print(s["domain_note"], highlight=False)
    if s.get("relax"):
        console.print(s["relax_note"], highlight=False)
    for note in ("anchor_note", "thin_note"):
        if s.get(note):
            console.print(s[note], highlight=False)
    console.print(f"changes since the previous run: {s['changes']['note']}", highlight=False)
    for name, path in result.files.items():
        console.print(f"{name}: {path}", highlight=False)
