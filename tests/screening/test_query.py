import pytest

from screening.errors import ScreenError
from screening.query import CHEMSYS, FORMULA, IDS, parse_query


@pytest.mark.parametrize("text, kind, canonical, elements, wildcards", [
    ("Li-*-O", CHEMSYS, "Li-O-*", ("Li", "O"), 1),
    ("*-O", CHEMSYS, "O-*", ("O",), 1),
    ("Li-*-*-O", CHEMSYS, "Li-O-*-*", ("Li", "O"), 2),
    ("Li-Fe-O", CHEMSYS, "Fe-Li-O", ("Fe", "Li", "O"), 0),
    (" O-Li ", CHEMSYS, "Li-O", ("Li", "O"), 0),
    ("Fe", CHEMSYS, "Fe", ("Fe",), 0),
    ("*", CHEMSYS, "*", (), 1),
    ("LiFePO4", FORMULA, "LiFePO4", ("Fe", "Li", "O", "P"), 0),
    ("Li2Fe2P2O8", FORMULA, "LiFePO4", ("Fe", "Li", "O", "P"), 0),
    ("Fe2O3", FORMULA, "Fe2O3", ("Fe", "O"), 0),
    ("mp-19017", IDS, "mp-19017", (), 0),
    ("mp-1, mp-2,mp-1", IDS, "mp-1,mp-2", (), 0),
])
def test_parse_good_queries(text, kind, canonical, elements, wildcards):
    q = parse_query(text)
    assert (q.kind, str(q), q.elements, q.wildcards) == (kind, canonical, elements, wildcards)
    assert parse_query(str(q)) == q  # round trip


def test_ids_keep_order_and_n_elements():
    q = parse_query("mp-2,mp-1")
    assert q.ids == ("mp-2", "mp-1") and q.n_elements is None
    assert parse_query("Li-*-*-O").n_elements == 4
    assert parse_query("LiFePO4").formula == "LiFePO4"


@pytest.mark.parametrize("text, fragment", [
    ("", "empty query"),
    ("   ", "empty query"),
    ("Li--O", "empty part"),
    ("-Li-O", "empty part"),
    ("Li-O-", "empty part"),
    ("Li-Xx-O", 'unknown element "Xx"'),
    ("li-o", 'did you mean "Li"'),
    ("Li-Li-O", 'element "Li" appears twice'),
    ("Li*O", '"Li*O" mixes a wildcard'),
    ("Li-**-O", '"**" mixes a wildcard'),
    ("Fe2O3-Li", '"Fe2O3" is not an element'),
    ("LiXx2", 'unknown element "Xx"'),
    ("lifepo4", "starts with an element symbol"),
    ("Li$O", 'unexpected character "$"'),
    ("LiFe(PO4", "unbalanced parentheses"),
    ("O0", "not a valid formula"),
    ("mp-abc", '"mp-abc" is not a material id'),
    ("mp-", '"mp-" is not a material id'),
    ("mp-1,,mp-2", "empty part in the id list"),
    ("mp-1,", "empty part in the id list"),
    ("Li-*-O,Na-Cl", "commas only separate material ids"),
])
def test_malformed_queries_name_the_problem(text, fragment):
    with pytest.raises(ScreenError) as e:
        parse_query(text)
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg
    assert (f'query "{text}"' if text.strip() else 'query ""') in msg  # names the input


def test_chemsys_matches_exact_element_sets():
    q = parse_query("Li-*-O")
    assert q.matches({"Li", "Fe", "O"})
    assert q.matches({"Li", "Co", "O"})
    assert not q.matches({"Li", "O"})                 # binary
    assert not q.matches({"Li", "Fe", "Co", "O"})     # quaternary
    assert not q.matches({"Na", "Fe", "O"})           # no Li
    star_o = parse_query("*-O")
    assert star_o.matches({"Fe", "O"}) and not star_o.matches({"O"}) and not star_o.matches({"Li", "Fe", "O"})
    two = parse_query("Li-*-*-O")
    assert two.matches({"Li", "Fe", "P", "O"}) and not two.matches({"Li", "Fe", "O"})
    explicit = parse_query("Li-Fe-O")
    assert explicit.matches({"O", "Li", "Fe"}) and not explicit.matches({"Li", "Fe", "O", "P"})
    assert parse_query("*").matches({"Fe"}) and not parse_query("*").matches({"Fe", "O"})


