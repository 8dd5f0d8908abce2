"""Read crystal structures from CIF / POSCAR files and CIF text, with one-line errors."""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import List

from screening.errors import ScreenError

_CIF_SUFFIXES = {".cif", ".mcif"}
_POSCAR_SUFFIXES = {".vasp", ".poscar"}


def _is_poscar_name(p: Path) -> bool:
    name = p.name.upper()
    return name.startswith(("POSCAR", "CONTCAR")) or p.suffix.lower() in _POSCAR_SUFFIXES


def structure_from_cif_text(text: str, name: str):
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns per odd CIF tag; errors are checked below
        try:
            structures = CifParser(io.StringIO(text), occupancy_tolerance=1.0).parse_structures(primitive=False)
        except Exception as e:
            raise ScreenError(f"{name}: could not parse CIF ({_short(e)})") from None
    if not structures:
        raise ScreenError(f"{name}: could not parse CIF (no structure found)")
    return structures[0]


def read_structure(path) -> "Structure":
    """CIF or POSCAR file -> pymatgen Structure."""
    from pymatgen.core import Structure
    from pymatgen.io.vasp import Poscar

    p = Path(path)
    if not p.is_file():
        raise ScreenError(f"{p}: file not found")
    try:
        text = p.read_text(errors="replace")
    except OSError as e:
        raise ScreenError(f"{p}: cannot read ({e.strerror or type(e).__name__})") from None
    if p.suffix.lower() in _CIF_SUFFIXES:
        return structure_from_cif_text(text, str(p))
    if _is_poscar_name(p):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Poscar.from_str(text).structure
        except Exception as e:
            raise ScreenError(f"{p}: could not parse POSCAR ({_short(e)})") from None
    try:
        return Structure.from_file(str(p))
    except Exception as e:
        raise ScreenError(f"{p}: unrecognised structure file ({_short(e)}); use .cif or POSCAR") from None


def structure_files(paths) -> List[Path]:
    """Expand files and directories into the list of structure files they hold."""
    out: List[Path] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and
                           (f.suffix.lower() in _CIF_SUFFIXES or _is_poscar_name(f)))
            if not found:
                raise ScreenError(f"{p}: directory holds no .cif or POSCAR files")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise ScreenError(f"{p}: no such file or directory")
    return out


def _short(e: Exception) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:160]
