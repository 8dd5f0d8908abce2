"""Rank candidates: predicted energy above the convex hull, metal / non-metal class, filters.

E_hull of a candidate is computed from its *predicted* formation energy
against the reference phases of its chemical system (their DFT formation
energies; pure elements at 0 eV/atom): their convex hull as pymatgen's PhaseDiagram
builds it (screening/hull.py). Negative
values mean the model puts the candidate below the known hull.

`dft_e_above_hull` beside it is the source's own value where the source has one
(the Materials Project's energy_above_hull, from its own hull and
compatibility scheme), else computed here from the candidate's DFT formation
energy against the same reference phases.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, List, Optional, Protocol, Tuple

import numpy as np
import pandas as pd

from screening.domain import UNRELAXED
from screening.errors import ScreenError
from screening.formula import element_set
from screening.hull import Hull, Phase, composition
from screening.properties import METAL_GAP_EV, is_metal
from screening.thin import hull_drops
from screening.uncertainty import KNOWN, UNRELAXED as UNRELAXED_STAGE, stage_std

FORMATION = "pred_formation_energy_per_atom"
GAP = "pred_band_gap"
P_METAL = "pred_p_metal"  # from a model with the metal head (screening/model.py)
DFT_FORMATION = "dft_formation_energy_per_atom"  # known value of a candidate from a source with DFT data
DFT_E_HULL = "dft_e_above_hull"
# What the MP source says of a crystal (screening/sources/mp.py); `new_only` reads them.
DFT_STABLE, EXPERIMENTAL = "dft_is_stable", "experimental"
# The known crystal a hypothetical candidate is anchored to (screening/anchors.py adds these columns).
ANCHOR_ID, ANCHOR_DFT, ANCHOR_PRED, ANCHOR_ON_HULL = ("anchor_id", "anchor_dft_formation_energy_per_atom",
                                                      "anchor_pred_formation_energy_per_atom", "anchor_on_hull")
BELOW_KNOWN = "below_known_ground_state"  # flag: predicted below a known on-hull ground state by more than 2σ


RANK_BY = ("p_stable", "e_above_hull")


@dataclass
class RankSettings:
    rank_by: str = "p_stable"  # p_stable: most probably stable first; e_above_hull: lowest mean first
    stable_within: float = 0.0  # eV/atom: "stable" means E_hull <= this
    gap_threshold: float = METAL_GAP_EV
    nonmetal: bool = False
    gap_min: Optional[float] = None
    gap_max: Optional[float] = None
    ehull_max: Optional[float] = None
    new_only: bool = False  # drop crystals on the source's (MP's) hull or known experimentally
    top: Optional[int] = None
    # eV/atom added in quadrature to the E_hull std of candidates flagged "unrelaxed": the ensemble's
    # members agree on an unrelaxed structure about as much as on its relaxed one, yet the structure
    # itself moves the prediction (benchmarks/relax_robustness.py measures by how much).
    # None: the model manifest's unrelaxed_std (0 when it has none).
    unrelaxed_std: Optional[float] = None
    # the manifest's per-stage error terms (screening/uncertainty.py); None: unrelaxed_std alone
    stage_std: Optional[dict] = None
    # eV/atom added to the ΔEf of unrelaxed candidates for E_hull: what relaxing moved the relaxed
    # candidates' predictions by (workflows/run/funnel.py measures it in each run), so the ones left
    # unrelaxed are ranked by what they would likely be after relaxation, not as generated
    unrelaxed_shift: float = 0.0

    def check(self) -> None:
        """One-line errors for settings that contradict themselves (the run checks them up front too)."""
        if self.gap_min is not None and self.gap_max is not None and self.gap_min > self.gap_max:
            raise ScreenError(f"`gap_min` {self.gap_min} is above `gap_max` {self.gap_max}")
        if self.rank_by not in RANK_BY:
            raise ScreenError(f"`rank_by` {self.rank_by}: choose {' or '.join(RANK_BY)}")
        check_unrelaxed_std(self.unrelaxed_std)


def check_unrelaxed_std(value: Optional[float]) -> None:
    """The structure error of unrelaxed candidates (a run's option, or a model manifest's figure)."""
    if value is not None and not 0 <= value < 10:
        raise ScreenError(f"`unrelaxed_std` {value}: need 0 <= eV/atom < 10")


def reference_name(material_id, reduced_formula: str) -> str:
    """How a reference phase is named in hulls and caches: an id alone could name another crystal."""
    return f"{material_id}|{reduced_formula}"


class HullEnergies(Protocol):
    """What rank() asks of its reference phases; ReferencePhases and HullTable both answer it."""

    def e_above_hull(self, formulas, predicted, known=None, ids=None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(predicted E_hull, known E_hull or None) of each candidate, as hull_energies defines them."""


