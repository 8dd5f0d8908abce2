"""Waiting for Dask tasks, the one way workflows do it: never silently for ever, errors in one line.

`wait_all(client, futures)` returns the results in order, and fails with a ScreenError when
  - no worker has been alive for `no_worker_timeout` seconds (all killed, none could start,
    a batch job never scheduled): the run says so instead of waiting for ever;
  - a task killed its worker as many times as Dask allows (KilledWorker): out of memory, or a crash;
  - a task raised: a ScreenError passes as it is (it is already one line); anything else becomes
    one line, with the full traceback written to `log` for a bug report;
  - the disk filled up under a cache on a worker (one line naming the path).

`each_result(client, jobs, window)` is the same for many tasks whose inputs and results need
not all exist at once: a few submitted at a time, each result handed on as it comes.
"""
from __future__ import annotations

import errno
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from screening.errors import ScreenError

NO_WORKER_TIMEOUT_S = 60.0
# Futures are polled (their status is a local attribute): from every 10 ms after progress, backing
# off to every 0.2 s while nothing finishes, so a short stage is not padded by a fixed 0.2 s nap.
_POLL_MIN_S, _POLL_MAX_S = 0.01, 0.2
_WORKER_CHECK_S = 1.0


def wait_all(client, futures: Sequence, no_worker_timeout: float = NO_WORKER_TIMEOUT_S,
             on_done: Optional[Callable[[int, int], None]] = None, log: Optional[Path] = None) -> List:
    """Every future's result, in order; the first failure is a ScreenError (see the module doc)."""
    done = 0
    for f in as_finished(client, futures, no_worker_timeout):
        if f.status != "finished":
            raise task_error(f, log) from None
        done += 1
        if on_done:
            on_done(done, len(futures))
    return client.gather(list(futures))


def each_result(client, jobs: Sequence[Callable[[], object]], window: int,
                no_worker_timeout: float = NO_WORKER_TIMEOUT_S,
                on_done: Optional[Callable[[int, int], None]] = None, log: Optional[Path] = None) -> Iterator:
    """The result of each job (a function that submits one task and returns its future), in the
    order they finish, with at most `window` submitted and unfinished at a time, and each future
    released once its result is here: the client, the scheduler and the workers hold the inputs
    and results of those few tasks, not of every job. Failures as in wait_all."""
    jobs = list(jobs)
    flying = [job() for job in jobs[:window]]
    queued = iter(jobs[window:])
    done = 0
    while flying:
        f = next(as_finished(client, flying, no_worker_timeout))
        if f.status != "finished":
            raise task_error(f, log) from None
        result = f.result()
        flying.remove(f)
        f.release()
        nxt = next(queued, None)
        if nxt is not None:
            flying.append(nxt())
        done += 1
        if on_done:
            on_done(done, len(jobs))
        yield result


def window_of(client, per_thread: int = 2) -> int:
    """Tasks to keep submitted so that every worker thread has one running and one queued."""
    return max(4, per_thread * sum(client.nthreads().values()))


def as_finished(client, futures: Sequence, no_worker_timeout: float = NO_WORKER_TIMEOUT_S) -> Iterator:
    """Yield each future once it is finished, failed or cancelled; a ScreenError when no worker
    has been alive for no_worker_timeout seconds while some are still pending."""
    pending = list(futures)
    alive_at = checked_at = time.monotonic()
    nap = _POLL_MIN_S
    while pending:
        still = []
        for f in pending:
            if f.status in ("finished", "error", "cancelled"):
                yield f
            else:
                still.append(f)
        nap = _POLL_MIN_S if len(still) < len(pending) else min(_POLL_MAX_S, nap * 1.5)
        pending = still
        if not pending:
            break
        now = time.monotonic()
        if now - checked_at >= _WORKER_CHECK_S:
            checked_at = now
            if _workers(client):
                alive_at = now
            elif now - alive_at >= no_worker_timeout:
                raise ScreenError(f"no Dask worker has been alive for {no_worker_timeout:g} s, with {len(pending)} "
                                  f"of {len(futures)} tasks left (workers killed, or they cannot start: check "
                                  f"--memory and the scheduler's log)")
        time.sleep(nap)


def _workers(client) -> int:
    try:
        return len(client.nthreads())
    except (OSError, TimeoutError) as e:
        raise ScreenError(f"lost the Dask scheduler ({type(e).__name__}: {e})") from None


def task_error(future, log: Optional[Path] = None) -> ScreenError:
    """One line for a failed future; the traceback of an unexpected error goes to `log`."""
    from dask.utils import key_split
    from distributed import KilledWorker

    name = key_split(future.key)
    if future.status == "cancelled":
        return ScreenError(f"{name}: the task was cancelled (scheduler restarted or the cluster shut down)")
    exc = future.exception()
    if isinstance(exc, ScreenError):
        return exc
    if isinstance(exc, KilledWorker):
        import dask

        tries = dask.config.get("distributed.scheduler.allowed-failures")
        return ScreenError(f"{name}: the task killed its worker {tries + 1} times (out of memory for --memory, "
                           f"or a crash in compiled code); nothing was written")
    if is_disk_full(exc):
        return ScreenError(disk_full(exc))
    where = write_log(log, exc, future.traceback()) if log else None
    return ScreenError(f"{name} failed on a worker: {type(exc).__name__}: {_short(exc)}"
                       + (f" (traceback in {where})" if where else ""))


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno == errno.ENOSPC


def disk_full(e: OSError) -> str:
    where = f" writing {e.filename}" if e.filename else ""
    return (f"no space left on device{where}; free some space (or use another --cache/--out) and run again: "
            f"nothing partial is served, and `screen cache clear --stale` removes the leftovers")


def write_log(log: Path, exc: BaseException, tb=None) -> Optional[Path]:
    """Append the traceback to `log`; None if even that cannot be written (disk full, say)."""
    try:
        log = Path(log)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            f.write("".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__)))
        return log
    except OSError:
        return None


def unexpected(exc: BaseException, log: Path) -> Tuple[str, int]:
    """What the user reads of an error `screen` did not expect, and the exit status: a full disk is
    theirs to fix (2); anything else is a bug (3), its traceback appended to `log` for the report."""
    if is_disk_full(exc):
        return disk_full(exc), 2
    where = write_log(log, exc)
    return (f"unexpected {type(exc).__name__}: {_short(exc)}"
            + (f" (traceback in {where}; please report it)" if where else "")), 3


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
