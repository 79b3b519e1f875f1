"""Typed job configuration: YAML file + ``key.path=value`` overrides, validated up front.

Every section is a frozen pydantic model with ``extra="forbid"``, so a misspelt key or a
value of the wrong kind fails before any actor starts, with an error naming the key and what
is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """Base of every config section: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it and what is allowed."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"mcts.c_puct=1.5"`` -> (["mcts", "c_puct"], 1.5); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``a.b.c=value`` in a nested dict (creating sections as needed)."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _explain(cls: type[BaseModel], err: ValidationError) -> str:
    lines = [f"invalid {cls.__name__} configuration:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key; allowed here: {_allowed(cls, e['loc'][:-1])}")
        else:
            lines.append(f"  {where}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _allowed(cls: type[BaseModel], loc: tuple) -> str:
    model: Any = cls
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return "?"
        model = field.annotation
    fields = getattr(model, "model_fields", None) or getattr(model, "__dataclass_fields__", {})
    return ", ".join(sorted(fields))


def load_config(
    cls: type[M], path: str | Path | None = None, overrides: list[str] | None = None
) -> M:
    """Build ``cls`` from an optional YAML file plus overrides; raise ``ConfigError``."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = loaded
    data = apply_overrides(data, list(overrides or []))
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(cls, e)) from None
