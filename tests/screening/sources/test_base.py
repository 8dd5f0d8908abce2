"""What every source shares: open_source, Candidate, and the capabilities Source declares."""
import pickle

import pytest

from screening.errors import ScreenError
from screening.query import parse_query
from screening.sources import Candidate, Source, mp_sources, open_source
from screening.sources.base import Partition
from screening.sources.local import LocalSource
from screening.sources.mp import MPSource
from screening.sources.substitution import SubstitutionSource
from tests.conftest import MP_TEST_KEY
from tests.helpers import DATA, rocksalt
from tests.screening.sources.common import assert_same_structure


def test_open_source_specs_and_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    assert isinstance(open_source(f"local:{DATA}"), LocalSource)
    assert isinstance(open_source(None), SubstitutionSource)
    assert isinstance(open_source("substitution"), SubstitutionSource)
    assert open_source(f"substitution:local:{DATA}").base.path == DATA.resolve()
    for spec, fragment in [("local:/no/such/file.csv", "no such file or directory"),
                           ("local:", "needs a path"),
                           ("mpx", "unknown source"),
                           (str(DATA), f"did you mean local:{DATA}"),
                           ("mp", "MP_API_KEY is not set"),
                           ("substitution:mp", "MP_API_KEY is not set"),
                           ("substitution:substitution", "must come from mp or local:PATH")]:
        with pytest.raises(ScreenError, match=fragment) as e:
            open_source(spec)
        assert "\n" not in str(e.value)
    monkeypatch.setenv("MP_API_KEY", MP_TEST_KEY)
    assert isinstance(open_source(None), MPSource) and isinstance(open_source(""), MPSource)


def test_candidate_pickles_and_needs_a_structure():
    c = Candidate("local:x", "mp-1", "NaCl", rocksalt(), known={"band_gap": 5.0})
    c2 = pickle.loads(pickle.dumps(c))
    assert (c2.source, c2.id, c2.formula, c2.known) == ("local:x", "mp-1", "NaCl", {"band_gap": 5.0})
    assert_same_structure(c2.structure, c.structure)
    with pytest.raises(ValueError):
        Candidate("x", "y", "NaCl")


def test_mp_gnome_and_rate_options_are_checked(monkeypatch):
    monkeypatch.setenv("MP_API_KEY", MP_TEST_KEY)
    for spec in (f"local:{DATA}", "substitution", f"substitution:local:{DATA}"):
        with pytest.raises(ScreenError, match="`gnome`: only the Materials Project"):
            open_source(spec, gnome=True)
    assert open_source("substitution:mp", gnome=True).base.gnome is True
    assert open_source(None, gnome=True).gnome is True  # the key is set: mp
    for rate in (0, -1, 2.5):
        with pytest.raises(ScreenError, match=f"`mp_rate` {rate}: a whole number"):
            open_source("mp", rate=rate)
    assert open_source("mp", rate=3).budget.rate == 3


class Listed(Source):
    """The least a source must be: fetch() and describe(); it records the queries it was asked."""

    name = "listed"

    def __init__(self, candidates):
        self.candidates, self.asked = candidates, []

    def fetch(self, query):
        query = parse_query(query) if isinstance(query, str) else query
        self.asked.append(str(query))
        return [c for c in self.candidates if query.matches(set(c.structure.composition.as_dict()), c.formula, c.id)]

    def describe(self):
        return "listed v1"


def test_a_minimal_source_gets_the_declared_capabilities_and_their_defaults():
    nacl, kcl, kbr = (Candidate("listed", i, f, rocksalt(a, els)) for i, f, a, els in
                      [("1", "NaCl", 5.64, ("Na", "Cl")), ("2", "KCl", 6.29, ("K", "Cl")),
                       ("3", "KBr", 6.6, ("K", "Br"))])
    source = Listed([nacl, kcl, kbr])
    assert (source.knows_stability, source.hypothetical, source.base) == (False, False, None)
    assert source.thermo() is None  # no reference phases of its own
    assert source.partitions(parse_query("Na-Cl"), 10) is None  # it cannot split before it fetches
    with pytest.raises(NotImplementedError, match="listed has no partitions"):
        source.fetch_partition(parse_query("Na-Cl"), Partition("rows 1..1 #1", (1,)), entries=None)
    assert source.settings() == {}
    # fetch_systems falls back to one fetch per system
    assert [c.id for c in source.fetch_systems(["Cl-Na", "Br-K", "Li-O"])] == ["1", "3"]
    assert source.asked == ["Cl-Na", "Br-K", "Li-O"]
    assert mp_sources(source) == []


def test_the_sources_declare_what_they_can(monkeypatch, mp_dev_source):
    monkeypatch.setenv("MP_API_KEY", MP_TEST_KEY)
    mp, local, sub = open_source("mp"), open_source(f"local:{DATA}"), open_source("substitution:mp")
    assert [s.knows_stability for s in (mp, local, sub)] == [True, False, False]
    assert [s.hypothetical for s in (mp, local, sub)] == [False, False, True]
    assert (mp.base, local.base, sub.base.name) == (None, None, "mp")
    assert mp_sources(sub) == [sub.base] and mp_sources(mp) == [mp] and mp_sources(local) == []
    assert local.thermo() is None and sub.thermo() is None and mp.thermo() is not None
    # a CSV's own fetch_systems (one pass) gives what the fallback (a fetch per system) gives
    systems = ["Cl-Na", "Fe-Li-O", "Br-K-O"]
    ids = sorted(c.id for c in mp_dev_source.fetch_systems(systems))
    assert ids == sorted(c.id for c in Source.fetch_systems(mp_dev_source, systems)) and len(ids) > 30
