"""Where candidate crystals come from, chosen by a source spec (a run's `source`):

    mp                    the Materials Project API (needs MP_API_KEY; MP_API_ENDPOINT
                          points it elsewhere)
    local:PATH            a CSV like mp_dev.csv.gz, a CGCNN directory, a directory of
                          CIF/POSCAR files, or one structure file
    substitution          hypothetical crystals: element substitution into the
                          structure prototypes pymatgen ships
    substitution:SPEC     the same, plus known crystals of SPEC (mp or local:PATH)
                          as templates
    (none)                mp when MP_API_KEY is set, else substitution

`gnome` adds the Materials Project's GNoME r2SCAN entries to what an mp source
(or the mp templates of substitution:mp) fetches; `rate` is the mp source's
request budget per second (the run's `mp_rate`); `min_probability` is the
substitution source's plausibility threshold (the run's `min_substitution_probability`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

from screening.errors import ScreenError
from screening.sources.base import KNOWN_PROPERTIES, Candidate, EntryStore, Source, Thermo

__all__ = ["Candidate", "Source", "Thermo", "EntryStore", "KNOWN_PROPERTIES", "open_source", "mp_sources"]

_USAGE = "use mp, local:PATH, substitution or substitution:local:PATH"


def _has_key(environ: Optional[Mapping[str, str]]) -> bool:
    return bool((os.environ if environ is None else environ).get("MP_API_KEY"))


def open_source(spec: Optional[str] = None, *, lazy: bool = False,
                environ: Optional[Mapping[str, str]] = None, gnome: bool = False,
                rate: Optional[int] = None, min_probability: Optional[float] = None) -> Source:
    """The Source a source spec names. lazy: local CSV candidates carry CIF text,
    parsed on first `.structure` (cheap to ship to workers)."""
    if rate is not None and (int(rate) != rate or rate < 1):
        raise ScreenError(f"`mp_rate` {rate}: a whole number of requests per second, at least 1")
    if min_probability is not None:
        from screening.sources.plausibility import check_threshold

        min_probability = check_threshold(min_probability)
    source = _open(spec, lazy, environ, gnome, rate, min_probability)
    if gnome and not mp_sources(source):
        raise ScreenError(f"`gnome`: only the Materials Project (`source` mp) has GNoME entries; "
                          f"this run's source is {source.name}")
    if min_probability is not None and not source.hypothetical:
        raise ScreenError(f"`min_substitution_probability`: only `source` substitution makes substitutions; "
                          f"this run's source is {source.name}")
    return source


def mp_sources(source: Source) -> list:
    """The Materials Project sources a source fetches from: itself, or substitution:mp's templates."""
    return ([source] if source.name == "mp" else []) + (mp_sources(source.base) if source.base is not None else [])


def _open(spec, lazy, environ, gnome, rate, min_probability=None) -> Source:
    text = (spec or "").strip()
    if not text:
        text = "mp" if _has_key(environ) else "substitution"
    if text == "mp":
        from screening.sources.mp import DEFAULT_RATE, MPSource

        env = os.environ if environ is None else environ
        return MPSource(api_key=env.get("MP_API_KEY"), endpoint=env.get("MP_API_ENDPOINT"), gnome=gnome,
                        rate=DEFAULT_RATE if rate is None else rate)
    if text.startswith("local:"):
        from screening.sources.local import LocalSource

        path = text[len("local:"):]
        if not path:
            raise ScreenError(f'`source` "{spec}": local: needs a path, like local:data/mp_dev.csv.gz')
        return LocalSource(path, lazy=lazy)
    if text == "substitution" or text.startswith("substitution:"):
        from screening.sources.substitution import SubstitutionSource

        base_spec = text[len("substitution:"):] if ":" in text else ""
        if base_spec.startswith("substitution"):
            raise ScreenError(f'`source` "{spec}": substitution templates must come from mp or local:PATH')
        base = _open(base_spec, lazy, environ, gnome, rate) if base_spec else None
        return SubstitutionSource(base=base, min_probability=min_probability)
    hint = f"; did you mean local:{text}?" if Path(text).expanduser().exists() else ""
    raise ScreenError(f'`source` "{spec}": unknown source ({_USAGE}){hint}')
