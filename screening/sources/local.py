"""`source` local:PATH: crystals from a CSV like mp_dev.csv.gz, a CGCNN-style
directory (id_prop.csv + <id>.cif), a directory of CIF/POSCAR files, or one file.

For the CSV, rows are chosen from the `formula` column alone: each distinct
formula is parsed once with pymatgen (about 27k of them in mp_dev, ~0.3 s),
and only the CIFs of matching rows are parsed. Files in a directory have no
formula to go by, so every structure there is read once and kept.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from screening.dataset import read_crystal_csv, read_id_prop
from screening.errors import ScreenError
from screening.formula import formula_info, structure_info
from screening.query import IDS, Query
from screening.sources.base import Candidate, EntryStore, Partition, Source, as_query, known_properties

_CSV_SUFFIXES = (".csv", ".csv.gz", ".gz")


class LocalSource(Source):
    def __init__(self, path: Union[str, Path], lazy: bool = False):
        """lazy: hand CSV candidates over as CIF text, parsed on first `.structure`."""
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise ScreenError(f"`source` local:{path}: no such file or directory")
        self.path = self.path.resolve()
        self.name = f"local:{self.path}"
        self.lazy = lazy
        self._table = None   # CSV rows
        self._files = None   # [(id, structure, known)] for directories / single files
        self._digest = None

    def __getstate__(self):  # ship the path, not the table: a copy reads the file itself
        return {**self.__dict__, "_table": None, "_files": None}

    # -- what the files hold ------------------------------------------------
    def _is_csv(self) -> bool:
        return self.path.is_file() and self.path.name.lower().endswith(_CSV_SUFFIXES)

    def _read_csv(self):
        if self._table is None:
            self._table = read_crystal_csv(self.path, hint=lambda df: " (need material_id and cif; formula "
                                                                         "speeds up filtering)")
        return self._table

    def _read_files(self):
        """[(id, structure, known, problem)]: a file that cannot be read has no structure and a problem
        (one line), so the other files are still screened."""
        if self._files is not None:
            return self._files
        from screening.structures import structure_files

        if self.path.is_dir() and (self.path / "id_prop.csv").exists():
            ids = read_id_prop(self.path)[0].tolist()
            entries = [(i, self.path / f"{i}.cif") for i in ids]
        else:
            files = structure_files([self.path])
            stems = [f.stem for f in files]
            entries = [(f.stem if stems.count(f.stem) == 1 else f.name, f) for f in files]
        self._files = [(i, *_read_or_why(f)) for i, f in entries]
        return self._files

    # -- Source ----------------------------------------------------------------
    def fetch(self, query: Union[Query, str]) -> List[Candidate]:
        query = as_query(query)
        ids = query.ids if query.kind == IDS else None
        out = self._select(query.matches, ids)
        if ids:  # the order asked for
            order = {m: i for i, m in enumerate(ids)}
            out.sort(key=lambda c: order[c.id])
        return out

    def fetch_systems(self, systems: Iterable[str]) -> List[Candidate]:
        """Every crystal whose element set is one of the explicit systems ("Fe-Li-O"), in one pass.
        Known crystals as templates or references must all be read: an unreadable file is an error."""
        wanted = {frozenset(s.split("-")) for s in systems}
        return self._select(lambda elements, *_: frozenset(elements) in wanted, unreadable=False)

    def _select(self, matches: Callable, ids: Optional[Sequence[str]] = None,
                unreadable: bool = True) -> List[Candidate]:
        """Candidates for which matches(element set, reduced formula, id) holds, each id once. A file that
        could not be read may match any query: it comes as Candidate.unreadable (asked for by id, or
        any without ids), or, unless `unreadable`, is a ScreenError."""
        if not self._is_csv():
            out = []
            for i, s, known, problem in self._read_files():
                if problem is not None:
                    if not unreadable:
                        raise ScreenError(problem)
                    if ids is None or i in ids:
                        out.append(Candidate.unreadable(self.name, i, problem))
                    continue
                elements, reduced = structure_info(s)
                if matches(elements, reduced, i):
                    out.append(Candidate(self.name, i, reduced, s, known=known))
            return out
        df = self._read_csv()
        return self._candidates(df, _chosen_rows(df, matches, ids), matches)

    def _candidates(self, df, rows: Iterable[int], matches: Callable) -> List[Candidate]:
        """The matching candidates of these CSV rows (by index), each id once."""
        from screening.structures import structure_from_cif_text

        id_col = df["material_id"].astype(str)
        out, seen = [], set()
        for r in rows:
            mid = id_col.at[r]
            if mid in seen:
                continue
            name = f"{self.path}: row {mid}"
            formula = df.at[r, "formula"] if "formula" in df.columns else None
            info = formula_info(formula) if isinstance(formula, str) else None
            cif = df.at[r, "cif"]
            if not isinstance(cif, str) or not cif.strip():
                raise ScreenError(f"{name}: empty cif")
            structure = None
            if info is None or not self.lazy:
                structure = structure_from_cif_text(cif, name)
                if info is None:
                    info = structure_info(structure)
            if not matches(info[0], info[1], mid):
                continue
            seen.add(mid)
            known = known_properties({c: df.at[r, c] for c in df.columns if c != "cif"})
            out.append(Candidate(self.name, mid, info[1], structure, cif=cif, known=known))
        return out

    # -- partitions: the client reads two columns, each worker its rows ------------
    def partitions(self, query: Query, size: int) -> Optional[List[Partition]]:
        if not self._is_csv():
            return None  # files have no formula to go by: one worker reads them all
        columns = self._header()
        df = self._light_table(tuple(c for c in ("material_id", "formula") if c in columns))
        rows = _chosen_rows(df, query.matches, query.ids if query.kind == IDS else None)
        first = df["material_id"].astype(str).iloc[rows].duplicated(keep="first").to_numpy()
        rows = [int(r) for r, dup in zip(rows, first) if not dup]  # each id once: its first row
        return [Partition(f"rows {rows[i]}..{rows[min(i + size, len(rows)) - 1]} #{len(rows[i:i + size])}",
                          tuple(rows[i:i + size])) for i in range(0, len(rows), size)]

    def fetch_partition(self, query: Query, part: Partition, entries: Optional[EntryStore] = None) -> List[Candidate]:
        df = _csv_table(str(self.path), self.describe())
        return self._candidates(df, part.rows, query.matches)

    def _header(self) -> List[str]:
        return list(read_crystal_csv(self.path, required=(), nrows=0).columns)

    def _light_table(self, columns: Tuple[str, ...]):
        if "material_id" not in columns:
            self._read_csv()  # names the missing column
        return read_crystal_csv(self.path, required=("material_id",), usecols=columns)

    def describe(self) -> str:
        if self._digest is None:
            h = hashlib.sha256()
            files = [self.path] if self.path.is_file() else sorted(p for p in self.path.rglob("*") if p.is_file())
            for f in files:
                h.update(str(f.relative_to(self.path) if f != self.path else f.name).encode() + b"\0")
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            self._digest = h.hexdigest()[:16]
        return f"{self.name} sha256={self._digest}"


def _read_or_why(path) -> tuple:
    """(structure, known values, None), or (None, {}, why) for a file that cannot be read."""
    from screening.structures import read_structure

    try:
        return read_structure(path), {}, None
    except ScreenError as e:
        return None, {}, str(e)


def _chosen_rows(df, matches: Callable, ids: Optional[Sequence[str]] = None) -> List[int]:
    """Row numbers a query may select, from ids or the formula column alone (a row whose formula does
    not parse is kept: its CIF decides); the id order for an id list, else the file's."""
    id_col = df["material_id"].astype(str)
    if ids is not None:
        order = {m: i for i, m in enumerate(ids)}
        rows = df.index[id_col.isin(ids)]
        return sorted((int(r) for r in rows), key=lambda r: order[id_col.at[r]])
    if "formula" not in df.columns:
        return [int(r) for r in df.index]
    # One composition per distinct formula; rows follow their formula's verdict.
    verdict: Dict[str, bool] = {}
    for f in df["formula"].dropna().unique():
        info = formula_info(f)
        verdict[f] = info is None or matches(info[0], info[1], None)  # unparsable: the CIF decides
    return [int(r) for r in df.index[df["formula"].map(verdict).fillna(True).astype(bool)]]


@functools.lru_cache(maxsize=1)
def _csv_table(path: str, description: str):
    """The whole CSV, read once per worker process (its description names the data version, so a
    changed file is read again): every partition task of a run shares it."""
    return LocalSource(path)._read_csv()
