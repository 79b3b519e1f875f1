"""Parse ToolACE-style call lists: `[func(a=1, b="x"), Other API(c=[1, {"k": None}])]`.

What counts as a call list (decided as early as possible, so growing text can be judged):

1. Leading whitespace is skipped; the next character must be `[`, else the text is prose.
2. After `[` and optional whitespace: `]` makes the empty call list `[]`; a name start (a
   letter or `_`) begins the first function name; anything else (`[1, 2]`, `[(1, 2)]`,
   `["a"]`) means prose.
3. A name is letters, digits, `_`, `.`, `-` and spaces (`Market Trends API`,
   `math.factorial`, `get-weather`), followed directly by `(`. If the *first* name runs into
   any other character, or ends with a space before `(`, the text is prose
   (`[see above]`, `[Note: ...]`, `[I think (maybe) not]`).
4. Once the first `name(` is seen the text *is* a call list: from then on every defect is a
   `CallParseError` with a reason and a character offset.

Inside the list, calls are separated by commas (no trailing comma after the last call);
after the closing `]` only whitespace may follow. Inside a call, the scanner tracks string
literals (both quote kinds, triple quotes, escapes; a newline ends a one-quote string with an
error), nested brackets, and the commas at the call's own level; `#` comments are rejected.
Each argument is then parsed by `itool_ray.calls.literal` (literals only, never evaluated).
Whatever the text, the only exception `parse_calls` raises is `CallParseError`: values nested
beyond the compiler's limits and over-long integers are `ParseErrorReason.TOO_COMPLEX`.

`parse_partial` (and `CallScanner` for feeding text piece by piece) judge an unfinished
response: which calls are already complete, where they end, whether the text ends inside a
string, and whether it can still become a valid call list. Cost: `parse_partial(text)` is
O(len(text)) (one left-to-right scan, plus one `ast.parse` per argument of each complete
call). `CallScanner.feed(chunk)` scans only the new characters (scanning a response fed piece
by piece is O(total length) overall); each feed also appends to the text buffer and copies the
lists of complete calls into the returned snapshot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum

from itool_ray.calls.call import Call, CallParseError
from itool_ray.calls.call import ParseErrorReason as R
from itool_ray.calls.literal import parse_arguments

_SPACE = re.compile(r"\s*")
_NAME_CHARS = re.compile(r"[\w.\- ]*")
_ARGS_SPECIAL = re.compile(r"[()\[\]{}'\",#]")
_STRING_STOP = {
    "'": re.compile(r"['\\\n\r]"),
    '"': re.compile(r'["\\\n\r]'),
    "'''": re.compile(r"['\\]"),
    '"""': re.compile(r'["\\]'),
}
_CLOSER = {"(": ")", "[": "]", "{": "}"}


def _match_end(pattern: re.Pattern[str], text: str, i: int) -> int:
    m = pattern.match(text, i)
    return m.end() if m else i


def _is_name_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_"


class _S(IntEnum):
    START = 0  # before `[`
    OPEN = 1  # after `[`, before the first call
    NAME = 2  # inside a function name
    ARGS = 3  # inside a call's parentheses
    AFTER = 4  # after a call's `)`
    COMMA = 5  # after a `,` between calls
    CLOSED = 6  # after the closing `]`
    PROSE = 7  # not a call list
    ERROR = 8


@dataclass(frozen=True)
class PartialCalls:
    """What a (possibly unfinished) response says so far.

    Attributes:
        is_call_list: True once the text is known to be a call list, False for prose, None
            while undecidable (empty, whitespace, `[`, `[` + a partial name).
        calls: the calls complete so far, in order.
        call_ends: for each complete call, the offset just after its `)`.
        closed: the closing `]` has been seen (with nothing invalid after it).
        end: offset just after the closing `]`, or None.
        in_string: the text ends inside a string literal.
        error: set when the text can no longer become a valid call list. Defects inside a
            call's arguments (a positional argument, a non-literal value) are found when the
            call's `)` arrives; bracket, string and separator defects as soon as they appear.

    A text ending in `''` inside a call reads as an empty string (not in a string), although
    one more `'` would make it the start of a triple-quoted string.
    """

    is_call_list: bool | None
    calls: list[Call] = field(default_factory=list)
    call_ends: list[int] = field(default_factory=list)
    closed: bool = False
    end: int | None = None
    in_string: bool = False
    error: CallParseError | None = None

    @property
    def done(self) -> bool:
        """No more text can change the verdict (closed, prose or an error)."""
        return self.closed or self.is_call_list is False or self.error is not None


