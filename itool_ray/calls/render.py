"""Render calls in the canonical ToolACE form: `[name(a=1, b="x"), other(c=[1, {"k": None}])]`.

Strings are double-quoted with JSON-style escapes that Python reads back identically
(`\\"`, `\\\\`, `\\n`, `\\r`, `\\t`, `\\uXXXX` for other control characters and lone surrogates;
other non-ASCII characters are kept as they are). Numbers use `repr` (exact round trip);
infinities are written `1e999` / `-1e999`; NaN has no literal form and is refused. Tuples
keep their parentheses (`(1,)` for one element). `parse_calls(render_calls(c)) == c` holds for
every name accepted by the parser and every literal value it produces.
"""

from __future__ import annotations

import math
import re
from typing import Any

from itool_ray.calls.call import Call

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f\ud800-\udfff]')
_NAME = re.compile(r"[^\W\d][\w.\- ]*")
_KEYWORD = re.compile(r"[^\W\d]\w*")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    return _ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def render_string(value: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape, value) + '"'


def render_value(value: Any) -> str:
    """The literal text for one argument value (str, int, float, bool, None, list, tuple, dict)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return render_string(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("NaN has no literal form")
        if math.isinf(value):
            return "1e999" if value > 0 else "-1e999"
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, tuple):
        if len(value) == 1:
            return "(" + render_value(value[0]) + ",)"
        return "(" + ", ".join(render_value(v) for v in value) + ")"
    if isinstance(value, dict):
        items = (f"{render_value(k)}: {render_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot render a value of type {type(value).__name__}: {value!r}")


def render_call(call: Call) -> str:
    """`name(a=1, b="x")`; raises ValueError for a name or keyword the parser would refuse."""
    if not _NAME.fullmatch(call.name) or call.name.endswith(" "):
        raise ValueError(f"function name {call.name!r} cannot be written in call syntax")
    parts = []
    for key, value in call.arguments.items():
        if not isinstance(key, str) or not _KEYWORD.fullmatch(key):
            raise ValueError(f"argument name {key!r} cannot be written in call syntax")
        parts.append(f"{key}={render_value(value)}")
    return f"{call.name}({', '.join(parts)})"


def render_calls(calls: list[Call]) -> str:
    """`[call, call, ...]`; `[]` for no calls."""
    return "[" + ", ".join(render_call(c) for c in calls) + "]"
