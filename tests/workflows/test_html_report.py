"""report.html: one self-contained page per run. Its contents are checked as HTML; the default
`screen run`'s page is opened in a real headless Chromium (tests/browser.py), which loads it
without console errors or network requests, shows every row of results.csv and sorts by a
clicked column; a re-run's page shows what changed."""
import json
from html.parser import HTMLParser

import pandas as pd
import pytest

from workflows.run.html_report import write_report


class Page(HTMLParser):
    """The parts of a page the tests read: tables' headers and rows, and every resource it names."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self.resources, self.tags = {}, [], []
        self._table = self._row = None
        self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        for name in ("src", "href"):
            if name in a:
                self.resources.append(a[name])
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id"), {"head": [], "rows": []})
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            (self._table["rows"] if self._table["head"] else self._table["head"]).append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def made_up_run(n=6):
    ranked = pd.DataFrame({
        "rank": range(1, n + 1), "source": "substitution", "id": [f"sub-{i}" for i in range(n)],
        "formula": ["LiFeO2", "Li5FeO4", "LiFe5O8", "Li2FeO3", "LiFeO2", "Fe2O3"][:n],
        "flags": ["unrelaxed", "", "rare element Fe", "", "", "unrelaxed"][:n],
        "stage": ["relaxed", "predicted", "predicted", "relaxed", "predicted", "predicted"][:n],
        "pred_e_above_hull": [-0.2, 0.01, 0.05, 0.1, float("nan"), 0.3][:n],
        "pred_e_above_hull_std": [0.05, 0.02, 0.03, 0.04, 0.0, 0.1][:n],
        "pred_band_gap": [1.5, 0.6, 0.0, 2.0, 3.0, 0.01][:n], "pred_band_gap_std": [1.4, 0.8, 0.1, 0.5, 0.2, 0.01][:n],
        "pred_p_metal": [0.6, 0.9, 0.95, 0.1, 0.2, 0.4][:n], "pred_p_metal_std": [0.1] * n,
        "pred_class": ["metal", "metal", "metal", "non-metal", "non-metal", "non-metal"][:n],
        "pred_p_stable": [0.99, 0.3, 0.05, 0.01, 0.0, 0.0][:n],
        "structure_key": ["k"] * n, "model_hash": ["h"] * n, "featurizer": ["f"] * n})
    summary = {"query": "Fe-Li-O", "ranked": n, "candidates": 9, "ranked_by": "most probably stable first",
               "source": "substitution v1 <script>", "model": "m.json", "model_hash": "abc",
               "featurizer": {"cutoff": 8.0}, "reference_note": "reference phases: the table shipped with screen",
               "changes": {"note": "1 new (sub-5); 1 removed (sub-9)"},
               "provenance": {"batch_job": "1234", "client_host": "login", "worker_nodes": ["n1", "n2"],
                              "versions": {"screen": "0.1.0", "torch": None}}}
    changes = pd.DataFrame({"change": ["new", "removed"], "id": ["sub-5", "sub-9"], "formula": ["Fe2O3", "LiO8"],
                            "rank": pd.array([6, None], dtype="Int64"),
                            "previous_rank": pd.array([None, 4], dtype="Int64")})
    return ranked, summary, changes


def test_the_page_holds_query_provenance_changes_plot_and_every_row(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked, summary, changes = made_up_run()
    fig = plt.figure(figsize=(2, 2))
    fig.savefig(tmp_path / "plot.png")
    plt.close(fig)
    path = write_report(tmp_path / "report.html", ranked, summary, 0.025, "Li-*-O", plot=tmp_path / "plot.png",
                        changes=changes)
    text = path.read_text()
    page = Page(text)
    # self-contained: the one resource is the plot, inline; no stylesheet or script is fetched
    assert page.resources == [f"data:image/png;base64,{__import__('base64').b64encode((tmp_path / 'plot.png').read_bytes()).decode()}"]
    assert "link" not in page.tags and "http://" not in text and "https://" not in text
    assert "<title>screen: Li-*-O</title>" in text and "<h1>Li-*-O</h1>" in text  # the query as typed
    results = page.tables["results"]
    header = results["head"][0]
    assert header[:4] == ["#", "formula", "id", "stage"] and "σ E_hull" in header and "σ Eg" in header
    assert "flags" in header and "P(metal)" in header and "σ P(metal)" not in header
    assert "structure_key" not in header and "source" not in header  # the same for every row: provenance
    assert len(results["rows"]) == len(ranked)
    row = dict(zip(header, results["rows"][0]))
    assert row == {**row, "formula": "LiFeO2", "stage": "relaxed", "E_hull": "-0.200", "σ E_hull": "0.050",
                   "class": "metal*", "flags": "unrelaxed"}  # Eg 1.5 - 1.4 > 0.025: the gap disagrees
    assert dict(zip(header, results["rows"][4]))["E_hull"] == ""  # no value: blank, sorted last
    assert [r[:2] for r in page.tables["changes"]["rows"]] == [["new", "sub-5"], ["removed", "sub-9"]]
    assert "1 new (sub-5); 1 removed (sub-9)" in text
    assert "substitution v1 &lt;script&gt;" in text  # text from the run is escaped, never markup
    assert "batch job</dt><dd>1234" in text and "n1, n2" in text and "torch" not in text


def test_without_a_stage_column_or_a_plot_the_page_still_shows_the_rest(tmp_path):
    ranked, summary, _ = made_up_run()
    ranked = ranked.drop(columns=["stage", "pred_p_metal", "pred_p_metal_std"])
    summary.pop("changes")
    page = Page(write_report(tmp_path / "r.html", ranked, summary, 0.025, "Fe-Li-O").read_text())
    header = page.tables["results"]["head"][0]
    assert "stage" not in header and header[:3] == ["#", "formula", "id"]
    assert "changes" not in page.tables and page.resources == []
    assert [dict(zip(header, r))["class"] for r in page.tables["results"]["rows"]] == list(ranked.pred_class)



def test_the_page_explains_the_known_polymorph_and_thin_reference_flags_as_the_terminal_does(tmp_path):
    ranked, summary, _ = made_up_run()
    ranked["flags"] = ["thin_references", "", "below_known_ground_state", "", "", ""]
    ranked["thin_hull_drop"] = [0.3, 0.0, 0.0, 0.01, 0.0, 0.0]
    summary.update(anchor_note="anchors: 1 hypothetical candidates have a known crystal of their composition",
                   thin_note="thin reference systems: Fe-Li has no reference phase; the hull would fall <a lot>")
    text = write_report(tmp_path / "r.html", ranked, summary, 0.025, "Fe-Li-O").read_text()
    assert "known polymorphs</dt><dd>anchors: 1 hypothetical candidates have a known crystal" in text
    assert "thin reference systems</dt><dd>thin reference systems: Fe-Li has no reference phase; the hull would " \
           "fall &lt;a lot&gt;" in text
    page = Page(text)
    header = page.tables["results"]["head"][0]
    assert [dict(zip(header, r))["thin_hull_drop"] for r in page.tables["results"]["rows"]][:2] == ["0.300", "0.000"]
    # a run without them says nothing of them
    summary.pop("anchor_note"), summary.pop("thin_note")
    assert "known polymorphs" not in write_report(tmp_path / "s.html", ranked, summary, 0.025, "Fe-Li-O").read_text()

def test_a_whole_set_run_shows_its_head_and_says_so(tmp_path):
    ranked, summary, _ = made_up_run()
    text = write_report(tmp_path / "r.html", ranked, summary, 0.025, "all", max_rows=4).read_text()
    rows = Page(text).tables["results"]["rows"]
    assert [r[1] for r in rows] == list(ranked.formula[:4])
    assert "The first 4 of the 6 ranked; results holds them all" in text


# ---- a real run's page in a real browser ----

@pytest.fixture(scope="module")
def browser():
    from tests.browser import Browser, install

    reason = install()
    if reason:
        pytest.skip(reason)
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def rerun(default_run, tmp_path_factory, inprocess_client):
    """The default run's folder copied elsewhere and run again there keeping the top 5 (on the same
    cache, so quickly), so that its page has changes to show."""
    import shutil

    from screening.model_info import default_model_path
    from screening.rank import RankSettings
    from workflows.run.options import PipelineSettings
    from workflows.run.pipeline import run_screening

    _, out, cache = default_run
    again = tmp_path_factory.mktemp("rerun") / "out"
    shutil.copytree(out, again)
    opts = PipelineSettings(query="O-Li-Fe", source="substitution", model=str(default_model_path()), device="cpu",
                            cache_dir=str(cache), out_dir=str(again), rank=RankSettings(top=5))
    run_screening(inprocess_client, opts)
    return again


def rows(browser, column=None):
    """The table's rows as the page shows them now (a column's cells, with column=)."""
    cells = "r.cells" if column is None else f"[r.cells[{column}]]"
    return browser.eval(f"Array.from(document.querySelectorAll('#results tbody tr')).map(r => "
                        f"Array.from({cells}).map(c => c.getAttribute('data-v')))")


def click(browser, column: str) -> int:
    """Click a column's header; its position."""
    return browser.eval(f"(function () {{ var th = document.querySelector('#results th[data-col={column}]'); "
                        f"th.click(); return Array.prototype.indexOf.call(th.parentNode.children, th); }})()")


