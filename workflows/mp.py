"""What a screening run does for the Materials Project besides fetching candidates.

One request budget for the whole cluster: the MP API limits requests per key,
so every worker fetching with the key (and this client, fetching reference
phases) draws leases from one pool, a `distributed.Semaphore` that the
scheduler keeps (screening/sources/budget.py says why leases bound the rate).
It is named after the key and the rate, so concurrent runs on one cluster
with the same key and --mp-rate share it too; runs with another --mp-rate
get a pool of their own.

Reference phases from MP's thermo data, through the reference cache: the
chemical systems a run needs that the cache lacks for this database version
are fetched in one request (a list of systems), then kept.
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

from cache.cache_dir import CacheDir
from screening.rank import ReferencePhases
from screening.references import from_thermo, subsystems
from screening.sources import Source, mp_sources
from screening.sources.budget import RequestBudget


def share_budget(client, source: Source) -> None:
    """Make every MP source inside `source` draw from the cluster-wide pool of its key."""
    from distributed import Semaphore

    for mp in mp_sources(source):
        budget = mp.budget
        pool = Semaphore(max_leases=budget.rate, name=f"screen-{budget.name}-{budget.rate}-per-s",
                         scheduler_rpc=client.scheduler, loop=client.loop)
        mp.budget = RequestBudget(budget.rate, budget.name, pool=pool)


def entries_note(source: Source) -> Optional[str]:
    """Which MP entries the run screens, in one line (no network); None for a source without MP entries.
    The source knows which it leaves out; the note also says which option brings GNoME's in."""
    mps = mp_sources(source)
    if not mps:
        return None
    gnome = ("GNoME r2SCAN entries included (--gnome; hypothetical, another functional; see the gnome column)"
             if mps[0].gnome else "GNoME r2SCAN entries left out (--gnome includes them)")
    return f"Materials Project entries: deprecated ones left out; {gnome}"


def thermo_references(source, systems: Iterable[frozenset], cache_dir) -> Tuple[ReferencePhases, str]:
    """(phases, note) for the systems' hulls from the MP source's thermo data, via the cache."""
    wanted = subsystems(systems)
    cache = CacheDir(cache_dir).references()
    description = source.thermo_description()
    thermo = cache.get(description, wanted)
    missing = [s for s in wanted if s not in thermo]
    if missing:
        try:
            fetched = source.fetch_thermo(missing)
        finally:  # leases back before the run ends and the client may close
            source.budget.settle()
        cache.add(description, fetched)
        thermo.update(fetched)
    return from_thermo(source, thermo, fetched=bool(missing))
