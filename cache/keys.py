"""Content-addressed keys.

A graph key is the hash of the canonicalised structure (lattice and
fractional coordinates rounded to `TOLERANCE`, sites sorted), the featurizer
config and the store format version: the same crystal written with its sites
in another order, or shifted by a lattice vector, gets the same key; a
different cutoff gets another.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from screening.featurize import FeaturizerConfig

FORMAT_VERSION = "1"
TOLERANCE = 1e-4  # fractional coordinates and lattice (A) are rounded to this


def _sha(text: str, n: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def canonical_structure(structure) -> str:
    lattice = np.round(structure.lattice.matrix / TOLERANCE).astype(np.int64)
    frac = np.mod(structure.frac_coords, 1.0)
    steps = np.round(frac / TOLERANCE).astype(np.int64) % int(round(1 / TOLERANCE))  # 0.99999 -> 0
    z = np.array([site.specie.Z for site in structure], dtype=np.int64)
    sites = sorted(zip(z.tolist(), map(tuple, steps.tolist())))
    return json.dumps({"lattice": lattice.tolist(), "sites": sites}, separators=(",", ":"))


def structure_key(structure, featurizer: FeaturizerConfig) -> str:
    return _sha(f"{FORMAT_VERSION}|{featurizer.fingerprint()}|{canonical_structure(structure)}")


def structures_key(query_key: str, source_description: str) -> str:
    """Key of a fetched candidate list: the query and the source (with its data version)."""
    return _sha(f"{FORMAT_VERSION}|{query_key}|{source_description}", 24)
