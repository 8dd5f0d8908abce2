"""Relaxation before prediction: the funnel's (workflows/run/funnel.py) and a run with `relax` "all".

Why: MT-CGCNN learned from DFT-relaxed crystals. A substitution candidate is a prototype
with a rescaled lattice, never relaxed, so the model extrapolates on it and its predicted
E_hull is biased low. A universal interatomic potential moves the atoms and the cell to a
nearby minimum first; benchmarks/relax_robustness.py measures how much of the gap it closes.

CHGNet only: its weights ship inside its own wheel, so nothing is downloaded at run time
(matgl, MACE and others fetch theirs and fail on machines without internet).

Recipe: ASE FIRE on a FrechetCellFilter (positions and cell together), until every force
and stress component is below fmax = 0.05 eV/A, at most 500 steps. One structure at a time
per process (a lock): CHGNet's memory grows quickly with the cell (docs/run_speed.md),
and a crystal above MAX_ATOMS is not relaxed at all (reported, and left flagged unrelaxed).
"""
from __future__ import annotations

import contextlib
import functools
import io
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Optional

from screening.errors import ScreenError

RELAXERS = ("chgnet",)
FMAX = 0.05  # eV/A
MAX_STEPS = 500
MAX_ATOMS = 200  # bigger cells are left unrelaxed: memory, and hours per crystal on a CPU

_lock = threading.Lock()  # one relaxation at a time in a process
_models: dict = {}


def _release_memory() -> None:
    """Hand freed heap back to the OS (glibc's malloc_trim; nothing elsewhere). A relaxation's
    force and stress graphs leave hundreds of MiB freed but held by malloc: a worker that relaxed
    a few 24-atom cells would otherwise keep about twice the memory it needs for the rest of the run."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None (macOS, musl: their allocator decides). Looked up once: finding
    the C library runs ldconfig in a subprocess, not something to do after every relaxation."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


@dataclass
class Relaxed:
    structure: "Structure"  # noqa: F821  (pymatgen, imported lazily)
    steps: int
    converged: bool
    energy_change: float  # eV/atom: the potential's energy after minus before
    volume_change: float  # relative: V_after / V_before - 1
    seconds: float

    def info(self) -> dict:
        return {"relax_steps": self.steps, "relax_converged": self.converged,
                "relax_energy_change": round(self.energy_change, 6),
                "relax_volume_change": round(self.volume_change, 6), "relax_seconds": round(self.seconds, 3)}


def check_relaxer(name: Optional[str]) -> None:
    """A one-line error for an unknown relaxer or a missing extra, before any work."""
    if name is None:
        return
    if name not in RELAXERS:
        raise ScreenError(f"`relax` {name}: choose {' or '.join(RELAXERS)}")
    from importlib.util import find_spec  # (not an import: chgnet takes seconds to import)

    if find_spec("ase") is None or find_spec("chgnet") is None:
        raise ScreenError(f"`relax` {name}: needs chgnet and ase, dependencies of screen "
                          f"(pip install -e . installs them)")


class Relaxer:
    def __init__(self, name: str = "chgnet", fmax: float = FMAX, max_steps: int = MAX_STEPS,
                 max_atoms: int = MAX_ATOMS, device: str = "cpu"):
        check_relaxer(name)
        self.name, self.fmax, self.max_steps, self.max_atoms, self.device = name, fmax, max_steps, max_atoms, device

    @property
    def version(self) -> str:
        """Everything that changes a relaxed structure: cached results are keyed by it. (The
        installed version from its metadata: importing chgnet costs the client seconds.)"""
        from importlib.metadata import version

        return (f"{self.name}-{version('chgnet')}-{self._model_name()}-fire-fmax{self.fmax:g}"
                f"-steps{self.max_steps}")

    @staticmethod
    def _model_name() -> str:
        return "0.3.0"  # CHGNet.load's default weights, inside the wheel

    def _calculator(self):
        key = (self.name, self.device)
        if key not in _models:
            from chgnet.model import CHGNet
            from chgnet.model.dynamics import CHGNetCalculator

            with contextlib.redirect_stdout(io.StringIO()):  # it prints its banner even when not verbose
                model = CHGNet.load(model_name=self._model_name(), use_device=self.device, verbose=False)
                _models[key] = CHGNetCalculator(model, use_device=self.device, on_isolated_atoms="ignore")
        return _models[key]

    def relax(self, structure) -> Relaxed:
        """The relaxed structure and what the relaxation did; a ScreenError if it cannot be done."""
        if len(structure) > self.max_atoms:
            raise ScreenError(f"{structure.composition.reduced_formula}: {len(structure)} atoms, more than the "
                              f"{self.max_atoms} that relaxation handles; left unrelaxed")
        from ase.filters import FrechetCellFilter
        from ase.optimize import FIRE
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        t0 = time.perf_counter()
        with _lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            atoms = AseAtomsAdaptor.get_atoms(structure)
            atoms.calc = self._calculator()
            n = len(atoms)
            try:
                e0 = atoms.get_potential_energy() / n
                v0 = atoms.get_volume()
                opt = FIRE(FrechetCellFilter(atoms), logfile=None)
                converged = bool(opt.run(fmax=self.fmax, steps=self.max_steps))
                e1 = atoms.get_potential_energy() / n
            except Exception as e:  # a potential can fail on odd inputs; the candidate stays unrelaxed
                raise ScreenError(f"{structure.composition.reduced_formula}: relaxation failed "
                                  f"({type(e).__name__}: {' '.join(str(e).split())[:120]})") from None
            out = AseAtomsAdaptor.get_structure(atoms)
            # Only the geometry: the adaptor also copies the calculator's per-site results (float32 magmoms).
            relaxed = Structure(out.lattice, out.species, out.frac_coords)
            done = Relaxed(relaxed, int(opt.nsteps), converged, float(e1 - e0), float(atoms.get_volume() / v0 - 1),
                           time.perf_counter() - t0)
            del atoms, opt
            _release_memory()
        return done


def distort(structure, seed: int, strain: float = 0.08, rattle: float = 0.1):
    """A copy distorted as an unrelaxed prototype would be: a random strain of up to ±strain on each
    axis and every atom moved by a normal rattle of `rattle` A per direction; seeded, so repeatable.
    Used by the robustness benchmark (benchmarks/relax_robustness.py) and the tests."""
    import numpy as np
    from pymatgen.core import Structure

    rng = np.random.default_rng(seed)
    s = structure.copy()
    s.apply_strain(rng.uniform(-strain, strain, 3))
    cart = s.cart_coords + rng.normal(0.0, rattle, (len(s), 3))
    return Structure(s.lattice, s.species, cart, coords_are_cartesian=True)
