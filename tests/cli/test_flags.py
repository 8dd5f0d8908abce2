"""Library messages name parameters; the command line shows flags (screening/errors.py, cli.as_flags)."""
from dataclasses import dataclass

import cli
from screening.settings import default_of, help_of, setting


def test_backticked_parameters_become_flags_and_other_text_stays():
    message = "`partition_size` 0: must be at least 1 (`ema_decay`, `output_format`); run `screen train`"
    assert cli.as_flags(message) == ("--partition-size 0: must be at least 1 (--ema, --format); "
                                     "run `screen train`")


@dataclass
class _Example:
    size: int = setting(3, "How many.")
    names: list = setting(factory=lambda: ["a"], help="Which ones.")


def test_an_option_takes_its_default_and_help_from_the_settings_field():
    size, names = cli.option(_Example, "size"), cli.option(_Example, "names", "--name")
    assert (size.default, size.help) == (3, "How many.")
    assert (names.default, names.help, names.param_decls) == (["a"], "Which ones.", ("--name",))
    assert default_of(_Example, "names") is not default_of(_Example, "names")  # a fresh list each time
    assert cli.option(_Example, "names", shown=cli.comma).default == "a"  # a list as one comma-separated option
    assert cli.comma([0.8, 0.1, 0.1]) == "0.8,0.1,0.1"
    assert help_of(_Example, "size") == "How many."


def test_screen_train_options_are_the_training_settings():
    """Every TrainSettings field (device aside: the command line resolves "auto") and the featurizer's
    cutoff and neighbour count are `screen train` options with the field's own default and help."""
    from dataclasses import fields

    import typer.main

    from screening.featurize import FeaturizerSettings
    from screening.train_config import TrainSettings

    params = {p.name: p for p in typer.main.get_command(cli.app).commands["train"].params}
    settings = [(TrainSettings, f) for f in fields(TrainSettings) if f.name != "device"]
    settings += [(FeaturizerSettings, f) for f in fields(FeaturizerSettings) if f.name in ("cutoff", "max_neighbors")]
    for cls, f in settings:
        default = default_of(cls, f.name)
        shown = ",".join(map(str, default)) if isinstance(default, list) else default  # lists: one comma-separated option
        assert (params[f.name].default, params[f.name].help) == (shown, cli.as_flags(help_of(cls, f.name)))
        assert help_of(cls, f.name), f"{cls.__name__}.{f.name} has no help text"
    assert params["tasks"].default == "formation_energy_per_atom,band_gap,efermi"
    from workflows.train.settings import TrainRunSettings  # what it learns from, where it writes, how it runs
    for f in fields(TrainRunSettings):
        default = default_of(TrainRunSettings, f.name)
        assert params[f.name].help == cli.as_flags(help_of(TrainRunSettings, f.name)) and params[f.name].help
        assert params[f.name].required if f.name == "data" else params[f.name].default == default
    assert "or the --resume checkpoint's directory" in params["out"].help and params["device"].default == "auto"
    assert (params["ema_decay"].opts, params["task_weights"].opts) == (["--ema"], ["--weights"])
    assert "`" not in params["weighting"].help and "--weights" in params["weighting"].help


def test_screen_train_names_its_flags_in_its_errors(tmp_path):
    """train_settings names parameters (`task_weights`, `resume`); the user reads --weights, --resume, --out."""
    from typer.testing import CliRunner

    def error(*args):
        r = CliRunner().invoke(cli.app, ["train", "--data", str(tmp_path / "x.csv"), *args])
        assert r.exit_code == 2, r.output
        return " ".join(r.output.split())

    assert error("--weights", "1,a") == "error: --weights '1,a': expected comma-separated numbers"
    assert error("--split", "0.8,x") == "error: --split '0.8,x': expected comma-separated numbers"
    resume, elsewhere = tmp_path / "run" / "last.pt", tmp_path / "elsewhere"
    assert error("--resume", str(resume), "--out", str(elsewhere)) == \
        f"error: --resume {resume} continues the run in {resume.parent}, not --out {elsewhere}"


