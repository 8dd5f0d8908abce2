"""What to screen: a chemical system, a formula, or Materials Project ids.

    Li-*-O          chemical system with wildcards: every ternary Li-X-O
    *-O             every binary X-O
    Li-*-*-O        every quaternary Li-X-Y-O (X != Y)
    Li-Fe-O         exactly the elements {Li, Fe, O}
    LiFePO4         every crystal with this reduced formula
    mp-19017        one material id; `mp-1,mp-2` is a list
    all             every crystal of the source (with `exclude`: every one without those elements)

A wildcard stands for one element that is not already named in the system,
so `Li-*-O` matches element sets {Li, O, X} with X not in {Li, O}, and two
wildcards are two different elements. This is also what the Materials Project
API means by `chemsys=Li-*-O`. `exclude` drops crystals holding any of the
given elements, whatever the query kind.

`str(query)` is the canonical text (fixed elements sorted, wildcards last,
formulas reduced), so parse_query(str(q), q.exclude) == q. `key()` adds the
exclusions and is what caches and reports should use.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

from screening.errors import ScreenError

CHEMSYS, FORMULA, IDS, ALL = "chemsys", "formula", "ids", "all"

_ID_RE = re.compile(r"^[a-z]+-\d+$")              # mp-19017, mvc-123
_ID_PREFIX_RE = re.compile(r"^([a-z]+)-")           # mp-abc, mp-: meant as an id, not an element
_FORMULA_CHARS_RE = re.compile(r"^[A-Za-z0-9().]+$")
_SYMBOL_RE = re.compile(r"[A-Z][a-z]*")


def _element_symbols() -> frozenset:
    from pymatgen.core import Element

    return frozenset(e.symbol for e in Element)  # H..Og; no isotopes like D, T


_ELEMENTS: Optional[frozenset] = None


def is_element(symbol: str) -> bool:
    global _ELEMENTS
    if _ELEMENTS is None:
        _ELEMENTS = _element_symbols()
    return symbol in _ELEMENTS


def _unknown_element(symbol: str, where: str) -> ScreenError:
    hint = ""
    fixed = symbol[:1].upper() + symbol[1:].lower()
    if fixed != symbol and is_element(fixed):
        hint = f' (element symbols are case-sensitive: did you mean "{fixed}"?)'
    return ScreenError(f'{where}: unknown element "{symbol}"{hint}')


@dataclass(frozen=True)
class Query:
    kind: str                      # CHEMSYS, FORMULA, IDS or ALL
    elements: Tuple[str, ...] = ()  # fixed elements, sorted (a formula's elements too)
    wildcards: int = 0             # number of "*" in a chemical system
    formula: Optional[str] = None  # reduced formula (FORMULA only)
    ids: Tuple[str, ...] = ()      # material ids, in the order given (IDS only)
    exclude: Tuple[str, ...] = ()  # sorted

    @property
    def n_elements(self) -> Optional[int]:
        """How many elements a matching crystal has (None for an id list or all)."""
        if self.kind in (IDS, ALL):
            return None
        return len(self.elements) + self.wildcards

    def matches(self, elements, reduced_formula: str = "", material_id: str = "") -> bool:
        """Does a crystal with this element set / pymatgen reduced formula / id match?"""
        elements = set(elements)
        if self.exclude and not elements.isdisjoint(self.exclude):
            return False
        if self.kind == CHEMSYS:
            return len(elements) == len(self.elements) + self.wildcards and elements.issuperset(self.elements)
        if self.kind == FORMULA:
            return reduced_formula == self.formula
        if self.kind == ALL:
            return True
        return material_id in self.ids

    def chemical_systems(self, candidates: Iterable[str]) -> List[str]:
        """The explicit systems ("Fe-Li-O", elements sorted) this query covers when each
        wildcard may be any of `candidates` (minus fixed and excluded elements)."""
        if self.kind == IDS:
            raise ScreenError(f"query {self}: a list of material ids has no chemical system")
        if self.kind == ALL:
            raise ScreenError("query all: every chemical system; name the systems to screen (Li-*-O, *-*-O)")
        if self.kind == FORMULA or self.wildcards == 0:
            return ["-".join(self.elements)]
        taken = set(self.elements) | set(self.exclude)
        pool = sorted({c for c in candidates if c not in taken})
        return ["-".join(sorted(self.elements + combo)) for combo in itertools.combinations(pool, self.wildcards)]

    def __str__(self) -> str:
        if self.kind == CHEMSYS:
            return "-".join(list(self.elements) + ["*"] * self.wildcards)
        if self.kind == FORMULA:
            return self.formula
        if self.kind == ALL:
            return ALL
        return ",".join(self.ids)

    def key(self) -> str:
        """Stable one-line text for cache keys and reports, exclusions included."""
        return str(self) + (f" exclude={','.join(self.exclude)}" if self.exclude else "")


def parse_query(text: str, exclude: Sequence[str] = ()) -> Query:
    """Parse a query string (see module doc); every problem is a one-line ScreenError."""
    raw = "" if text is None else str(text)
    s = raw.strip()
    where = f'query "{raw}"'
    if not s:
        raise ScreenError('query "": empty query; give a chemical system (Li-*-O), a formula (LiFePO4) '
                          'or material ids (mp-19017)')
    excluded = _parse_exclude(exclude)
    if s == ALL:  # lower case only: "All" stays an unknown element, not a surprise whole-database run
        q = Query(ALL)
    elif "," in s or _looks_like_id(s):
        q = _parse_ids(s, where)
    elif "-" in s or "*" in s or is_element(s):
        q = _parse_chemsys(s, where)
    else:
        q = _parse_formula(s, where)
    clash = sorted(set(q.elements) & set(excluded))
    if clash:
        raise ScreenError(f"{where}: `exclude` {','.join(clash)} removes an element the query requires, "
                          f"so nothing can match")
    return Query(q.kind, q.elements, q.wildcards, q.formula, q.ids, excluded)


def _looks_like_id(s: str) -> bool:
    m = _ID_PREFIX_RE.match(s)
    return bool(m) and not is_element(m.group(1).capitalize())  # "li-o" is a mistyped system


def _parse_exclude(exclude) -> Tuple[str, ...]:
    if isinstance(exclude, str):
        exclude = [exclude]
    out = set()
    for item in exclude or ():
        for part in str(item).replace(" ", ",").split(","):
            if not part:
                continue
            if not is_element(part):
                raise _unknown_element(part, f'`exclude` "{item}"')
            out.add(part)
    return tuple(sorted(out))


def _parse_ids(s: str, where: str) -> Query:
    ids: List[str] = []
    for part in s.split(","):
        part = part.strip()
        if not part:
            raise ScreenError(f"{where}: empty part in the id list (two commas in a row, or a comma at an end)")
        if not _ID_RE.match(part):
            if not _looks_like_id(part):
                raise ScreenError(f'{where}: "{part}" in a comma list is not a material id; commas only '
                                  f"separate material ids like mp-19017,mp-1234")
            raise ScreenError(f'{where}: "{part}" is not a material id (expected a prefix and a number, '
                              f"like mp-19017)")
        if part not in ids:
            ids.append(part)
    return Query(IDS, ids=tuple(ids))


def _parse_chemsys(s: str, where: str) -> Query:
    fixed: List[str] = []
    wildcards = 0
    for part in s.split("-"):
        part = part.strip()
        if not part:
            raise ScreenError(f'{where}: empty part in the chemical system (use elements or * between '
                              f'dashes, like Li-*-O)')
        if part == "*":
            wildcards += 1
        elif "*" in part:
            raise ScreenError(f'{where}: "{part}" mixes a wildcard with other text; a wildcard is a lone * '
                              f"between dashes, like Li-*-O")
        elif not is_element(part):
            if _SYMBOL_RE.fullmatch(part) is None and _FORMULA_CHARS_RE.match(part) and any(c.isdigit() for c in part):
                raise ScreenError(f'{where}: "{part}" is not an element; a chemical system lists elements '
                                  f"without counts, like Li-Fe-O")
            raise _unknown_element(part, where)
        elif part in fixed:
            raise ScreenError(f'{where}: element "{part}" appears twice')
        else:
            fixed.append(part)
    return Query(CHEMSYS, tuple(sorted(fixed)), wildcards)


def _parse_formula(s: str, where: str) -> Query:
    if not _FORMULA_CHARS_RE.match(s):
        bad = next(c for c in s if not (c.isalnum() or c in "()."))
        raise ScreenError(f'{where}: unexpected character "{bad}"; a formula is like LiFePO4')
    if not s[0].isupper() and s[0] != "(":
        raise ScreenError(f'{where}: a formula starts with an element symbol (capital letter), like LiFePO4')
    if s.count("(") != s.count(")"):
        raise ScreenError(f"{where}: unbalanced parentheses in the formula")
    for symbol in _SYMBOL_RE.findall(s):
        if not is_element(symbol):
            raise _unknown_element(symbol, where)
    from pymatgen.core import Composition

    try:
        comp = Composition(s)
        if comp.num_atoms <= 0:
            raise ValueError("no atoms")
        reduced = comp.reduced_formula
    except Exception as e:  # pymatgen's messages vary; keep ours short
        raise ScreenError(f"{where}: not a valid formula ({' '.join(str(e).split())[:120]})") from None
    return Query(FORMULA, tuple(sorted(el.symbol for el in comp.elements)), formula=reduced)
