"""Keyword arguments of one call: split at top-level commas, each value parsed with `ast`.

Nothing here evaluates model output. A value is parsed with `ast.parse(..., mode="eval")` and
converted by a literal-only walker, stricter than `ast.literal_eval`:

- accepted: `str` (implicit concatenation included), `int`, `float`, `True`/`False`/`None`,
  unary `-`/`+` on an int or float, `list`, `tuple`, `dict` (hashable literal keys, no
  duplicate keys);
- leniency: the bare JSON names `true`, `false`, `null` are read as `True`, `False`, `None`
  (tool schemas are JSON, and models write them);
- rejected (`ParseErrorReason.NON_LITERAL`): names, calls, attribute access, operators such as
  `1+2`, f-strings, lambdas, comprehensions, conditional expressions, `bytes`, `complex`,
  `...`, sets, `**` unpacking.

Bounded: a value nested or chained beyond what `ast` can build (`-` x 3000, `1+` x 3000,
`.y` x 3000: `RecursionError` / `MemoryError` inside the compiler) and an integer literal with
more than `MAX_INT_DIGITS` decimal digits (`0x` + 4,000 hex digits parses, then `str()` of it
raises) are `ParseErrorReason.TOO_COMPLEX`: a wrong answer, never an exception of another type.

Keyword names are split off by hand, not by `ast`, so Python keywords are allowed as argument
names (`convert(from="USD", to="EUR")` is common in tool schemas).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

from itool_ray.calls.call import CallParseError
from itool_ray.calls.call import ParseErrorReason as R

_KEYWORD = re.compile(r"\s*([^\W\d]\w*)\s*=(?!=)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_JSON_NAMES = {"true": True, "false": False, "null": None}
MAX_INT_DIGITS = 1000
"""Largest integer literal accepted, in decimal digits (Python refuses to print > 4,300)."""
_INT_LIMIT = 10**MAX_INT_DIGITS

_NODE_NAMES = {
    ast.Name: "a name",
    ast.Call: "a call",
    ast.Attribute: "attribute access",
    ast.BinOp: "an operator expression",
    ast.BoolOp: "a boolean expression",
    ast.Compare: "a comparison",
    ast.JoinedStr: "an f-string",
    ast.Lambda: "a lambda",
    ast.IfExp: "a conditional expression",
    ast.Subscript: "a subscript",
    ast.Set: "a set (not supported)",
    ast.ListComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.Starred: "star unpacking",
    ast.NamedExpr: "an assignment expression",
}


def parse_arguments(text: str, start: int, end: int, commas: Sequence[int]) -> dict[str, Any]:
    """Keyword arguments in `text[start:end]`, the span between a call's parentheses.

    `commas` are the offsets of the commas at the call's top level (outside strings and
    nested brackets), as found by the scanner. Raises `CallParseError` with positions in
    `text`. A single trailing comma (`f(a=1,)`) is allowed, as in Python.
    """
    result: dict[str, Any] = {}
    starts = [start, *(c + 1 for c in commas)]
    ends = [*commas, end]
    last = len(starts) - 1
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        segment = text[s:e]
        if not segment.strip():
            if last == 0 or (i == last and i > 0):
                continue  # f() or f(a=1,)
            raise CallParseError(R.SYNTAX, e, "empty argument between commas", text)
        m = _KEYWORD.match(segment)
        if m is None:
            pos = s + len(segment) - len(segment.lstrip())
            if segment.lstrip().startswith("**"):
                raise CallParseError(R.NON_LITERAL, pos, "'**' unpacking is not allowed", text)
            raise CallParseError(
                R.POSITIONAL_ARGUMENT, pos, "positional argument (write name=value)", text
            )
        name = m.group(1)
        if name in result:
            raise CallParseError(
                R.DUPLICATE_KEYWORD, s + m.start(1), f"keyword {name!r} given twice", text
            )
        value_start = s + m.end()
        result[name] = parse_value(text, value_start, e, name)
    return result


def parse_value(text: str, start: int, end: int, name: str = "") -> Any:
    """The literal in `text[start:end]` (surrounding whitespace allowed)."""
    value_text = text[start:end]
    if not value_text.strip():
        raise CallParseError(R.SYNTAX, start, f"missing value for keyword {name!r}", text)
    source = "(" + value_text + ")"
    base = start - 1  # offset in `text` of source[0]
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise _from_syntax_error(exc, text, source, base, start) from None
    except ValueError as exc:  # null bytes (older 3.11), lone surrogates (UnicodeEncodeError)
        pos = _first_bad_char(value_text)
        raise CallParseError(R.SYNTAX, start + pos, f"invalid character: {exc}", text) from None
    except (RecursionError, MemoryError):  # the compiler's own nesting / stack limits
        raise CallParseError(
            R.TOO_COMPLEX, start, f"value of {name!r} is nested too deeply to parse", text
        ) from None
    try:
        return _Walker(text, source, base).value(tree.body)
    except RecursionError:
        raise CallParseError(
            R.TOO_COMPLEX, start, f"value of {name!r} is nested too deeply", text
        ) from None


def _first_bad_char(value_text: str) -> int:
    for i, ch in enumerate(value_text):
        if ch == "\x00" or "\ud800" <= ch <= "\udfff":
            return i
    return 0


def _from_syntax_error(
    exc: SyntaxError, text: str, source: str, base: int, start: int
) -> CallParseError:
    msg = exc.msg or "invalid syntax"
    if exc.lineno is None or exc.offset is None:
        pos = start + _first_bad_char(source[1:-1])
    else:
        pos = base + _source_offset(source, exc.lineno, exc.offset - 1, col_is_bytes=False)
        pos = min(max(pos, start), base + len(source) - 1)
    low = msg.lower()
    if "forgot a comma" in low:
        reason = R.MISSING_COMMA
    elif "unterminated" in low:
        reason = R.UNTERMINATED_STRING
    elif "f-string" in low:
        reason = R.NON_LITERAL
    else:
        reason = R.SYNTAX
    return CallParseError(reason, pos, f"syntax error in value: {msg}", text)


def _source_offset(source: str, lineno: int, col: int, *, col_is_bytes: bool) -> int:
    """Character offset in `source` of (1-based line, 0-based column) as `ast` reports it."""
    line_start = 0
    if lineno > 1:
        for k, m in enumerate(_LINE_BREAK.finditer(source), start=2):
            if k == lineno:
                line_start = m.end()
                break
    if col_is_bytes:  # ast node columns count UTF-8 bytes
        raw = source[line_start:].encode("utf-8", "surrogatepass")[:col]
        col = len(raw.decode("utf-8", "ignore"))
    return line_start + col


class _Walker:
    """Converts an `ast` expression to a value, rejecting anything that is not a literal."""

    def __init__(self, text: str, source: str, base: int) -> None:
        self.text, self.source, self.base = text, source, base

    def _error(self, node: ast.expr, reason: str, detail: str) -> CallParseError:
        off = _source_offset(self.source, node.lineno, node.col_offset, col_is_bytes=True)
        return CallParseError(reason, self.base + off, detail, self.text)

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= _INT_LIMIT:
                raise self._error(
                    node, R.TOO_COMPLEX, f"integer literal longer than {MAX_INT_DIGITS} digits"
                )
            if v is None or isinstance(v, (bool, int, float, str)):
                return v
            raise self._error(node, R.NON_LITERAL, f"{type(v).__name__} literals are not allowed")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = node.operand
            if (
                isinstance(operand, ast.Constant)
                and isinstance(operand.value, (int, float))
                and not isinstance(operand.value, bool)
            ):
                return self.value(operand) * (-1 if isinstance(node.op, ast.USub) else 1)
            raise self._error(node, R.NON_LITERAL, "unary sign applies only to a number")
        if isinstance(node, ast.List):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.value(e) for e in node.elts)
        if isinstance(node, ast.Dict):
            return self._dict(node)
        if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
            return _JSON_NAMES[node.id]
        what = _NODE_NAMES.get(type(node), "an expression")
        if isinstance(node, ast.Name):
            what = f"the name {node.id!r}"
        raise self._error(node, R.NON_LITERAL, f"value must be a literal, got {what}")

    def _dict(self, node: ast.Dict) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            if key_node is None:
                raise self._error(value_node, R.NON_LITERAL, "'**' unpacking is not allowed")
            key = self.value(key_node)
            try:
                duplicate = key in out
            except TypeError:
                raise self._error(key_node, R.NON_LITERAL, "dict key is not hashable") from None
            if duplicate:
                raise self._error(key_node, R.DUPLICATE_KEY, f"dict key {key!r} given twice")
            out[key] = self.value(value_node)
        return out
