"""The settings `screen` shows as its options' defaults, importable without torch, Zarr or Dask,
so `screen --help` and every command start without loading the training stack. `screen run`'s
are workflows/run/options.RunSettings."""
from typing import List

from screening.settings import default_of, help_of  # noqa: F401  (cli.option reads fields through here)


def words(text: str) -> List[str]:
    """A comma-separated option's items, stripped, empty ones left out ("Li, Fe," -> ["Li", "Fe"])."""
    return [t.strip() for t in text.split(",") if t.strip()]
