"""Helpers shared by the loaders (private)."""

from __future__ import annotations

from typing import Any

from itool_ray.calls import Call, CallParseError, parse_calls, render_calls
from itool_ray.data.errors import DataError

CALL_SYNTAX = 'a call list like [f(a=1, b="x")] or plain text'


def canonical_turn(text: str, *, field: str) -> tuple[str, list[Call] | None]:
    """Parse an assistant turn: a call list comes back rendered canonically with its calls,
    plain text comes back unchanged with ``None``. A malformed call list raises ``DataError``
    (location filled in by the caller)."""
    try:
        calls = parse_calls(text)
    except CallParseError as e:
        raise DataError(
            field=field, expected=CALL_SYNTAX, detail=f"{e.reason} at position {e.position}"
        ) from e
    if calls is None:
        return text, None
    return render_calls(calls), calls


def require(record: Any, key: str, kind: type | tuple[type, ...], expected: str) -> Any:
    """``record[key]`` if ``record`` is a dict holding a value of ``kind``, else ``DataError``."""
    if not isinstance(record, dict):
        raise DataError(expected="a JSON object record", detail=f"got {type(record).__name__}")
    if key not in record:
        raise DataError(field=key, expected=expected, detail="missing")
    value = record[key]
    if not isinstance(value, kind):
        raise DataError(field=key, expected=expected, detail=f"got {type(value).__name__}")
    return value
