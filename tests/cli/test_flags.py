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


def test_screen_train_options_are_the_training_settings():
    """Every TrainConfig field (device aside: the command line resolves "auto") and the featurizer's
    cutoff and neighbour count are `screen train` options with the field's own default and help."""
    from dataclasses import fields

    import typer.main

    from screening.featurize import FeaturizerConfig
    from screening.train_config import TrainConfig

    params = {p.name: p for p in typer.main.get_command(cli.app).commands["train"].params}
    settings = [(TrainConfig, f) for f in fields(TrainConfig) if f.name != "device"]
    settings += [(FeaturizerConfig, f) for f in fields(FeaturizerConfig) if f.name in ("cutoff", "max_neighbors")]
    for cls, f in settings:
        default = default_of(cls, f.name)
        shown = ",".join(map(str, default)) if isinstance(default, list) else default  # lists: one comma-separated option
        assert (params[f.name].default, params[f.name].help) == (shown, cli.as_flags(help_of(cls, f.name)))
        assert help_of(cls, f.name), f"{cls.__name__}.{f.name} has no help text"
    assert params["tasks"].default == "formation_energy_per_atom,band_gap,efermi"
    assert (params["ema_decay"].opts, params["task_weights"].opts) == (["--ema"], ["--weights"])
    assert "`" not in params["weighting"].help and "--weights" in params["weighting"].help
