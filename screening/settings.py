"""A setting's default and help text, defined once, on the dataclass that holds it.

`screen`'s options are built from these fields (cli.py `option`), and the Python API takes
the same defaults, so neither the command line nor the API writes a default or a help text
again. Library code names a setting by its parameter name; only cli.py knows flags.
"""
from dataclasses import MISSING, Field, field, fields
from typing import Any


def setting(default: Any = MISSING, help: str = "", *, factory: Any = MISSING) -> Any:
    """A dataclass field with its help text (`factory` for mutable defaults, as dataclasses' default_factory)."""
    return field(default=default, default_factory=factory, metadata={"help": help})


def field_of(cls, name: str) -> Field:
    for f in fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no setting {name!r}")


def default_of(cls, name: str) -> Any:
    """The setting's default (a fresh one where the field has a factory); MISSING where it is required."""
    f = field_of(cls, name)
    return f.default_factory() if f.default_factory is not MISSING else f.default


def help_of(cls, name: str) -> str:
    return field_of(cls, name).metadata.get("help", "")
