"""Where models live and how a config's model spec becomes a local folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """The itool-ray cache (outside the repository): ``$ITOOL_CACHE`` or ``~/.cache/itool-ray``."""
    return Path(os.environ.get("ITOOL_CACHE", Path.home() / ".cache" / "itool-ray")).expanduser()


def is_complete(folder: Path) -> bool:
    """A model folder written by this package is complete once its marker exists."""
    return (folder / ".itool-complete").is_file()


def save_model_folder(model: Any, tokenizer: Any, out: Path, marker: str) -> Path:
    """Save ``model`` and ``tokenizer`` (``save_pretrained``) as the folder ``out``: written to
    a temporary sibling with the completeness marker (text ``marker``), then renamed, so an
    interrupted write never looks complete; an existing ``out`` is replaced."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / ".itool-complete").write_text(marker)
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


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
