"""The HTTP side of `source` mp: one key's session with the Materials Project API through the
official mp-api client, and what that client does not do for us:

  - the heartbeat mp-api sends on start has no timeout, so we ask it first
    with one (a server that never answers is a one-line error, not a hang);
  - a request budget (screening/sources/budget.py): every try of every
    request takes a lease, so all the workers fetching with one key stay
    within `rate` requests per second together;
  - retries: 429 as often as RATE_LIMITED_TRIES, waiting what Retry-After
    says; 500, 502, 503, 504 and dropped connections with exponential backoff
    (0.5 s doubling, at most 8 s a wait, 6 tries); then the server's own
    message in one line;
  - completeness: the first page of every search says how many documents
    match (meta.total_doc); fewer received is an error, so a short answer is
    never cached as if it were the whole system.

The endpoint is the `endpoint` argument, else mp-api's default
(https://api.materialsproject.org/). mp_api is imported only when a search
runs: it takes ~3 s to import.
"""
from __future__ import annotations

import hashlib
import time
import warnings
from typing import Callable, List, Optional

from screening.errors import ScreenError
from screening.sources.budget import RequestBudget

DEFAULT_ENDPOINT = "https://api.materialsproject.org/"
TIMEOUT_S = 30  # per HTTP request
RETRY_STATUS = (429, 500, 502, 503, 504)
TRIES = 6  # of a request that meets a server fault (5xx, dropped connection)
RATE_LIMITED_TRIES = 12  # of a request answered 429: slowing down is expected, so more patience
MAX_WAIT_S = 60  # the longest Retry-After we follow
MAX_BACKOFF_S = 8.0
DEFAULT_RATE = 10  # requests per second per key, all workers together (the run's `mp_rate`)


def one_line(e: Exception) -> str:
    """The error in one line, the server's own message first (mp-api puts it after the URL)."""
    text = str(e)
    if "with message:" in text:
        head, message = text.split("with message:", 1)
        code = head.split("status code", 1)[-1].split()[0] if "status code" in head else ""
        text = f"HTTP {code}: {message}" if code else message
    return " ".join(text.split())[:300] or type(e).__name__


def retry_after(response) -> Optional[float]:
    """The wait a 429 answer asks for (seconds, at most MAX_WAIT_S); None when absent or a date."""
    try:
        return min(max(float(response.headers.get("Retry-After", "")), 0.0), MAX_WAIT_S)
    except ValueError:
        return None  # absent, or a date: back off as for a fault


def budgeted_adapter(client: "MPClient"):
    """An HTTPAdapter whose every try takes a lease from the client's budget (read at each try, so a
    budget swapped in later counts) and which retries itself (urllib3's retries would escape the budget)."""
    import requests
    from requests.adapters import HTTPAdapter

    class BudgetedAdapter(HTTPAdapter):
        def send(self, request, **kwargs):
            faults = limited = 0
            while True:
                with client.budget.lease():
                    try:
                        response = super().send(request, **kwargs)
                    except (requests.ConnectionError, requests.Timeout):
                        faults += 1
                        if request.method != "GET" or faults >= TRIES:
                            raise
                        response = None
                wait = None
                if response is not None:
                    if response.status_code not in RETRY_STATUS or request.method != "GET":
                        return response
                    if response.status_code == 429:
                        limited += 1
                        wait = retry_after(response)
                    else:
                        faults += 1
                    if faults >= TRIES or limited >= RATE_LIMITED_TRIES:
                        return response  # mp-api reports the server's message
                    response.close()
                time.sleep(wait if wait is not None else min(client.backoff * 2 ** (faults + limited - 1),
                                                               MAX_BACKOFF_S))

    return BudgetedAdapter()


