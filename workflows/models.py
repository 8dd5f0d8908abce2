"""Which model a command uses: the one given, else the bundled one (application policy, not the library's)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from screening.errors import ScreenError
from screening.model_info import default_model_path


def resolve_model_path(model: Optional[Path]) -> Path:
    """`model`, or the bundled default when none is given."""
    if model is not None:
        return Path(model)
    path = default_model_path()
    if not path.exists():
        raise ScreenError(f"no `model` given and no bundled model found at {path}; train one with `screen train`")
    return path
