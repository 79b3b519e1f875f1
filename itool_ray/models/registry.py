"""Where models live and how a config's model spec becomes a local folder."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The itool-ray cache (outside the repository): ``$ITOOL_CACHE`` or ``~/.cache/itool-ray``."""
    return Path(os.environ.get("ITOOL_CACHE", Path.home() / ".cache" / "itool-ray")).expanduser()


def is_complete(folder: Path) -> bool:
    """A model folder written by this package is complete once its marker exists."""
    return (folder / ".itool-complete").is_file()


def resolve_model(spec: str) -> Path:
    """Map ``"smollm2"``, ``"tiny"`` or a local folder to a loadable HF model folder.

    Raises:
        FileNotFoundError: ``spec`` is neither a known name nor an existing folder with a
            ``config.json``.
    """
    if spec == "smollm2":
        from itool_ray.models.smollm2 import prepare_smollm2

        return prepare_smollm2()
    if spec == "tiny":
        from itool_ray.models.tiny import build_tiny_model

        return build_tiny_model(cache_dir() / "models" / "tiny")
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model {spec!r}: expected 'smollm2', 'tiny' or a local Hugging Face model folder "
            f"with a config.json (hub downloads are not used)"
        )
    return path
