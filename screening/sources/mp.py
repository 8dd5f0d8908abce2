"""`--source mp`: the Materials Project through the official mp-api client.

One summary search per query: `chemsys` (wildcards passed as they are; the MP
API reads `Li-*-O` as "three elements, Li and O among them", our meaning),
`formula`, or `material_ids`, with `exclude_elements` for --exclude. Results
are checked against the query again on our side, so a server that filters
more loosely cannot leak other systems in.

The key comes from MP_API_KEY; the endpoint from the `endpoint` argument,
else MP_API_ENDPOINT, else mp-api's default (https://api.materialsproject.org/).
mp_api is imported only when a search runs: it takes ~3 s to import.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Iterable, List, Optional, Union

from screening.errors import ScreenError
from screening.query import CHEMSYS, FORMULA, IDS, Query
from screening.sources.base import KNOWN_PROPERTIES, Candidate, Source, as_query, known_properties

FIELDS = ["material_id", "formula_pretty", "structure", *KNOWN_PROPERTIES]


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


class MPSource(Source):
    name = "mp"

    def __init__(self, api_key: Optional[str] = None, endpoint: Optional[str] = None, chunk_size: int = 1000):
        self.api_key = api_key or os.environ.get("MP_API_KEY") or None
        if not self.api_key:
            raise ScreenError("--source mp: MP_API_KEY is not set; set MP_API_KEY to your Materials Project "
                              "API key (https://materialsproject.org/api) or use --source local:PATH")
        self.endpoint = endpoint or os.environ.get("MP_API_ENDPOINT") or None
        self.chunk_size = chunk_size  # documents per request; the client pages with _skip
        self._rester = None

    def _client(self):
        if self._rester is None:
            from mp_api.client import MPRester
            from mp_api.client.core import MPRestError

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._rester = MPRester(self.api_key, endpoint=self.endpoint, mute_progress_bars=True)
            except (MPRestError, OSError, ValueError) as e:
                raise ScreenError(f"--source mp: cannot reach the Materials Project API at "
                                  f"{self._endpoint_text()} ({_one_line(e)})") from None
        return self._rester

    def __getstate__(self):  # the HTTP session stays behind; a copy opens its own
        return {**self.__dict__, "_rester": None}

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
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                docs = mpr.materials.summary.search(**kw, fields=FIELDS, chunk_size=self.chunk_size)
        except MPRestError as e:
            raise ScreenError(f"--source mp: search for {what} failed ({_one_line(e)})") from None
        except OSError as e:  # connection refused / reset after init
            raise ScreenError(f"--source mp: cannot reach {self._endpoint_text()} ({_one_line(e)})") from None
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