class ReferencePhases:
    """DFT formation energies of known phases, looked up by chemical sub-system; ids optional."""

    def __init__(self, formulas: Iterable[str], formation_energies: Iterable[float],
                 ids: Optional[Iterable[str]] = None):
        self._by_system: Dict[FrozenSet[str], List[Phase]] = {}
        self.ids: set = set()
        formulas = list(formulas)
        ids = [None] * len(formulas) if ids is None else list(ids)
        for f, e, i in zip(formulas, formation_energies, ids):
            if e is None or not np.isfinite(e):
                continue
            name = None if i is None else reference_name(i, composition(f).reduced_formula)
            phase = Phase.of(f, float(e), name)
            self._by_system.setdefault(frozenset(phase.reduced), []).append(phase)
            if name is not None:
                self.ids.add(name)

    def phases_within(self, system: FrozenSet[str]) -> List[Phase]:
        """The phases of the system and its sub-systems (a leave-one-out hull: Hull.without)."""
        from itertools import combinations

        return [p for k in range(1, len(system) + 1) for sub in combinations(sorted(system), k)
                for p in self._by_system.get(frozenset(sub), [])]

    def thin(self, system: FrozenSet[str]) -> List[str]:
        """The proper sub-systems of two or more elements that hold no phase ("Li-Tl"): where the
        hull lacks them, it lies too high there, and candidates look more stable than they are."""
        from itertools import combinations

        return ["-".join(sub) for k in range(2, len(system)) for sub in combinations(sorted(system), k)
                if not self._by_system.get(frozenset(sub))]

    def hull(self, system: FrozenSet[str]) -> Hull:
        return Hull(system, self.phases_within(system))

    def e_above_hull(self, formulas, predicted, known=None, ids=None):
        """HullEnergies: one hull per chemical system, built now (hull_energies)."""
        return hull_energies(formulas, self, predicted, known, ids)

    def __len__(self):
        return sum(len(v) for v in self._by_system.values())

    def names_of(self, system: FrozenSet[str]) -> list:
        """The named phases of exactly this element set."""
        return [p.name for p in self._by_system.get(system, []) if "|" in p.name]

    def subset(self, systems: Iterable[FrozenSet[str]]) -> "ReferencePhases":
        """The phases the hulls of these systems need (their sub-systems'), say to ship to a worker."""
        from itertools import combinations

        out = ReferencePhases([], [])
        for system in systems:
            for k in range(1, len(system) + 1):
                for sub in map(frozenset, combinations(sorted(system), k)):
                    if sub in self._by_system and sub not in out._by_system:
                        out._by_system[sub] = self._by_system[sub]
                        out.ids.update(self.names_of(sub))
        return out


def energy_above_hull(formulas, formation_energies, references: ReferencePhases, ids=None) -> np.ndarray:
    """E_hull (eV/atom) of each candidate's formation energy against the reference phases (see hull_energies)."""
    return hull_energies(formulas, references, formation_energies, ids=ids)[0]


