"""`source` local:PATH: CSV files, CGCNN directories, structure files."""
import pickle

import pandas as pd
import pytest
from pymatgen.core import Composition

from screening.errors import ScreenError
from screening.query import parse_query
from screening.sources.local import LocalSource
from tests.helpers import DATA, mp_rows, rocksalt
from tests.screening.sources.common import assert_same_structure, elements_of


def test_local_csv_li_x_o_is_exactly_the_pandas_filter(table, local_li_x_o):
    els = table["formula"].map(elements_of)
    expected = table.loc[els.map(lambda e: len(e) == 3 and {"Li", "O"} <= e), "material_id"].tolist()
    ids = [c.id for c in local_li_x_o]
    assert len(expected) > 400
    assert ids == expected and len(set(ids)) == len(ids)  # file order, each once
    for c in local_li_x_o[:50]:
        comp_els = {el.symbol for el in c.structure.composition.elements}
        assert len(comp_els) == 3 and {"Li", "O"} <= comp_els
        assert c.formula == c.structure.composition.reduced_formula
        assert c.source == f"local:{DATA.resolve()}"
    row = table.set_index("material_id").loc[ids[0]]
    assert local_li_x_o[0].known == pytest.approx({k: row[k] for k in ("formation_energy_per_atom", "band_gap", "efermi")})


def test_local_csv_formula_ids_and_exclude(mp_dev_source, table, local_li_x_o):
    lfp = mp_dev_source.fetch("LiFePO4")
    red = {f: Composition(f).reduced_formula for f in table["formula"].unique()}
    assert [c.id for c in lfp] == table.loc[table["formula"].map(red) == "LiFePO4", "material_id"].tolist()
    assert len(lfp) >= 2 and all(c.formula == "LiFePO4" for c in lfp)
    by_id = mp_dev_source.fetch("mp-22862,mp-1,mp-999999999")  # the unknown id is simply absent
    assert [c.id for c in by_id] == ["mp-22862", "mp-1"]
    assert by_id[0].formula == "NaCl"
    all_li_x_o = {c.id for c in local_li_x_o}
    no_co = {c.id for c in mp_dev_source.fetch(parse_query("Li-*-O", exclude=["Co", "Fe"]))}
    dropped = all_li_x_o - no_co
    assert no_co < all_li_x_o and dropped
    assert all(elements_of(f) & {"Co", "Fe"} for f in table.set_index("material_id").loc[sorted(dropped), "formula"])


def test_local_csv_lazy_carries_cif(local_li_x_o):
    lazy = LocalSource(DATA, lazy=True).fetch("Li-*-O")
    assert [c.id for c in lazy] == [c.id for c in local_li_x_o]
    c = lazy[0]
    assert c._structure is None and c.cif.startswith("# generated using pymatgen")
    c2 = pickle.loads(pickle.dumps(c))
    assert c2._structure is None
    assert_same_structure(c2.structure, local_li_x_o[0].structure)


def _write_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)


def test_local_csv_bad_cif_in_matching_row_names_the_row(tmp_path):
    good = mp_rows(40)
    rows = good.to_dict("records")
    nacl = rows[0] | {"material_id": "mp-bad", "formula": "NaCl", "cif": "data_x\n_cell_length_a 1\nloop_\n"}
    other = rows[0] | {"material_id": "mp-other", "formula": "KBr", "cif": "not a cif"}
    path = tmp_path / "rows.csv"
    _write_csv(path, rows + [nacl, other])
    src = LocalSource(path)
    with pytest.raises(ScreenError, match="mp-bad") as e:
        src.fetch("Na-Cl")
    assert "\n" not in str(e.value) and "could not parse CIF" in str(e.value)
    assert src.fetch("K-Cl") == []  # the bad KBr row is never parsed for other queries
    lazy = LocalSource(path, lazy=True).fetch("Na-Cl")
    assert [c.id for c in lazy] == ["mp-bad"]
    with pytest.raises(ScreenError, match="mp-bad"):
        lazy[0].structure


def test_local_directories_and_single_file(tmp_path):
    nacl, kcl = rocksalt(5.64, ("Na", "Cl")), rocksalt(6.29, ("K", "Cl"))
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    nacl.to(filename=str(cifs / "nacl.cif"))
    kcl.to(filename=str(cifs / "POSCAR"), fmt="poscar")
    src = LocalSource(cifs)
    assert [(c.id, c.formula) for c in src.fetch("*-Cl")] == [("POSCAR", "KCl"), ("nacl", "NaCl")]
    assert [c.id for c in src.fetch("Na-Cl")] == ["nacl"] and src.fetch("Li-*-O") == []

    cgcnn = tmp_path / "cgcnn"
    cgcnn.mkdir()
    (cgcnn / "id_prop.csv").write_text("101,-2.1\n102,-2.2\n")
    nacl.to(filename=str(cgcnn / "101.cif"))
    kcl.to(filename=str(cgcnn / "102.cif"))
    hits = LocalSource(cgcnn).fetch("K-Cl")
    assert [(c.id, c.formula, c.known) for c in hits] == [("102", "KCl", {})]
    assert_same_structure(hits[0].structure, LocalSource(cifs / "POSCAR").fetch("KCl")[0].structure)


def test_local_describe_is_stable_and_tracks_content(tmp_path):
    path = tmp_path / "rows.csv"
    _write_csv(path, mp_rows(5).to_dict("records"))
    a = LocalSource(path).describe()
    assert a == LocalSource(path).describe() and a.startswith(f"local:{path.resolve()} sha256=")
    src = LocalSource(path)
    src.fetch("mp-1")
    copy = pickle.loads(pickle.dumps(src))  # the path travels, not the table
    assert copy._table is None and [c.id for c in copy.fetch("mp-1")] == ["mp-1"]
    _write_csv(path, mp_rows(6).to_dict("records"))
    assert LocalSource(path).describe() != a


@pytest.mark.parametrize("text, size", [("*-*-O", 97), ("Li-*-O", 5), ("all", 4000), ("mp-1,mp-1001", 1)])
def test_csv_partitions_cover_each_matching_row_exactly_once(text, size):
    """Workers fetch partitions themselves; together they are exactly what one fetch returns."""
    from screening.query import parse_query
    from screening.sources.local import LocalSource

    source, query = LocalSource(DATA, lazy=True), parse_query(text)
    parts = source.partitions(query, size)
    rows = [r for p in parts for r in p.rows]
    assert len(rows) == len(set(rows)) and all(0 < len(p.rows) <= size for p in parts)
    assert len({p.label for p in parts}) == len(parts)
    got = [c.id for p in parts for c in source.fetch_partition(query, p)]
    assert got == [c.id for c in source.fetch(query)]
    assert len(got) == len(set(got))
