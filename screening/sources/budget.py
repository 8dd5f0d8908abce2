"""A request budget: at most `rate` requests in any one second, however many threads,
processes or machines send them.

Every request takes a lease from a pool of `rate` leases before it is sent and
hands it back one second after its answer (or its failure) came back. The
requests a server receives within any one second were all sent before the last
of them arrived, and each holds its lease for a full second after it arrived,
so at that moment they all hold a lease at once: never more than `rate` of
them. This needs no clock shared between machines and does not depend on
network delays; a sender never waits while fewer than `rate` requests were
sent in the last second.

The pool is either this process's (a threading semaphore, shared by every copy
of a budget with the same name in the process) or one that the caller passes
in: workflows pass a `distributed.Semaphore`, which the Dask scheduler keeps
for the whole cluster (workflows/mp.py). This module knows nothing of Dask; a
pool is anything with acquire() and release().
"""
from __future__ import annotations

import contextlib
import threading
from typing import Dict, Tuple

WINDOW_S = 1.0  # the budget is per second

_LOCAL_POOLS: Dict[Tuple[str, int], threading.BoundedSemaphore] = {}
_LOCAL_LOCK = threading.Lock()


class RequestBudget:
    def __init__(self, rate: int, name: str, pool=None):
        if int(rate) != rate or rate < 1:
            raise ValueError(f"a request budget needs a whole number of requests per second >= 1, not {rate}")
        self.rate = int(rate)
        self.name = name  # what requests share the budget (an API key's hash)
        self.pool = pool  # None: this process's pool for (name, rate)
        self._pending: set = set()  # hand-backs not yet done, in this process
        self._lock = threading.Lock()

    def _pool(self):
        if self.pool is not None:
            return self.pool
        with _LOCAL_LOCK:
            return _LOCAL_POOLS.setdefault((self.name, self.rate), threading.BoundedSemaphore(self.rate))

    @contextlib.contextmanager
    def lease(self):
        """Hold one lease around one request; it goes back to the pool a second after the request ends."""
        pool = self._pool()
        pool.acquire()
        try:
            yield
        finally:
            timer = threading.Timer(WINDOW_S, self._hand_back, (pool,))
            timer.daemon = True  # a process that exits drops its pending hand-backs
            with self._lock:
                self._pending.add(timer)
            timer.start()

    def _hand_back(self, pool) -> None:
        try:
            pool.release()
        except Exception:  # noqa: BLE001 - the client or worker closed meanwhile; the scheduler times the lease out
            pass
        with self._lock:
            self._pending.discard(threading.current_thread())

    def settle(self) -> None:
        """Wait (at most a second) until this process's leases are back, so that nothing is handed back
        to a cluster that closed meanwhile (distributed logs that as an error)."""
        with self._lock:
            pending = list(self._pending)
        for timer in pending:
            timer.join()

    def __getstate__(self):
        return {"rate": self.rate, "name": self.name, "pool": self.pool}

    def __setstate__(self, state):
        self.__init__(**state)

    def describe(self) -> str:
        where = "shared by the cluster" if self.pool is not None else "in this process"
        return f"at most {self.rate} requests per second per key ({where})"

    def __repr__(self) -> str:
        return f"RequestBudget({self.rate}/s, {self.name!r}, {'shared' if self.pool is not None else 'local'})"

