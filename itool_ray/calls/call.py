"""The value types shared by the parser, the renderer and the checker.

`Call` is one tool call: a function name and its keyword arguments (plain Python literals).
`CallParseError` says why a text is not a valid call list and where (a character offset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ParseErrorReason(StrEnum):
    """Machine-readable cause carried by `CallParseError.reason` (a plain `str`)."""

    POSITIONAL_ARGUMENT = "positional_argument"
    DUPLICATE_KEYWORD = "duplicate_keyword"
    DUPLICATE_KEY = "duplicate_key"
    NON_LITERAL = "non_literal"
    UNBALANCED_BRACKETS = "unbalanced_brackets"
    UNTERMINATED_STRING = "unterminated_string"
    TRAILING_TEXT = "trailing_text"
    MISSING_COMMA = "missing_comma"
    EMPTY_NAME = "empty_name"
    BAD_NAME = "bad_name"
    SYNTAX = "syntax"
    TOO_COMPLEX = "too_complex"


class CallParseError(ValueError):
    """A text that is (or started as) a call list but cannot be one.

    Attributes:
        reason: one of `ParseErrorReason` (a `str`).
        position: character offset into the parsed text where the problem is.
        detail: the human-readable description, without the position.
    """

    def __init__(self, reason: str, position: int, detail: str, text: str = "") -> None:
        self.reason = str(reason)
        self.position = position
        self.detail = detail
        context = ""
        if text:
            lo = max(0, position - 20)
            snippet = text[lo : position + 20]
            context = f" near {snippet!r}"
        super().__init__(f"{detail} (at offset {position}{context})")

    def __reduce__(
        self,
    ) -> tuple[Any, ...]:  # keep .reason/.position when pickled across processes / actors
        return _rebuild_error, (self.reason, self.position, self.detail, str(self))


def _rebuild_error(reason: str, position: int, detail: str, message: str) -> CallParseError:
    err = CallParseError(reason, position, detail)
    err.args = (message,)
    return err


def _freeze(value: Any) -> Any:
    """A hashable, type-tagged image of a literal: 1, 1.0 and True stay distinct."""
    if value is None or isinstance(value, (bool, int, str)):
        return (type(value).__name__, value)
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value)
    if isinstance(value, list):
        return ("list", tuple(_freeze(v) for v in value))
    if isinstance(value, tuple):
        return ("tuple", tuple(_freeze(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((_freeze(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(_freeze(v) for v in value))
    return (type(value).__name__, repr(value))


@dataclass(frozen=True, eq=False)
class Call:
    """One tool call `name(key=value, ...)`.

    `arguments` keeps keyword order (dict insertion order) but equality ignores it. Equality
    and hashing are by value *and type*: `Call("f", {"a": 1}) != Call("f", {"a": 1.0})`,
    unlike plain dict comparison (use `check_calls` for lenient, BFCL-style comparison).
    Do not mutate `arguments` after putting a Call in a set or dict.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def _key(self) -> Any:
        return (self.name, _freeze(self.arguments))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Call):
            return NotImplemented
        return bool(self._key() == other._key())

    def __hash__(self) -> int:
        return hash(self._key())

    def to_bfcl(self) -> dict[str, dict[str, Any]]:
        """The BFCL model-output item `{name: {arg: value}}`."""
        return {self.name: dict(self.arguments)}