class MPClient:
    """One API key's session: an MPRester made on first use, every request through the budget."""

    def __init__(self, api_key: str, endpoint: Optional[str] = None, chunk_size: int = 1000,
                 timeout: float = TIMEOUT_S, backoff: float = 0.5, rate: int = DEFAULT_RATE):
        self.api_key = api_key
        self.endpoint = endpoint  # None: mp-api's default
        self.chunk_size = chunk_size  # documents per request; the client pages with _skip
        self.timeout = timeout
        self.backoff = backoff  # seconds before the first retry, doubling
        key_hash = hashlib.sha256(f"{api_key}|{self.url()}".encode()).hexdigest()[:16]
        self.budget = RequestBudget(rate, name=f"mp-{key_hash}")  # workflows may swap in a cluster-wide pool
        self._rester = None
        self._totals: List[int] = []  # meta.total_doc of each first page seen during a search

    def url(self) -> str:
        return self.endpoint or DEFAULT_ENDPOINT

    def endpoint_text(self) -> str:
        return self.endpoint or "the default endpoint"

    def __getstate__(self):  # the HTTP session stays behind; a copy opens its own
        return {**self.__dict__, "_rester": None, "_totals": []}

    def rester(self):
        """The MPRester, made (after a heartbeat with a timeout) on first use."""
        if self._rester is None:
            from mp_api.client import MPRester
            from mp_api.client.core import MPRestError

            self._probe()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._rester = MPRester(self.api_key, endpoint=self.endpoint, mute_progress_bars=True,
                                            use_document_model=False)
            except (MPRestError, OSError, ValueError) as e:
                raise ScreenError(f"`source` mp: cannot reach the Materials Project API at "
                                  f"{self.endpoint_text()} ({one_line(e)})") from None
            self._harden(self._rester.session)
        return self._rester

    def _probe(self) -> None:
        """GET /heartbeat with a timeout, before mp-api sends its own without one."""
        import requests

        try:
            requests.get(self.url().rstrip("/") + "/heartbeat", timeout=self.timeout)
        except requests.exceptions.Timeout:
            raise ScreenError(f"`source` mp: {self.endpoint_text()} did not answer within "
                              f"{self.timeout:g} s") from None
        except requests.exceptions.RequestException as e:
            raise ScreenError(f"`source` mp: cannot reach the Materials Project API at "
                              f"{self.endpoint_text()} ({one_line(e)})") from None

    def _harden(self, session) -> None:
        adapter = budgeted_adapter(self)
        for prefix in ("http://", "https://"):
            session.mount(prefix, adapter)
        session.hooks.setdefault("response", []).append(self._record_total)

    def _record_total(self, response, *args, **kwargs):
        """Remember meta.total_doc of a search's first page (the count the search must reach)."""
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(response.url)
        if response.status_code != 200 or "/materials/" not in url.path or \
                int(parse_qs(url.query).get("_skip", ["0"])[0] or 0) != 0:
            return
        try:
            self._totals.append(int(response.json()["meta"]["total_doc"]))
        except (ValueError, KeyError, TypeError):
            pass  # mp-api reads the body itself and reports what is wrong with it

    def documents(self, what: str, endpoint: Callable, **kw) -> List[dict]:
        """Every document of one search (`endpoint(rester)` is the search method), checked complete."""
        from mp_api.client.core import MPRestError

        mpr = self.rester()
        self._totals = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                docs = endpoint(mpr)(**kw, chunk_size=self.chunk_size)
        except MPRestError as e:
            raise ScreenError(f"`source` mp: search for {what} failed ({one_line(e)})") from None
        except OSError as e:  # connection refused / reset / timed out after retries
            raise ScreenError(f"`source` mp: cannot reach {self.endpoint_text()} ({one_line(e)})") from None
        except ValueError as e:  # a body that is not the JSON it should be (cut off, say)
            raise ScreenError(f"`source` mp: search for {what} got a damaged answer from "
                              f"{self.endpoint_text()} ({type(e).__name__}); try again") from None
        docs = list(docs)
        expected = sum(self._totals)
        if len(docs) < expected:
            raise ScreenError(f"`source` mp: search for {what} received {len(docs)} of the {expected} documents "
                              f"the server counted; nothing was kept, try again")
        fields = kw.get("fields") or []
        return [d if isinstance(d, dict) else {f: getattr(d, f, None) for f in fields} for d in docs]

    def database(self) -> tuple:
        """(endpoint, db_version or "unknown") as the client sees them."""
        mpr = self.rester()
        return mpr.endpoint, mpr.db_version or "unknown"