def hull_energies(formulas, references: ReferencePhases, predicted, known=None, ids=None):
    """(predicted E_hull, known E_hull or None), one hull per chemical system for both.

    A candidate that is itself a reference phase (same id and formula) has its predicted
    energy measured against the hull without its own entry (leave-one-out): against a
    hull that holds its own DFT energy, a known crystal's E_hull would be nothing but the
    model's error on it. Leaving out an entry changes the hull only if that entry is on
    it, so a new hull is built only for known candidates on the hull. The known
    (DFT) E_hull is measured against the full hull; a candidate that is a reference
    lies on or above it, so its value is at least 0.
    """
    formulas = list(formulas)
    ids = [None] * len(formulas) if ids is None else [str(i) for i in ids]
    groups: Dict[FrozenSet[str], tuple] = {}
    for f, i in zip(formulas, ids):
        fs, names = groups.setdefault(element_set(f), ([], []))
        fs.append(f)
        if i is not None:
            names.append(reference_name(i, composition(f).reduced_formula))
    table = HullTable({"-".join(sorted(s)): system_hull(references, s, fs, names)
                       for s, (fs, names) in groups.items()})
    return table.e_above_hull(formulas, predicted, known, ids)


def system_hull(references: ReferencePhases, system: FrozenSet[str], formulas: Iterable[str],
                leave_out: Iterable[str] = (), have: Optional[dict] = None) -> dict:
    """What ranking needs of one chemical system's hull, as plain numbers that can be cached
    and reused without building the hull again (HullTable reads it):

        formulas: {formula: [reduced formula, atoms, hull energy per atom, ties]}
        loo:      {name: [same]} against the hull without the reference `name` (leave-one-out)
        on_hull:  names of the references on the hull; references: names of this system's own
        thin:     its proper sub-systems with no reference phase (ReferencePhases.thin)
        thin_drop: {formula: how far its hull energy falls were those sub-systems to hold stable
                  phases (screening/thin.py)}, for the formulas where it falls at all

    `ties` are the total energies of hull entries of exactly that formula: pymatgen answers 0
    for an entry equal to one of them, and HullTable answers as it does. `have` is a cached
    answer to extend: only formulas and leave-one-out names it lacks are computed.
    """
    out = have or {"formulas": {}, "loo": {}}
    new = [f for f in dict.fromkeys(formulas) if f not in out["formulas"]]
    hull = None
    if new or "on_hull" not in out or "thin_drop" not in out:
        hull = references.hull(system)
        out["on_hull"] = sorted(p.name for p in hull.stable if "|" in p.name)
        out["references"] = sorted(references.names_of(system))
        out["thin"] = references.thin(system)
        for f in new:
            out["formulas"][f] = _hull_point(hull, f)
        out["thin_drop"] = {**out.get("thin_drop", {}),
                            **hull_drops(hull, out["thin"], new if "thin_drop" in out else out["formulas"])}
    on_hull = set(out["on_hull"])
    for name in leave_out:
        if name in on_hull and name not in out["loo"]:
            hull = hull or references.hull(system)
            out["loo"][name] = _hull_point(hull.without(name), name.split("|", 1)[1])
    return out


def _hull_point(hull: Hull, formula: str) -> list:
    c = composition(formula)
    return [c.reduced_formula, c.atoms, hull.energy_per_atom(formula), hull.ties(formula)]


class HullTable:
    """Hull energies of chemical systems from system_hull's answers ({"Fe-Li-O": answer}): E_hull
    as hull_energies gives it, number for number, with no phase diagram to build."""

    def __init__(self, systems: Dict[str, dict]):
        self.formulas: Dict[str, list] = {}
        self.loo: Dict[str, list] = {}
        self.on_hull: set = set()
        self.references: set = set()
        self.thin: Dict[str, List[str]] = {}  # system -> its sub-systems without reference phases
        self.thin_drop: Dict[str, float] = {}  # formula -> system_hull's thin_drop
        for system, answer in systems.items():
            if answer.get("thin"):
                self.thin[system] = answer["thin"]
            self.thin_drop.update(answer.get("thin_drop", {}))
            self.formulas.update(answer["formulas"])
            self.loo.update(answer["loo"])
            self.on_hull.update(answer["on_hull"])
            self.references.update(answer["references"])

    def e_above_hull(self, formulas, predicted, known=None, ids=None):
        """HullEnergies: read from the systems' answers (every formula must be among them)."""
        formulas = list(formulas)
        pred_out = np.full(len(formulas), np.nan)
        known_out = None if known is None else np.full(len(formulas), np.nan)
        ids = [None] * len(formulas) if ids is None else [str(i) for i in ids]
        for i, f in enumerate(formulas):
            point = self.formulas[f]
            name = None if ids[i] is None else reference_name(ids[i], point[0])
            is_reference = name in self.references
            if np.isfinite(predicted[i]):
                against = self.loo[name] if is_reference and name in self.on_hull else point
                pred_out[i] = _above(against, predicted[i])
            if known is not None and np.isfinite(known[i]):
                k = _above(point, known[i])
                known_out[i] = max(k, 0.0) if is_reference else k
        return pred_out, known_out


