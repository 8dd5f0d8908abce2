"""The command line as a new user meets it: --version, the help panels of `screen run`, the run
options `screen submit --help` lists, and a default run's terminal output (its title, one
"fetching" line, the class beside P(metal)) and report.html."""
import re
from importlib import metadata

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from workflows.api import RUN
from workflows.run.options import PANELS as RUN_PANELS

runner = CliRunner()
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}


def test_version_prints_the_package_version_and_the_bundled_models_hash():
    from screening.ensemble import load_model
    from screening.model_info import default_model_path

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == f"screen {metadata.version('screen')}"
    # the hash a run records in summary.json, read here by loading the ten members themselves
    assert lines[1].startswith(f"model {load_model(str(default_model_path())).hash} (")


def _panels(text: str) -> dict:
    """{panel title: the option names inside its box} of rich's help output."""
    panels, current = {}, None
    for line in text.splitlines():
        title = re.match(r"╭─ (.+?) ─", line)
        if title:
            current = panels.setdefault(title.group(1), [])
        elif line.startswith("╰"):
            current = None
        elif current is not None:
            option = re.match(r"│\s*\*?\s*(--[a-z][a-z-]*)", line)  # a row's first word (not its help's)
            if option:
                current.append(option.group(1))
    return panels


def test_run_help_groups_every_option_in_its_panel_in_order():
    r = runner.invoke(app, ["run", "--help"], env=WIDE)
    assert r.exit_code == 0, r.output
    panels = _panels(r.output)
    assert list(panels) == ["Options", *RUN_PANELS]  # --help alone, then the groups as users think
    for panel, names in RUN_PANELS.items():
        assert panels[panel] == ["--format" if n == "fmt" else "--" + n.replace("_", "-") for n in names], panel
    assert "--runner" not in r.output  # hidden: only a submitted job's tasks use it


def test_submit_help_lists_the_run_options_it_accepts():
    r = runner.invoke(app, ["submit", "--help"], env=WIDE)
    assert r.exit_code == 0, r.output
    listed = r.output[r.output.index("screen run options it accepts"):]
    for panel, names in RUN_PANELS.items():
        line = next(line for line in listed.splitlines() if line.strip().startswith(panel + ":"))
        for name in names:
            option = "--format" if name == "fmt" else "--" + name.replace("_", "-")
            if name in ("scheduler", "jobqueue"):  # the job runs its own cluster: submit refuses them
                assert option not in line
            else:
                assert option in line, (panel, option)


def test_cli_defaults_are_the_settings_the_api_uses():
    """One home for `screen run`'s defaults: the parsed defaults of the command are RunSettings' (workflows/api.RUN)."""
    from cli import _run_params

    params = _run_params(["--query", "Li-*-O"])
    assert {k: (str(v) if k in ("cache", "out") else v) for k, v in params.items() if k != "query"} == RUN


def test_the_class_is_marked_where_the_gap_regression_disagrees():
    from workflows.report import class_note, shown_class

    t = pd.DataFrame({  # LiTa2O4 of the issue; a metal whose gap straddles the threshold; two non-metals
        "pred_class": ["metal", "metal", "non-metal", "non-metal"],
        "pred_p_metal": [0.594, 0.9, 0.2, 0.4],
        "pred_band_gap": [1.486, 0.585, 2.0, 0.0],
        "pred_band_gap_std": [1.441, 0.835, 0.5, 0.01]})
    assert list(shown_class(t, 0.025)) == ["metal*", "metal", "non-metal", "non-metal*"]
    assert class_note(t, 0.025).startswith("class: from P(metal)") and class_note(t, 0.025).endswith("(2 of the 4 shown)")
    no_head = t.drop(columns="pred_p_metal")
    assert list(shown_class(no_head, 0.025)) == list(t.pred_class)
    assert class_note(no_head, 0.1).startswith("class: from the predicted band gap Eg (metal below 0.1 eV")


@pytest.mark.slow
def test_run_output_reads_at_a_glance(default_run):
    output, out, _ = default_run
    lines = output.splitlines()
    assert sum(line.strip() == "fetching candidates" for line in lines) == 1
    table = pd.read_csv(out / "results.csv")
    title = next(line for line in lines if "candidates, most probably stable first" in line)
    assert title.strip().startswith(f"O-Li-Fe: {len(table)} of {len(table)} candidates")  # as typed, not Fe-Li-O
    header = next(line for line in lines if "P(stable)" in line)
    cells = [h.strip() for h in header.strip("┃│ ").split("┃")]
    assert cells[cells.index("class") + 1] == "P(metal)"
    assert sum(line.startswith("class: from P(metal), the model's metal/non-metal head") for line in lines) == 1
    # each row's class is what its P(metal) says
    assert ((table.pred_p_metal >= 0.5) == (table.pred_class == "metal")).all()
    assert (out / "report.html").is_file() and f"report: {out / 'report.html'}" in output
