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
