"""The Python API (workflows/api.py): the README's notebook example run as a script, the same checks
as the command line, an existing Dask client, and candidates' structures."""
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from screening.errors import ScreenError
from tests.helpers import DATA
from workflows.api import screen, structure
from workflows.api import RUN

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    """The first Python block of the README's *From Python (notebooks)* section, as written there."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python (notebooks)"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_screens_li_fe_o_and_reads_a_structure(tmp_path):
    from pymatgen.core import Structure

    from screening.structures import structure_from_cif_text

    work = tmp_path / "work"  # the example's ../shared is the real one, beside it
    work.mkdir()
    (tmp_path / "shared").symlink_to(DATA.parents[1], target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MP_API_KEY", "SCREEN_CACHE")}
    env["PYTHONPATH"] = str(ROOT)
    # as a notebook runs it: top-level code in a __main__ without a file (README: scripts need the guard)
    r = subprocess.run([sys.executable, "-c", readme_example()], cwd=work, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    results = pd.read_csv(work / "li-fe-o" / "results.csv")
    assert len(results) == 10 and list(results["rank"]) == list(range(1, 11))
    assert set(results.formula.map(lambda f: frozenset(re.findall("[A-Z][a-z]?", f)))) == {frozenset("Li Fe O".split())}
    assert (work / "li-fe-o" / "report.html").is_file()
    printed = r.stdout.splitlines()
    assert results.formula[0] in printed[1]  # the table's first row, as printed

    best = Structure.from_file(work / "best.cif")
    first = pd.read_csv(DATA, usecols=["material_id", "cif"]).set_index("material_id").cif[results.id[0]]
    screened = structure_from_cif_text(first, results.id[0])
    assert best.composition.reduced_formula == screened.composition.reduced_formula == results.formula[0]
    assert best.lattice.abc == pytest.approx(screened.lattice.abc, abs=1e-4)
    assert printed[-1].startswith(results.formula[0])


@pytest.mark.parametrize("options, message", [
    (dict(query="Li-*-Xx"), "Xx"),
    (dict(top=-1), "--top -1: must be at least 1"),
    (dict(gap_min=2, gap_max=1), "--gap-min 2.0 is above --gap-max 1.0"),
    (dict(source="nowhere"), "unknown source"),
    (dict(worker=2), "screen(): unknown option 'worker' (did you mean workers?)"),
    (dict(memory="lots"), "--memory lots: not a size"),
])
def test_mistakes_raise_the_command_lines_one_line_errors_before_any_work(tmp_path, options, message):
    options = dict(dict(query="Li-Fe-O", cache=tmp_path / "c", out=tmp_path / "o"), **options)
    with pytest.raises(ScreenError) as e:
        screen(options.pop("query"), **options)
    from cli import as_flags

    # the library names parameters (`top`); as the command line shows it, the same words as `screen run`'s
    assert message in as_flags(str(e.value)) and "\n" not in str(e.value)
    assert not (tmp_path / "o" / "results.csv").exists()


@pytest.mark.parametrize("options, message", [
    (dict(nonmetal="yes"), "screen(): nonmetal='yes': True or False"),  # truthy: it ran as True
    (dict(top=2.5), "screen(): top=2.5: a whole number"),  # failed in rank after the whole run
    (dict(gap_min="1"), "screen(): gap_min='1': a number"),
    (dict(workers=True), "screen(): workers=True: a whole number"),
    (dict(out=None), "screen(): out=None: give a value or leave out out"),
    (dict(cache=3), "screen(): cache=3: a path"),  # it made a folder named 3
    (dict(exclude=["Fe", 3]), "screen(): exclude=['Fe', 3]: element symbols"),
    (dict(source=Path("x.csv")), "screen(): source=PosixPath('x.csv'): text"),
    (dict(query=["Li", "O"]), "screen(): query ['Li', 'O']: a str"),
])
def test_values_of_the_wrong_type_are_one_line_errors_before_any_work(tmp_path, options, message):
    options = dict(dict(query="Li-Fe-O", cache=tmp_path / "c", out=tmp_path / "o"), **options)
    with pytest.raises(ScreenError) as e:
        screen(options.pop("query"), **options)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()


def test_the_apis_types_are_the_command_lines():
    """workflows/api.py checks each option's type as cli.run's annotation converts it."""
    import inspect
    import typing

    from cli import run
    from workflows import api

    def kind(annotation):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
        return {float: "float", int: "int", bool: "flag", Path: "path", str: "text"}[inner[0]]

    hints = typing.get_type_hints(run)
    declared = {name: kind(hints[name]) for name in inspect.signature(run).parameters if name not in ("query", "runner")}
    checked = {name: ("float" if name in api.FLOATS else "int" if name in api.INTS else "flag" if name in api.FLAGS
                      else "path" if name in api.PATHS else "text") for name in declared}
    assert checked == declared


def test_the_cache_defaults_to_screen_cache_as_on_the_command_line(monkeypatch, tmp_path):
    from workflows.api import run_params

    monkeypatch.delenv("SCREEN_CACHE", raising=False)
    assert run_params("Li-O", {}, False)["cache"] == "screen-cache"
    monkeypatch.setenv("SCREEN_CACHE", str(tmp_path / "shared-cache"))
    assert run_params("Li-O", {}, False)["cache"] == str(tmp_path / "shared-cache")
    assert run_params("Li-O", {"cache": tmp_path / "mine"}, False)["cache"] == str(tmp_path / "mine")


def test_a_client_takes_the_place_of_the_cluster_options(tmp_path):
    with pytest.raises(ScreenError, match=r"screen\(\): workers: a client was given"):
        screen("Li-Fe-O", client=object(), workers=4, out=tmp_path / "o")


def test_the_defaults_are_the_run_settings_own():
    """RunSettings (the CLI's and the API's defaults) gives the library's own defaults."""
    from screening.rank import RankSettings
    from workflows.run.options import PipelineSettings, RunSettings

    # every option of the run has its default there, so screen() can fill in what a call leaves out
    assert set(RUN) | {"query"} == {f.name for f in dataclasses.fields(RunSettings)}

    same = {"partition_size": "partition_size", "device": "device", "no_worker_timeout": "no_worker_timeout",
            "cache": "cache_dir", "out": "out_dir", "fmt": "output_format", "drop_flagged": "drop_flagged",
            "gnome": "gnome", "relax": "relax", "source": "source", "reference": "reference"}
    run = PipelineSettings(query="x")
    assert {k: RUN[k] for k in same} == {k: getattr(run, f) for k, f in same.items()}
    # (stage_std comes from the model manifest, unrelaxed_shift from the funnel: the run sets them, not options)
    rank = {f.name: f.default for f in dataclasses.fields(RankSettings)
            if f.name not in ("gap_threshold", "stage_std", "unrelaxed_shift")}
    assert {k: RUN[k] for k in rank} == rank