def _above(point: list, e: float) -> float:
    """PhaseDiagram.get_decomp_and_e_above_hull's E_hull of PDEntry(composition, e x atoms)."""
    _, atoms, hull, ties = point
    energy = float(e) * atoms
    for t in ties:  # pymatgen's own shortcut: an entry equal to a hull entry (hash, then allclose) is on it
        if f"{energy:.8f}" == f"{t:.8f}" and np.allclose(energy, t):
            return 0.0
    return energy / atoms - hull


def p_stable(e_hull_mean, e_hull_std, within: float = 0.0) -> np.ndarray:
    """P(E_hull <= within) for a normal E_hull(mean, std); a std of 0 gives 1 or 0 (0.5 exactly at the line)."""
    from scipy.special import ndtr  # the normal CDF (scipy.stats costs a second to import)

    mean = np.asarray(e_hull_mean, float)
    std = np.asarray(e_hull_std, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (within - mean) / std
    sharp = np.where(mean < within, 1.0, np.where(mean > within, 0.0, 0.5))
    out = np.where(std > 0, ndtr(z), sharp)
    return np.where(np.isfinite(mean), out, np.nan)


def metal_class(table: pd.DataFrame, gap_threshold: float = METAL_GAP_EV) -> np.ndarray:
    """metal / non-metal per row: P(metal) >= 0.5 where the model has the metal head, else Eg < threshold."""
    if P_METAL in table.columns:
        metal = table[P_METAL].to_numpy(float) >= 0.5
    else:
        metal = is_metal(table[GAP].to_numpy(float), gap_threshold)
    return np.where(metal, "metal", "non-metal")


def with_stages(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with `stage` (where the table has none: "unrelaxed" for rows flagged so, else "known")
    and `pred_de_vs_known` (ΔEf of the candidate minus the model's ΔEf of the known crystal of its
    composition; NaN without one)."""
    t = table.copy()
    if "stage" not in t.columns:
        flagged = t["flags"].fillna("").str.split("; ").map(lambda f: UNRELAXED in f) if "flags" in t.columns \
            else pd.Series(False, index=t.index)
        t["stage"] = np.where(flagged, UNRELAXED_STAGE, KNOWN)
    if ANCHOR_PRED in t.columns:
        t["pred_de_vs_known"] = t[FORMATION].to_numpy(float) - t[ANCHOR_PRED].to_numpy(float)
    else:
        t["pred_de_vs_known"] = np.nan
    return t


def hull_formation_energy(t: pd.DataFrame, unrelaxed_shift: float = 0.0) -> np.ndarray:
    """The ΔEf that E_hull is measured with: the model's, plus `unrelaxed_shift` for unrelaxed
    candidates (RankSettings). Never the anchored estimate (screening/anchors.py): on the rediscovery
    benchmark it separates stable from unstable candidates worse than the model's own ΔEf."""
    energy = t[FORMATION].to_numpy(float)
    if unrelaxed_shift:
        energy = energy + np.where((t["stage"] == UNRELAXED_STAGE).to_numpy(), unrelaxed_shift, 0.0)
    return energy


def _flag_below_known(t: pd.DataFrame, unrelaxed_shift: float = 0.0) -> None:
    """Flag candidates whose ΔEf (as E_hull used it) lies more than 2σ below a known crystal of
    their composition that is on the hull: a new polymorph that far below a known ground state is
    far more often a model error than a discovery."""
    if ANCHOR_DFT not in t.columns or not len(t):
        return
    on_hull = t[ANCHOR_ON_HULL].fillna(False).to_numpy(bool) if ANCHOR_ON_HULL in t.columns else True
    below = hull_formation_energy(t, unrelaxed_shift) - t[ANCHOR_DFT].to_numpy(float)
    with np.errstate(invalid="ignore"):
        hit = on_hull & (t["stage"] != KNOWN).to_numpy() & (below < -2 * t["pred_e_above_hull_std"].to_numpy(float))
    if hit.any():
        flags = t["flags"].fillna("") if "flags" in t.columns else pd.Series("", index=t.index)
        t["flags"] = [("; ".join(filter(None, [f, BELOW_KNOWN])) if h else f) for f, h in zip(flags, hit)]


def rank(table: pd.DataFrame, references: HullEnergies, options: RankSettings = RankSettings()) -> pd.DataFrame:
    """Add pred_e_above_hull, its std, pred_p_stable and pred_class; filter, sort, keep `top`.

    E_hull is the candidate's formation energy minus the reference hull's energy at its
    composition, a fixed number, so the ensemble's std of dEf is exactly the std of E_hull.
    pred_p_stable = P(E_hull <= stable_within) for E_hull ~ Normal(mean, std); the default
    ranking puts the most probably stable first, so a confident near-hull candidate beats
    a far-below-hull one the members disagree on. `references`: ReferencePhases, or a HullTable
    of the table's systems (the same numbers, without building phase diagrams): both HullEnergies.
    """
    if FORMATION not in table.columns:
        raise ScreenError("ranking needs a model with the formation_energy_per_atom task")
    options.check()
    if options.new_only and not {DFT_STABLE, EXPERIMENTAL} <= set(table.columns):
        raise ScreenError("`new_only`: this source does not say which crystals are on its hull or known "
                          "experimentally (the Materials Project does: `source` mp)")
    t = with_stages(table)
    ids = t["id"].tolist() if "id" in t.columns else None
    # the source's own E_hull (MP's) stands as it is; otherwise computed from the DFT formation energy
    known = t[DFT_FORMATION].to_numpy(float) if DFT_FORMATION in t.columns and DFT_E_HULL not in t.columns else None
    energy = hull_formation_energy(t, options.unrelaxed_shift)
    t["pred_e_above_hull"], dft = references.e_above_hull(t["formula"].tolist(), energy, known, ids)
    if dft is not None:
        t[DFT_E_HULL] = dft
    if options.new_only:  # unknown counts as known: a crystal is new only when the source says so
        t = t[t[DFT_STABLE].eq(False) & t[EXPERIMENTAL].eq(False)]
    std = t[f"{FORMATION}_std"] if f"{FORMATION}_std" in t.columns else pd.Series(0.0, index=t.index)
    t["pred_e_above_hull_std"] = stage_std(std.to_numpy(float), t["stage"].to_numpy(object), options.stage_std,
                                           options.unrelaxed_std or 0.0)
    _flag_below_known(t, options.unrelaxed_shift)
    t["pred_p_stable"] = p_stable(t["pred_e_above_hull"], t["pred_e_above_hull_std"], options.stable_within)
    if GAP in t.columns:
        t["pred_class"] = metal_class(t, options.gap_threshold)
        if options.nonmetal:
            t = t[t.pred_class == "non-metal"]
        if options.gap_min is not None:
            t = t[t[GAP] >= options.gap_min]
        if options.gap_max is not None:
            t = t[t[GAP] <= options.gap_max]
    elif options.nonmetal or options.gap_min is not None or options.gap_max is not None:
        raise ScreenError("band-gap filters need a model with the band_gap task")
    if options.ehull_max is not None:
        t = t[t.pred_e_above_hull <= options.ehull_max]
    if options.rank_by == "p_stable":  # ties (all 1 or 0 without an error bar) fall back to E_hull
        t = t.sort_values(["pred_p_stable", "pred_e_above_hull", FORMATION], ascending=[False, True, True],
                          kind="stable").reset_index(drop=True)
    else:
        t = t.sort_values(["pred_e_above_hull", FORMATION], kind="stable").reset_index(drop=True)
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    return t.head(options.top) if options.top else t