class CallScanner:
    """Incremental call-list scanner: `feed` text pieces, read a `PartialCalls` each time."""

    def __init__(self) -> None:
        self._text = ""
        self._pos = 0  # everything before this offset is final
        self._state = _S.START
        self._list_start = -1
        self._name_start = -1
        self._name = ""
        self._args_start = -1
        self._stack: list[int] = []  # offsets of the open brackets of the current call
        self._commas: list[int] = []  # top-level commas of the current call
        self._quote = ""  # delimiter of the string we are in, "" outside strings
        self._string_start = -1
        self._calls: list[Call] = []
        self._call_ends: list[int] = []
        self._is_call_list: bool | None = None
        self._error: CallParseError | None = None
        self._end: int | None = None

    @property
    def text(self) -> str:
        return self._text

    def copy(self) -> CallScanner:
        """An independent scanner in the same state: feeding one never changes the other.

        O(number of complete calls + open brackets): the text and the parsed `Call`s are
        shared (neither is ever mutated by the scanner), only the lists are copied. Scanning
        `a` then feeding `b` to a copy gives the same view as scanning `a + b` (the scanner is
        incremental), so callers can keep the state of a shared prefix and continue it.
        """
        other = object.__new__(CallScanner)
        other.__dict__.update(self.__dict__)
        other._stack = list(self._stack)
        other._commas = list(self._commas)
        other._calls = list(self._calls)
        other._call_ends = list(self._call_ends)
        return other

    def feed(self, chunk: str) -> PartialCalls:
        """Append `chunk` to the text and return the updated view."""
        if chunk:
            self._text += chunk
            self._run()
        return self.snapshot()

    def snapshot(self) -> PartialCalls:
        in_string = False
        if self._state == _S.ARGS:
            in_string = bool(self._quote) or self._text[self._pos :] in ("'", '"')
        return PartialCalls(
            is_call_list=self._is_call_list,
            calls=list(self._calls),
            call_ends=list(self._call_ends),
            closed=self._state == _S.CLOSED,
            end=self._end,
            in_string=in_string,
            error=self._error,
        )

    def finish(self) -> list[Call] | None:
        """The verdict on the whole text: calls, None for prose, or raise `CallParseError`."""
        if self._error is not None:
            raise self._error
        if self._is_call_list is not True:
            return None
        if self._state == _S.CLOSED:
            return list(self._calls)
        raise self._unfinished_error()

    # -- scanning ------------------------------------------------------------------------

    def _fail(self, reason: str, position: int, detail: str) -> int:
        self._error = CallParseError(reason, position, detail, self._text)
        self._state = _S.ERROR
        return position

    def _run(self) -> None:
        text, n = self._text, len(self._text)
        handlers = {
            _S.START: self._start,
            _S.OPEN: self._open,
            _S.NAME: self._name_chars,
            _S.ARGS: self._args,
            _S.AFTER: self._after,
            _S.COMMA: self._comma,
            _S.CLOSED: self._closed,
        }
        i = self._pos
        try:
            while i < n and self._state in handlers:
                state = self._state
                j = handlers[state](text, i, n)
                if j == i and self._state == state:
                    break  # waiting for more text to decide
                i = j
        except (RecursionError, MemoryError) as exc:
            # any shape of model output is a wrong answer, never another exception type
            i = self._fail(R.TOO_COMPLEX, i, f"text too complex to parse ({type(exc).__name__})")
        self._pos = i

    def _start(self, text: str, i: int, n: int) -> int:
        j = _match_end(_SPACE, text, i)
        if j == n:
            return n
        if text[j] == "[":
            self._list_start = j
            self._state = _S.OPEN
            return j + 1
        return self._prose(j)

    def _prose(self, j: int) -> int:
        self._is_call_list = False
        self._state = _S.PROSE
        return j

    def _open(self, text: str, i: int, n: int) -> int:
        j = _match_end(_SPACE, text, i)
        if j == n:
            return n
        ch = text[j]
        if ch == "]":
            self._is_call_list = True
            return self._close(j)
        if _is_name_start(ch):
            self._name_start = j
            self._state = _S.NAME
            return j
        return self._prose(j)

    def _close(self, j: int) -> int:
        self._state = _S.CLOSED
        self._end = j + 1
        return j + 1

    def _name_chars(self, text: str, i: int, n: int) -> int:
        j = _match_end(_NAME_CHARS, text, i)
        if j == n:
            return n
        first = self._is_call_list is None
        name = text[self._name_start : j]
        if text[j] != "(":
            if first:
                return self._prose(j)
            return self._fail(R.SYNTAX, j, f"expected '(' after function name {name!r}")
        if name.endswith(" "):
            if first:
                return self._prose(j)
            pos = self._name_start + len(name.rstrip())
            return self._fail(R.BAD_NAME, pos, "space between function name and '('")
        self._is_call_list = True
        self._name = name
        self._stack = [j]
        self._commas = []
        self._args_start = j + 1
        self._state = _S.ARGS
        return j + 1

    def _args(self, text: str, i: int, n: int) -> int:
        while i < n:
            if self._quote:
                q = self._quote
                m = _STRING_STOP[q].search(text, i)
                if m is None:
                    return n
                j = m.start()
                ch = text[j]
                if ch == "\\":
                    if j + 1 >= n:
                        return j  # the escaped character has not arrived yet
                    i = j + 2
                elif ch in "\r\n":
                    return self._fail(
                        R.UNTERMINATED_STRING,
                        self._string_start,
                        "string literal ends at a newline",
                    )
                elif len(q) == 1 or text.startswith(q, j):
                    self._quote = ""
                    i = j + len(q)
                elif n - j < 3 and text[j:] == ch * (n - j):
                    return j  # maybe the closing triple quote
                else:
                    i = j + 1
                continue
            m = _ARGS_SPECIAL.search(text, i)
            if m is None:
                return n
            j = m.start()
            ch = text[j]
            if ch in "'\"":
                if text.startswith(ch * 3, j):
                    self._quote = ch * 3
                elif n - j < 3 and text[j:] == ch * (n - j):
                    return j  # `'` or `''` at the end: string start, empty string or `'''`?
                else:
                    self._quote = ch
                self._string_start = j
                i = j + len(self._quote)
            elif ch == ",":
                if len(self._stack) == 1:
                    self._commas.append(j)
                i = j + 1
            elif ch in "([{":
                self._stack.append(j)
                i = j + 1
            elif ch == "#":
                return self._fail(R.SYNTAX, j, "comments are not allowed in a call")
            else:
                opener = self._stack[-1]
                if _CLOSER[text[opener]] != ch:
                    detail = f"{ch!r} does not match {text[opener]!r} at offset {opener}"
                    return self._fail(R.UNBALANCED_BRACKETS, j, detail)
                self._stack.pop()
                if not self._stack:
                    return self._complete_call(text, j)
                i = j + 1
        return n

    def _complete_call(self, text: str, j: int) -> int:
        try:
            arguments = parse_arguments(text, self._args_start, j, self._commas)
        except CallParseError as exc:
            self._error = exc
            self._state = _S.ERROR
            return j
        self._calls.append(Call(self._name, arguments))
        self._call_ends.append(j + 1)
        self._state = _S.AFTER
        return j + 1

    def _after(self, text: str, i: int, n: int) -> int:
        j = _match_end(_SPACE, text, i)
        if j == n:
            return n
        ch = text[j]
        if ch == ",":
            self._state = _S.COMMA
            return j + 1
        if ch == "]":
            return self._close(j)
        if ch in ")}":
            return self._fail(R.UNBALANCED_BRACKETS, j, f"unmatched {ch!r}")
        if _is_name_start(ch) or ch in "\"'([{":
            return self._fail(R.MISSING_COMMA, j, "missing ',' between calls")
        return self._fail(R.SYNTAX, j, "expected ',' or ']' after a call")

    def _comma(self, text: str, i: int, n: int) -> int:
        j = _match_end(_SPACE, text, i)
        if j == n:
            return n
        ch = text[j]
        if _is_name_start(ch):
            self._name_start = j
            self._state = _S.NAME
            return j
        if ch == "(":
            return self._fail(R.EMPTY_NAME, j, "empty function name")
        if ch == "]":
            return self._fail(R.SYNTAX, j, "trailing comma: expected a call after ','")
        return self._fail(R.BAD_NAME, j, "expected a function name")

    def _closed(self, text: str, i: int, n: int) -> int:
        j = _match_end(_SPACE, text, i)
        if j == n:
            return n
        return self._fail(R.TRAILING_TEXT, j, "text after the closing ']'")

    def _unfinished_error(self) -> CallParseError:
        text = self._text
        if self._state == _S.ARGS:
            tail = text[self._pos :]
            if self._quote:
                pos = self._string_start
                return CallParseError(R.UNTERMINATED_STRING, pos, "string is never closed", text)
            if tail in ("'", '"'):
                return CallParseError(
                    R.UNTERMINATED_STRING, self._pos, "string is never closed", text
                )
            opener = self._stack[-1]
            detail = f"{text[opener]!r} is never closed"
            return CallParseError(R.UNBALANCED_BRACKETS, opener, detail, text)
        detail = "'[' is never closed"
        return CallParseError(R.UNBALANCED_BRACKETS, self._list_start, detail, text)


def parse_partial(text: str) -> PartialCalls:
    """View of a possibly unfinished response (see `PartialCalls`); O(len(text))."""
    return CallScanner().feed(text)


def parse_calls(text: str) -> list[Call] | None:
    """Parse a complete response.

    Returns the calls (`[]` for `[]`), or None when the text is prose (see the module
    docstring for the rule). Raises `CallParseError` when the text is a call list with a
    defect, including one that is not finished (`[f(a=1)` or `[f(a="x)]`).
    """
    scanner = CallScanner()
    scanner.feed(text)
    return scanner.finish()


def next_call_boundary(text: str, start: int = 0, *, include_close: bool = False) -> int | None:
    """Offset just after the `)` of the first call that completes after offset `start`.

    None when no call completes after `start` yet: for instance the text ends inside a string
    literal (a stop string `)` generated inside `f(q="a)b")` is not a boundary), the text is
    prose, or it has an error. With `include_close`, the offset just after the closing `]`
    also counts as a boundary.
    """
    partial = parse_partial(text)
    for end in partial.call_ends:
        if end > start:
            return end
    if include_close and partial.end is not None and partial.end > start:
        return partial.end
    return None
