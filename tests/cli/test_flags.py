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
    assert help_of(_Example, "size") == "How many."


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
    from screening.train import split_indices
    from screening.train_config import TrainConfig
    from screening.weighting import make_weighting

    tasks = ["formation_energy_per_atom", "band_gap"]
    return [
        (lambda: TrainConfig(tasks, loss="l3").check(), "--loss l3: choose mse, l1, huber"),
        (lambda: TrainConfig(tasks, optimizer="sgd").check(), "--optimizer sgd: choose adam or adamw"),
        (lambda: TrainConfig(tasks[:1]).check(), "the metal head needs the band_gap task (its label is Eg < "),
        (lambda: TrainConfig(tasks[:1]).check(), "add it to --tasks or pass --no-metal-head"),
        (lambda: TrainConfig(tasks, ema_decay=1.0).check(), "--ema 1.0: need 0 <= decay < 1 (0 turns it off)"),
        (lambda: TrainConfig(tasks, epochs=0).check(), "--epochs must be >= 1 and --batch-size >= 2"),
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
