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
    """The structure of the CIF's first block, exactly as pymatgen's CifParser gives it.

    The common case, a P1 CIF listing every site (what pymatgen and the Materials Project
    write), takes a fast path: gemmi's compiled reader plus the few steps of pymatgen's
    parser that change a P1 structure, several times faster (docs/run_speed.md). Anything else
    falls back to pymatgen.
    tests/screening/test_structures.py checks the two agree on thousands of crystals of ../shared/data.
    """
    fast = fast_p1_cif(text)
    if fast is not None:
        return fast
    return pymatgen_cif(text, name)


def pymatgen_cif(text: str, name: str):
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


_IDENTITY_OPS = {"x,y,z", "+x,+y,+z"}
_SYMOP_TAGS = ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz")
_THIRDS = (1 / 3, 2 / 3)
_FRAC_TOLERANCE = 1e-4  # pymatgen's CifParser: coordinates this close to 1/3 or 2/3 become exactly that
_SITE_TOLERANCE = 1e-4  # pymatgen's CifParser: same-species sites this close are one site


def fast_p1_cif(text: str):
    """The structure of a plain P1 CIF (one block, only the identity operation, ordered sites of
    plain elements, numbers without uncertainties), built as pymatgen's CifParser builds it; None
    for anything else (the caller falls back to pymatgen). Needs gemmi."""
    try:
        import gemmi
    except ImportError:
        return None
    try:
        doc = gemmi.cif.read_string(text)
        if len(doc) != 1:
            return None
        block = doc[0]
        ops = next((list(block.find_loop(t)) or [block.find_value(t)] for t in _SYMOP_TAGS
                    if block.find_loop(t) or block.find_value(t)), None)
        if not ops or len(ops) != 1 or gemmi.cif.as_string(ops[0]).replace(" ", "") not in _IDENTITY_OPS:
            return None
        if any(item.loop is not None and any(t.startswith(("_atom_site_moment", "_atom_site_aniso"))
                                             for t in item.loop.tags) for item in block):
            return None
        cell = [_number(block.find_value(f"_cell_{k}")) for k in
                ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")]
        table = block.find(["_atom_site_type_symbol", "_atom_site_label", "_atom_site_fract_x",
                            "_atom_site_fract_y", "_atom_site_fract_z", "_atom_site_occupancy"])
        if len(table) == 0 or any(v is None for v in cell):
            return None
        symbols, labels, coords = [], [], []
        for row in table:
            symbol = gemmi.cif.as_string(row[0])
            occupancy = _number(row[5])
            if occupancy != 1.0 or not symbol.isalpha():
                return None
            xyz = [_number(row[i]) for i in (2, 3, 4)]
            if any(v is None for v in xyz):
                return None
            symbols.append(symbol)
            labels.append(gemmi.cif.as_string(row[1]))
            coords.append([_pymatgen_fraction(v) for v in xyz])
    except (RuntimeError, ValueError, IndexError):
        return None
    return _build(cell, symbols, labels, coords)


def _number(raw):
    """A CIF number without an uncertainty, else None (then pymatgen decides)."""
    if raw is None or "(" in raw:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _pymatgen_fraction(v: float) -> float:
    import math

    for third in _THIRDS:
        if math.isclose(v / third, 1, abs_tol=_FRAC_TOLERANCE, rel_tol=0):
            v = float(str(third))
    return v - math.floor(v)


def _build(cell, symbols, labels, coords):
    import numpy as np
    from pymatgen.core import Element, Lattice, Structure

    if not all(Element.is_valid_symbol(s) for s in symbols):
        return None
    frac = np.array(coords, dtype=float)
    for el in set(symbols):  # two sites of one element at one place: pymatgen merges them; we do not
        idx = [i for i, s in enumerate(symbols) if s == el]
        if len(idx) > 1:
            d = frac[idx][:, None, :] - frac[idx][None, :, :]
            close = np.all(np.abs(d - np.round(d)) < _SITE_TOLERANCE, axis=-1)
            if close.sum() > len(idx):
                return None
    lattice = Lattice.from_parameters(*cell)
    m = lattice.matrix
    thickness = abs(np.linalg.det(m)) / np.linalg.norm(np.cross(np.roll(m, -1, 0), np.roll(m, -2, 0)), axis=1)
    if (thickness < 0.01).any():  # pymatgen refuses such cells: let it say so
        return None
    order = _pymatgen_site_order(symbols)
    return Structure(lattice, [symbols[i] for i in order], frac[order], labels=[labels[i] for i in order])


def _pymatgen_site_order(symbols):
    """The order Structure.get_sorted_structure gives: a stable sort by electronegativity, then by
    symbol, with the very comparison pymatgen's Site.__lt__ makes (NaN electronegativities included)."""
    import functools
    import warnings

    from pymatgen.core import Element

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noble gases: "no electronegativity", NaN
        x = {s: Element(s).X for s in set(symbols)}

    def less(i, j):
        a, b = symbols[i], symbols[j]
        if x[a] < x[b]:
            return True
        if x[a] > x[b]:
            return False
        return a < b

    return sorted(range(len(symbols)), key=functools.cmp_to_key(lambda i, j: -1 if less(i, j) else 1))


# No two atoms of a real crystal are this close: the shortest bond there is, H-H in H2, is 0.74 A,
# and the closest pair among the 33,038 crystals of mp_dev is H-H at 0.746 A (mp-720082). Atoms
# closer than this are an input error (a site listed twice, a wrong cell or coordinate), and a
# prediction for them means nothing; featurizing would quietly drop a zero-length edge. A plain
# floor for any pair of elements: pairs of particular elements may need more (not this check).
MIN_DISTANCE = 0.5  # A


def check_distances(structure, name: str, neighbors=None, minimum: float = MIN_DISTANCE) -> None:
    """Refuse a structure with two atoms (or an atom and its own periodic image) closer than `minimum`,
    naming the input and the pair. `neighbors`: (centers, neighbors, distances) of a periodic neighbor
    list that reaches at least `minimum` (featurize passes its own, so the check costs nothing there)."""
    import numpy as np

    if neighbors is None:
        center, neighbor, _, dist = structure.get_neighbor_list(minimum, exclude_self=True)
    else:
        center, neighbor, dist = neighbors
    close = np.flatnonzero(np.asarray(dist) < minimum)
    if not len(close):
        return
    k = close[np.argmin(np.asarray(dist)[close])]
    i, j = sorted((int(center[k]), int(neighbor[k])))
    pair = (f"atom {i} ({structure[i].specie}) and its own periodic image" if i == j else
            f"atoms {i} ({structure[i].specie}) and {j} ({structure[j].specie})")
    raise ScreenError(f"{name}: {pair} are {float(dist[k]):.2f} A apart, closer than the {minimum:g} A "
                      f"any two atoms of a crystal keep; check the file")


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
