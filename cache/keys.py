"""Content-addressed keys.

A graph key is sha256 over three things:
  - the canonicalised structure: lattice matrix (A) and fractional coordinates
    rounded to `tol` (default 1e-4), coordinates wrapped into [0, 1), sites
    sorted by (species, coordinates);
  - the featurizer config fingerprint (cutoff, max neighbors, version...);
  - STORE_FORMAT, so a new store format never serves old graphs.
So the same crystal with its sites in another order, or shifted by whole
lattice vectors, gets the same key, and a different cutoff gets another one.

What rounding means: structures closer than `tol` share a key (their graphs
differ by about tol x cell length, ~1e-3 A), and two copies of one crystal that
sit right at a rounding boundary may get two keys (a harmless cache miss).
Rotated or re-chosen cells are different keys: no symmetry analysis here.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from screening.featurize import FeaturizerSettings

STORE_FORMAT = 2  # bump when the graph store layout or key recipe changes
TOLERANCE = 1e-4  # fractional coordinates (unitless) and lattice (A) are rounded to this


def _sha(text: str, n: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _species(site, steps: int) -> list:
    """[[Z, occupancy in 1/steps], ...]: ordered sites and disordered ones key alike."""
    return sorted([el.Z, int(round(occ * steps))] for el, occ in site.species.items())


def canonical_structure(structure, tol: float = TOLERANCE) -> str:
    steps = int(round(1 / tol))
    lattice = np.round(structure.lattice.matrix / tol).astype(np.int64)
    frac = np.mod(structure.frac_coords, 1.0)
    # Round first, then wrap again: 0.99999996 rounds up to a whole cell, which is 0.
    coords = np.round(frac * steps).astype(np.int64) % steps
    sites = sorted(zip((_species(s, steps) for s in structure), coords.tolist()))
    return json.dumps({"tol": tol, "lattice": lattice.tolist(), "sites": sites}, separators=(",", ":"))


def structure_key(structure, featurizer: FeaturizerSettings, tol: float = TOLERANCE) -> str:
    """Key of the graph `featurizer` makes of `structure` (32 hex digits)."""
    return _sha(f"{STORE_FORMAT}|{featurizer.fingerprint()}|{canonical_structure(structure, tol)}")


def structures_key(query_key: str, source_description: str) -> str:
    """Key of a fetched candidate list: the query and the source (with its data version)."""
    return _sha(f"{STORE_FORMAT}|{query_key}|{source_description}", 24)


def references_key(description: str) -> str:
    """Key of the cached reference phases of one database (its description names the version)."""
    return _sha(f"{STORE_FORMAT}|references|{description}", 24)


def entry_key(entry: str) -> str:
    """Key of one database entry fetched in full (its text names the entry and its version)."""
    return _sha(f"{STORE_FORMAT}|entry|{entry}", 32)
