"""`--source local:PATH`: crystals from a CSV like mp_dev.csv.gz, a CGCNN-style
directory (id_prop.csv + <id>.cif), a directory of CIF/POSCAR files, or one file.

For the CSV, rows are chosen from the `formula` column alone: each distinct
formula is parsed once with pymatgen (about 27k of them in mp_dev, ~0.3 s),
and only the CIFs of matching rows are parsed. Files in a directory have no
formula to go by, so every structure there is read once and kept.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

from screening.errors import ScreenError
from screening.formula import formula_info, structure_info
from screening.query import IDS, Query
from screening.sources.base import Candidate, Source, as_query, known_properties

_CSV_SUFFIXES = (".csv", ".csv.gz", ".gz")


class LocalSource(Source):
    def __init__(self, path: Union[str, Path], lazy: bool = False):
        """lazy: hand CSV candidates over as CIF text, parsed on first `.structure`."""
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise ScreenError(f"--source local:{path}: no such file or directory")
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
            import pandas as pd

            try:
                df = pd.read_csv(self.path, dtype={"material_id": str, "formula": str})
            except Exception as e:
                raise ScreenError(f"{self.path}: could not read CSV ({' '.join(str(e).split())[:160]})") from None
            missing = [c for c in ("material_id", "cif") if c not in df.columns]
            if missing:
                raise ScreenError(f"{self.path}: missing column(s) {', '.join(missing)} "
                                  f"(need material_id and cif; formula speeds up filtering)")
            self._table = df
        return self._table

    def _read_files(self):
        if self._files is not None:
            return self._files
        from screening.structures import read_structure, structure_files

        if self.path.is_dir() and (self.path / "id_prop.csv").exists():
            import pandas as pd

            ids = pd.read_csv(self.path / "id_prop.csv", header=None, dtype={0: str})[0].tolist()
            entries = [(i, self.path / f"{i}.cif") for i in ids]
        else:
            files = structure_files([self.path])
            stems = [f.stem for f in files]
            entries = [(f.stem if stems.count(f.stem) == 1 else f.name, f) for f in files]
        self._files = [(i, read_structure(f), {}) for i, f in entries]
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
        """Every crystal whose element set is one of the explicit systems ("Fe-Li-O"), in one pass."""
        wanted = {frozenset(s.split("-")) for s in systems}
        return self._select(lambda elements, *_: frozenset(elements) in wanted)

    def _select(self, matches: Callable, ids: Optional[Sequence[str]] = None) -> List[Candidate]:
        """Candidates for which matches(element set, reduced formula, id) holds, each id once."""
        if not self._is_csv():
            out = []
            for i, s, known in self._read_files():
                elements, reduced = structure_info(s)
                if matches(elements, reduced, i):
                    out.append(Candidate(self.name, i, reduced, s, known=known))
            return out
        from screening.structures import structure_from_cif_text

        df = self._read_csv()
        id_col = df["material_id"].astype(str)
        if ids is not None:
            rows = df.index[id_col.isin(ids)]
        elif "formula" in df.columns:
            # One composition per distinct formula; rows follow their formula's verdict.
            verdict: Dict[str, bool] = {}
            for f in df["formula"].dropna().unique():
                info = formula_info(f)
                verdict[f] = info is None or matches(info[0], info[1], None)  # unparsable: the CIF decides
            rows = df.index[df["formula"].map(verdict).fillna(True).astype(bool)]
        else:
            rows = df.index
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