def _raised(call) -> str:
    from screening.errors import ScreenError

    try:
        call()
    except ScreenError as e:
        return str(e)
    raise AssertionError("no ScreenError")


def _messages():
    """Library messages as the user reads them: each names parameters, and the command line shows the flags."""
    from screening.query import parse_query
    from screening.relax import check_relaxer
    from screening.split import split_indices
    from screening.train_config import TrainSettings
    from screening.weighting import make_weighting

    tasks = ["formation_energy_per_atom", "band_gap"]
    return [
        (lambda: TrainSettings(tasks, loss="l3").check(), "--loss l3: choose mse, l1, huber"),
        (lambda: TrainSettings(tasks, optimizer="sgd").check(), "--optimizer sgd: choose adam or adamw"),
        (lambda: TrainSettings(tasks[:1]).check(), "the metal head needs the band_gap task (its label is Eg < "),
        (lambda: TrainSettings(tasks[:1]).check(), "add it to --tasks or pass --no-metal-head"),
        (lambda: TrainSettings(tasks, ema_decay=1.0).check(), "--ema 1.0: need 0 <= decay < 1 (0 turns it off)"),
        (lambda: TrainSettings(tasks, epochs=0).check(), "--epochs must be >= 1 and --batch-size >= 2"),
        (lambda: split_indices(10, [0.8, 0.8, 0.1], 0), "--split [0.8, 0.8, 0.1]: need three fractions >= 0 "),
        (lambda: make_weighting("fixed", 2, [1.0]), "--weights: 1 weights for 2 tasks"),
        (lambda: make_weighting("uncertainty", 2, [1.0, 2.0]),
         "--weights: fixed weights cannot be combined with --weighting uncertainty"),
        (lambda: check_relaxer("mace"), "--relax mace: choose chgnet"),
        (lambda: parse_query("Li-*-O", exclude=["O"]), 'query "Li-*-O": --exclude O removes an element'),
        (lambda: parse_query("Li-*-O", exclude=["Xx"]), '--exclude "Xx": unknown element "Xx"'),
    ]


def test_library_messages_read_as_flags_on_the_command_line():
    for call, shown in _messages():
        message = _raised(call)
        assert "--" not in message and "`" in message, message
        assert shown in cli.as_flags(message), (message, shown)


def _screen_flags() -> set:
    """Every option flag of every `screen` command."""
    import typer.main

    def walk(command):
        for p in command.params:
            if p.param_type_name == "option":
                yield from p.opts + p.secondary_opts
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)
    return set(walk(typer.main.get_command(cli.app)))


def _message_parameters():
    """(file, `name` or `name=False`) for every backticked name in the messages of errors raised in
    screening/ and cache/ (the strings inside a call of ...Error(...), DamagedUnit(...), _unknown_element(...))."""
    import ast
    import re
    from pathlib import Path

    root = Path(cli.__file__).resolve().parent
    for path in sorted(p for d in ("screening", "cache") for p in (root / d).rglob("*.py")):
        for call in ast.walk(ast.parse(path.read_text())):
            f = getattr(call, "func", None)
            name = getattr(f, "id", None) or getattr(f, "attr", None) or ""
            if isinstance(call, ast.Call) and (name.endswith("Error") or name in ("DamagedUnit", "_unknown_element")):
                for node in (n for arg in call.args for n in ast.walk(arg)):
                    if isinstance(node, ast.Constant) and isinstance(node.value, str):
                        for m in re.finditer(r"`([a-z][a-z0-9_]*(=False)?)`", node.value):
                            yield str(path.relative_to(root)), m.group(1)


def test_every_parameter_a_message_names_is_a_flag_of_screen():
    """A parameter whose flag is spelled otherwise must be in cli.FLAGS, or the user reads a flag that does not exist."""
    flags = _screen_flags()
    named = sorted(set(_message_parameters()))
    assert ("screening/train_config.py", "metal_head=False") in named  # the scan sees the messages
    shown = {(f, p): cli.as_flags(f"`{p}`") for f, p in named}
    assert {k: v for k, v in shown.items() if v not in flags} == {}