@pytest.mark.slow
def test_an_existing_client_runs_it_and_structures_come_back_as_screened(tmp_path, model_path):
    from distributed import Client, LocalCluster

    from cache.keys import structure_key
    from screening.featurize import FeaturizerSettings

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        table = screen("Li-Fe-O", client=client, source="substitution", model=model_path, device="cpu",
                       cache=tmp_path / "c", out=tmp_path / "o", relax_top=2)  # (2 CHGNet relaxations, not 16)
        assert cluster.status.name == "running"  # the caller's cluster, left running
    on_disk = pd.read_csv(tmp_path / "o" / "results.csv", dtype={"id": str}).fillna({"flags": ""})
    pd.testing.assert_frame_equal(table.reset_index(drop=True), on_disk, check_dtype=False, check_exact=False)
    assert table.attrs["screen"]["summary"]["candidates"] == len(table) > 5

    featurizer = FeaturizerSettings.from_dict(table.attrs["screen"]["summary"]["featurizer"])
    picked = table[table.pred_class == table.pred_class.iloc[-1]].iloc[-1]  # rows keep the run through selections
    s = structure(picked)  # a substitution candidate, made again
    assert s.composition.reduced_formula == picked.formula
    assert structure_key(s, featurizer) == picked.structure_key
    for _, row in table.head(2).iterrows():
        assert structure_key(structure(row), featurizer) == row.structure_key

    other = picked.copy()
    other["structure_key"] = "0" * 32  # as if the source had changed since
    with pytest.raises(ScreenError, match="is not the structure that was screened"):
        structure(other)
    with pytest.raises(ScreenError, match=r"pass a row of the table screen\(\) returned"):
        structure(pd.Series(picked.to_dict()))
