"""`--source mp`: the Materials Project through the official mp-api client.

One summary search per query: `chemsys` (wildcards passed as they are; the MP
API reads `Li-*-O` as "three elements, Li and O among them", our meaning),
`formula`, or `material_ids`, with `exclude_elements` for --exclude. Results
are checked against the query again on our side, so a server that filters
more loosely cannot leak other systems in.

The key comes from MP_API_KEY; the endpoint from the `endpoint` argument,
else MP_API_ENDPOINT, else mp-api's default (https://api.materialsproject.org/).
mp_api is imported only when a search runs: it takes ~3 s to import.

What the client does not do for us, done here:
  - the heartbeat mp-api sends on start has no timeout, so we ask it first
    with one (a server that never answers is a one-line error, not a hang);
  - retries: 429, 500, 502, 503 and 504 and dropped connections, with
    exponential backoff (0.5 s doubling, at most 8 s a wait, 5 tries), then
    the server's own message in one line;
  - completeness: the first page of every search says how many documents
    match (meta.total_doc); fewer received is an error, so a short answer is
    never cached as if it were the whole system.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Iterable, List, Optional, Union

from screening.errors import ScreenError
from screening.query import CHEMSYS, FORMULA, IDS, Query
from screening.sources.base import KNOWN_PROPERTIES, Candidate, Source, as_query, known_properties

FIELDS = ["material_id", "formula_pretty", "structure", *KNOWN_PROPERTIES]
DEFAULT_ENDPOINT = "https://api.materialsproject.org/"
TIMEOUT_S = 30  # per HTTP request
RETRY_STATUS = (429, 500, 502, 503, 504)


def _one_line(e: Exception) -> str:
    """The error in one line, the server's own message first (mp-api puts it after the URL)."""
    text = str(e)
    if "with message:" in text:
        head, message = text.split("with message:", 1)
        code = head.split("status code", 1)[-1].split()[0] if "status code" in head else ""
        text = f"HTTP {code}: {message}" if code else message
    return " ".join(text.split())[:300] or type(e).__name__


