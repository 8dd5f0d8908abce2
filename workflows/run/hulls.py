"""Hull energies of a run's candidates: per chemical system, cached per version of the reference
data, and the missing ones computed on the workers in parallel.

A system's hull (screening/hull.py) is the slow part
of ranking: one per chemical system, and one more per known crystal on its hull. screening.rank.system_hull
turns it into plain numbers that HullTable reads back exactly, so a warm run builds no
hull and does not even read the reference phases when they come from a CSV (the
shipped table, or the run's own CSV source): the file's hash is the version.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Optional, Tuple

from cache.cache_dir import CacheDir
from screening.formula import formula_info
from screening.rank import HullTable, ReferencePhases, reference_name, system_hull
from screening.references import SHIPPED, _csv_path, csv_note, csv_phase_count, csv_version, load_references
from screening.sources import open_source
from workflows import mp
from workflows.allocator import reuse_freed_memory
from workflows.cluster.watch import each_result, window_of

HULL_CHUNK = 100  # systems per task: a few tenths of a second of hulls


def choose_reference(reference: Optional[str], source: Optional[str]) -> Optional[str]:
    """The reference phases of a run: `reference` if given, else the run's own CSV source, MP's for an mp
    run, else the shipped table (None without one)."""
    if reference:
        return reference
    if _csv_path(source):
        return source
    if source == "mp":
        return "mp"
    if SHIPPED.exists():
        return f"local:{SHIPPED}"
    return None


def hull_task(references, jobs: List[tuple], cache_dir, version: str) -> Dict[str, dict]:
    """Answers of system_hull for (system, [(formula, id)], cached answer or None) jobs, each written to the
    cache. `references`: the ReferencePhases, or the spec of a CSV that this worker reads itself (once)."""
    reuse_freed_memory()  # pymatgen's many small arrays, in a Dask worker (workflows/allocator.py)
    if isinstance(references, str):
        references = _csv_references(references, version)
    cache = CacheDir(cache_dir).hulls(version)
    out = {}
    for system, members, have in jobs:
        names = [reference_name(i, formula_info(f)[1]) for f, i in members if i is not None]
        out[system] = system_hull(references, frozenset(system.split("-")), [f for f, _ in members], names, have)
        cache.put(system, out[system])
    return out


def hulls(client, opts, source, members: Dict[str, List[tuple]], wait: dict) -> Tuple[HullTable, str, int]:
    """(HullTable of the systems, reference note, number of reference phases); `members` is
    {system "Fe-Li-O": [(formula, id), ...]} of the candidates."""
    spec = choose_reference(opts.reference, opts.source or source.name)
    version = csv_version(spec)
    references = None
    if version is not None:
        note = csv_note(spec)
    else:  # MP's thermo data (cached by its own cache), another source, or nothing: read them now
        references, note, version = _load(client, opts, source, spec, members)
    cache = CacheDir(opts.cache_dir).hulls(version)
    answers = cache.get_many(members)
    todo = [s for s in members if _lacks(answers.get(s), members[s])]
    count = len(references) if references is not None else cache.phases()
    if count is None:  # a CSV's phases, counted here; the workers that need them read them themselves
        count = csv_phase_count(spec)
        cache.put_phases(count)
    if todo:
        # The phases go to each worker once: a CSV's spec (each worker reads the file: the client never
        # holds them), else scattered. Not as an argument of every task: the scheduler would unpickle
        # and keep a copy per task (docs/run_speed.md).
        shared = spec if references is None else \
            client.scatter(references.subset(frozenset(s.split("-")) for s in todo), broadcast=True, hash=False)

        def job(chunk):
            return lambda: client.submit(hull_task, shared, [(s, members[s], answers.get(s)) for s in chunk],
                                         opts.cache_dir, version, pure=False)
        jobs = [job(todo[i:i + HULL_CHUNK]) for i in range(0, len(todo), HULL_CHUNK)]
        for done in each_result(client, jobs, window_of(client), **wait):
            answers.update(done)
        if references is not None:
            shared.release()
    return HullTable(answers), note, count


@functools.lru_cache(1)  # a worker keeps the phases of the latest version (the file's hash) only
def _csv_references(spec: str, version: str) -> ReferencePhases:
    return load_references(spec, [])[0]


def _lacks(answer, members) -> bool:
    """Does a cached answer miss a formula or a leave-one-out hull these candidates need?"""
    if answer is None or "thin_drop" not in answer:  # (answers cached before thin systems were probed)
        return True
    if any(f not in answer["formulas"] for f, _ in members):
        return True
    on_hull, loo = set(answer["on_hull"]), answer["loo"]
    names = (reference_name(i, answer["formulas"][f][0]) for f, i in members if i is not None)
    return any(name in on_hull and name not in loo for name in names)


def _load(client, opts, source, spec, members):
    """(phases, note, version) read now."""
    systems = {frozenset(s.split("-")) for s in members}
    if spec == "mp":  # MP's thermo data of the same database, with the run's choice of entries and budget
        if source.name != "mp":
            source = open_source("mp", gnome=opts.gnome, rate=opts.mp_rate)
            mp.share_budget(client, source)
        return (*mp.thermo_references(source, systems, opts.cache_dir), source.thermo_description())
    version = "none" if spec is None else open_source(spec, lazy=True).describe()
    return (*load_references(spec, systems), version)