@pytest.mark.slow
def test_the_default_runs_page_opens_offline_shows_every_row_and_sorts(browser, default_run):
    _, out, _ = default_run
    results = pd.read_csv(out / "results.csv")
    browser.open((out / "report.html").as_uri())
    assert browser.console_errors() == []
    assert all(url.startswith(("file:", "data:")) for url in browser.requests())  # nothing from the network
    assert len(results) > 10 and len(rows(browser)) == len(results)
    assert browser.eval("document.querySelector('#plot').naturalWidth") > 500  # the embedded plot decoded

    col = click(browser, "formula")  # text: alphabetical, then reversed on a second click
    assert [r[0] for r in rows(browser, col)] == sorted(results.formula, key=str.lower)
    assert browser.eval(f"document.querySelectorAll('#results th')[{col}].getAttribute('aria-sort')") == "ascending"
    click(browser, "formula")
    assert [r[0] for r in rows(browser, col)] == sorted(results.formula, key=str.lower, reverse=True)

    col = click(browser, "pred_e_above_hull")  # numbers as numbers (-0.2 before -0.05 before 0.1)
    shown = [float(r[0]) for r in rows(browser, col)]
    assert shown == sorted(results.pred_e_above_hull) and shown != list(results.pred_e_above_hull)
    col = click(browser, "rank")
    assert [float(r[0]) for r in rows(browser, col)] == list(range(1, len(results) + 1))  # back as ranked
    assert browser.console_errors() == []


@pytest.mark.slow
def test_a_reruns_page_shows_what_changed(browser, rerun):
    out = rerun
    browser.open((out / "report.html").as_uri())
    assert browser.console_errors() == []
    results, changes = pd.read_csv(out / "results.csv"), pd.read_csv(out / "changes.csv")
    assert len(rows(browser)) == len(results) == 5
    shown = browser.eval("Array.from(document.querySelectorAll('#changes tbody tr')).map(r => "
                         "[r.cells[0].textContent, r.cells[1].textContent])")
    assert shown == [[c, i] for c, i in zip(changes.change, changes.id)] and len(shown) > 0
    note = json.loads((out / "summary.json").read_text())["changes"]["note"]
    assert note in browser.eval("document.body.textContent")


def test_the_browser_harness_sees_script_errors_and_requests(browser, tmp_path):
    """What the page tests rely on: a thrown error and a request that leaves the file are reported."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
                    '<script>throw new Error("boom")</script></body></html>')
    browser.open(page.as_uri())
    errors = browser.console_errors()
    assert any("boom" in e for e in errors)
    assert "http://127.0.0.1:9/x.png" in browser.requests()