class MPSource(Source):
    name = "mp"

    def __init__(self, api_key: Optional[str] = None, endpoint: Optional[str] = None, chunk_size: int = 1000,
                 timeout: float = TIMEOUT_S, backoff: float = 0.5):
        self.api_key = api_key or os.environ.get("MP_API_KEY") or None
        if not self.api_key:
            raise ScreenError("--source mp: MP_API_KEY is not set; set MP_API_KEY to your Materials Project "
                              "API key (https://materialsproject.org/api) or use --source local:PATH")
        self.endpoint = endpoint or os.environ.get("MP_API_ENDPOINT") or None
        self.chunk_size = chunk_size  # documents per request; the client pages with _skip
        self.timeout = timeout
        self.backoff = backoff  # seconds before the first retry, doubling
        self._rester = None
        self._totals: List[int] = []  # meta.total_doc of each first page seen during a search

    def _client(self):
        if self._rester is None:
            from mp_api.client import MPRester
            from mp_api.client.core import MPRestError

            self._probe()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._rester = MPRester(self.api_key, endpoint=self.endpoint, mute_progress_bars=True)
            except (MPRestError, OSError, ValueError) as e:
                raise ScreenError(f"--source mp: cannot reach the Materials Project API at "
                                  f"{self._endpoint_text()} ({_one_line(e)})") from None
            self._harden(self._rester.session)
        return self._rester

    def _probe(self) -> None:
        """GET /heartbeat with a timeout, before mp-api sends its own without one."""
        import requests

        url = (self.endpoint or DEFAULT_ENDPOINT).rstrip("/") + "/heartbeat"
        try:
            requests.get(url, timeout=self.timeout)
        except requests.exceptions.Timeout:
            raise ScreenError(f"--source mp: {self._endpoint_text()} did not answer within "
                              f"{self.timeout:g} s") from None
        except requests.exceptions.RequestException as e:
            raise ScreenError(f"--source mp: cannot reach the Materials Project API at "
                              f"{self._endpoint_text()} ({_one_line(e)})") from None

    def _harden(self, session) -> None:
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        retry = Retry(total=5, connect=5, read=5, status=5, backoff_factor=self.backoff, backoff_max=8,
                      status_forcelist=RETRY_STATUS, allowed_methods=["GET"], respect_retry_after_header=True,
                      raise_on_status=False)  # the last answer reaches mp-api, which reports its message
        for prefix in ("http://", "https://"):
            session.mount(prefix, HTTPAdapter(max_retries=retry))
        session.hooks.setdefault("response", []).append(self._record_total)

    def _record_total(self, response, *args, **kwargs):
        """Remember meta.total_doc of a search's first page (the count the search must reach)."""
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(response.url)
        if response.status_code != 200 or "/summary" not in url.path or \
                int(parse_qs(url.query).get("_skip", ["0"])[0] or 0) != 0:
            return
        try:
            self._totals.append(int(response.json()["meta"]["total_doc"]))
        except (ValueError, KeyError, TypeError):
            pass  # mp-api reads the body itself and reports what is wrong with it

    def __getstate__(self):  # the HTTP session stays behind; a copy opens its own
        return {**self.__dict__, "_rester": None, "_totals": []}

    def _endpoint_text(self) -> str:
        return self.endpoint or "the default endpoint"

    def search_arguments(self, query: Query) -> dict:
        """The keyword arguments for summary.search that answer this query."""
        if query.kind == CHEMSYS:
            kw = {"chemsys": str(query)}
        elif query.kind == FORMULA:
            kw = {"formula": query.formula}
        else:
            kw = {"material_ids": list(query.ids)}
        if query.exclude:
            kw["exclude_elements"] = list(query.exclude)
        return kw

    def fetch(self, query: Union[Query, str]) -> List[Candidate]:
        query = as_query(query)
        out = self._search(str(query), query.matches, **self.search_arguments(query))
        if query.kind == IDS:  # the order asked for
            order = {m: i for i, m in enumerate(query.ids)}
            out.sort(key=lambda c: order[c.id])
        return out

    def fetch_systems(self, systems: Iterable[str], per_request: int = 100) -> List[Candidate]:
        """Every crystal of the explicit systems ("Fe-Li-O"), a chemsys list per request."""
        systems = sorted({"-".join(sorted(s.split("-"))) for s in systems})
        wanted = {frozenset(s.split("-")) for s in systems}
        out = []
        for i in range(0, len(systems), per_request):
            batch = systems[i:i + per_request]
            out.extend(self._search(f"{len(batch)} chemical systems", lambda e, *_: frozenset(e) in wanted,
                                    chemsys=batch))
        return out

    def _search(self, what: str, matches: Callable, **kw) -> List[Candidate]:
        from mp_api.client.core import MPRestError
        from pymatgen.core import Structure

        mpr = self._client()
        self._totals = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                docs = mpr.materials.summary.search(**kw, fields=FIELDS, chunk_size=self.chunk_size)
        except MPRestError as e:
            raise ScreenError(f"--source mp: search for {what} failed ({_one_line(e)})") from None
        except OSError as e:  # connection refused / reset / timed out after retries
            raise ScreenError(f"--source mp: cannot reach {self._endpoint_text()} ({_one_line(e)})") from None
        except ValueError as e:  # a body that is not the JSON it should be (cut off, say)
            raise ScreenError(f"--source mp: search for {what} got a damaged answer from "
                              f"{self._endpoint_text()} ({type(e).__name__}); try again") from None
        docs = list(docs)
        expected = sum(self._totals)
        if len(docs) < expected:
            raise ScreenError(f"--source mp: search for {what} received {len(docs)} of the {expected} documents "
                              f"the server counted; nothing was kept, try again")
        out, seen = [], set()
        for doc in docs:
            d = doc if isinstance(doc, dict) else {f: getattr(doc, f, None) for f in FIELDS}
            mid = str(d["material_id"])
            s = d["structure"]
            s = s if isinstance(s, Structure) else Structure.from_dict(s)
            comp = s.composition
            elements = {el.symbol for el in comp.elements}
            if mid in seen or not matches(elements, comp.reduced_formula, mid):
                continue  # the server filtered more loosely than we mean
            seen.add(mid)
            out.append(Candidate(self.name, mid, comp.reduced_formula, s, known=known_properties(d)))
        return out

    def describe(self) -> str:
        db = self._client().db_version or "unknown"
        return f"mp:{self._client().endpoint} db_version={db}"