def test_formula_and_id_matches():
    q = parse_query("Li2Fe2P2O8")
    assert q.matches({"Li", "Fe", "P", "O"}, "LiFePO4")
    assert not q.matches({"Li", "Fe", "P", "O"}, "Li3Fe2(PO4)3")
    ids = parse_query("mp-19017,mp-1")
    assert ids.matches({"Cs"}, "Cs", "mp-1") and not ids.matches({"Cs"}, "Cs", "mp-2")


def test_exclude():
    q = parse_query("Li-*-O", exclude=["Co", "Ni"])
    assert q.exclude == ("Co", "Ni") and q.key() == "Li-O-* exclude=Co,Ni"
    assert q.matches({"Li", "Fe", "O"}) and not q.matches({"Li", "Co", "O"})
    assert parse_query(str(q), q.exclude) == q
    assert parse_query("Li-*-O", exclude="Ni, Co") == q  # a comma string works too
    assert not parse_query("mp-1,mp-2", exclude=["Cs"]).matches({"Cs"}, "Cs", "mp-1")
    assert parse_query("Li-*-O").key() == "Li-O-*"


@pytest.mark.parametrize("query, exclude, fragment", [
    ("Li-*-O", ["Xx"], 'unknown element "Xx"'),
    ("Li-*-O", ["O"], "`exclude` O removes an element the query requires"),
    ("LiFePO4", ["Fe"], "`exclude` Fe removes"),
])
def test_bad_exclude(query, exclude, fragment):
    with pytest.raises(ScreenError, match=fragment.replace("(", r"\(")) as e:
        parse_query(query, exclude=exclude)
    assert "\n" not in str(e.value)


def test_chemical_systems_expand_wildcards():
    cands = ["Fe", "Co", "Li", "O", "Na"]
    assert parse_query("Li-*-O").chemical_systems(cands) == ["Co-Li-O", "Fe-Li-O", "Li-Na-O"]
    assert parse_query("Li-*-O", exclude=["Na"]).chemical_systems(cands) == ["Co-Li-O", "Fe-Li-O"]
    assert parse_query("Li-*-*-O").chemical_systems(["Fe", "Co", "Ni"]) == \
        ["Co-Fe-Li-O", "Co-Li-Ni-O", "Fe-Li-Ni-O"]
    assert parse_query("Li-Fe-O").chemical_systems(cands) == ["Fe-Li-O"]
    assert parse_query("LiFePO4").chemical_systems(cands) == ["Fe-Li-O-P"]
    with pytest.raises(ScreenError, match="no chemical system"):
        parse_query("mp-1").chemical_systems(cands)


def test_all_selects_every_crystal_but_the_excluded():
    q = parse_query("all")
    assert q.kind == "all" and str(q) == "all" and q.n_elements is None
    assert parse_query(str(q)) == q
    assert q.matches({"Li", "O"}, "Li2O", "mp-1") and q.matches({"Fe"}, "Fe")
    ex = parse_query(" all ", ["Li"])
    assert ex.key() == "all exclude=Li"
    assert not ex.matches({"Li", "O"}, "Li2O") and ex.matches({"Na", "O"}, "Na2O")
    with pytest.raises(ScreenError, match="All"):  # capitalised: an element symbol that does not exist
        parse_query("All")


def test_all_selects_every_row_of_a_local_csv(tmp_path):
    import pandas as pd

    from screening.sources.local import LocalSource
    from tests.helpers import DATA

    rows = pd.read_csv(DATA, usecols=["material_id"], dtype=str).material_id
    got = LocalSource(DATA, lazy=True).fetch(parse_query("all"))
    assert [c.id for c in got] == list(dict.fromkeys(rows))
