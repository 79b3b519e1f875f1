"""Reading JSON-list / JSON-lines sources with line numbers, and the ``Sample`` JSONL format."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itool_ray.data.errors import DataError
from itool_ray.data.sample import Sample

_DECODER = json.JSONDecoder()
_WS = " \t\r\n"
_BOM = b"\xef\xbb\xbf"
_BAD_BYTE = re.compile("[\udc80-\udcff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


@dataclass(frozen=True)
class RawRecord:
    """One record of a source file: its 0-based index, 1-based line, and value or error."""

    index: int
    line: int
    value: Any = None
    error: DataError | None = None


class _Lines:
    """1-based line of a character offset, counted incrementally (offsets mostly grow)."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        if pos >= self.pos:
            self.line += self.text.count("\n", self.pos, pos)
        else:
            self.line = 1 + self.text.count("\n", 0, pos)
        self.pos = pos
        return self.line


def iter_json_records(path: str | os.PathLike[str]) -> Iterator[RawRecord]:
    """Yield the records of a JSON list file or a JSON-lines file (detected by the first
    non-blank character; a leading UTF-8 byte-order mark is ignored). A bad record (invalid
    JSON, a byte that is not UTF-8, nesting too deep for the decoder) yields a ``RawRecord``
    with ``error`` set, and the caller applies its policy; a broken JSON list raises
    ``DataError`` (it cannot resync). Lines are split on ``"\\n"`` only, so U+2028, U+2029
    and NEL inside a JSON string stay part of their line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(file=str(path), expected="a readable file", detail=str(e)) from e
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    # Invalid bytes become lone surrogates U+DC80..U+DCFF (strict UTF-8 never yields them),
    # so each record can be checked on its own and the rest of the file still loads.
    text = data.decode("utf-8", errors="surrogateescape")
    start = len(text) - len(text.lstrip(_WS))
    if start < len(text) and text[start] == "[":
        yield from _iter_json_list(text, start, str(path))
    else:
        yield from _iter_json_lines(text, str(path))


def _undecodable(text: str, file: str, line: int) -> DataError | None:
    """A ``DataError`` naming the first byte of ``text`` that was not UTF-8, if any."""
    m = _BAD_BYTE.search(text)
    if m is None:
        return None
    byte = ord(m.group()) - 0xDC00
    line += text.count("\n", 0, m.start())
    col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    return DataError(
        file=file, line=line, expected="UTF-8 text", detail=f"byte 0x{byte:02x} at column {col}"
    )


def _decode(text: str, pos: int = 0) -> tuple[Any, int]:
    """``raw_decode`` with the decoder's other failures as ``ValueError``: nesting deeper
    than the interpreter's recursion limit, integers over Python's digit limit."""
    try:
        return _DECODER.raw_decode(text, pos)
    except RecursionError:
        raise ValueError(
            f"nested deeper than the JSON decoder allows (about {sys.getrecursionlimit()})"
        ) from None


def _value_end(text: str, pos: int) -> int | None:
    """Where the JSON value starting at ``pos`` ends, found by matching brackets and
    skipping strings without decoding anything (for a value the decoder cannot read: nested
    too deep, a number too long); None when it does not end."""
    depth = 0
    i = pos
    while i < len(text):
        c = text[i]
        if c == '"':
            m = _STRING.match(text, i)
            if m is None:
                return None
            i = m.end()
        elif c in "[{":
            depth += 1
            i += 1
        elif c in "]}":
            if depth == 0:
                return i  # the list's own ']' ends a scalar item
            depth -= 1
            i += 1
        elif depth == 0 and (c == "," or c in _WS):
            return i
        else:
            i += 1
        if depth == 0 and text[i - 1] in '"]}':
            return i
    return None if depth else i


def _iter_json_list(text: str, start: int, file: str) -> Iterator[RawRecord]:
    lines = _Lines(text)
    pos = start + 1
    index = 0
    while True:
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        if pos < len(text) and text[pos] == "]":
            return
        line = lines.at(pos)
        try:
            value, end = _decode(text, pos)
        except ValueError as e:
            skip_to = None if isinstance(e, json.JSONDecodeError) else _value_end(text, pos)
            if skip_to is None:  # a syntax error: where the next item starts is unknown
                at = e.pos if isinstance(e, json.JSONDecodeError) else pos
                bad = _undecodable(text[at : at + 1], file, lines.at(at))
                raise bad or DataError(
                    file=file,
                    line=lines.at(at),
                    record_id=f"#{index}",
                    expected="valid JSON",
                    detail=e.msg if isinstance(e, json.JSONDecodeError) else str(e),
                ) from None
            # well-formed but beyond the decoder (too deep, too many digits): this item only
            err = DataError(file=file, line=line, expected="a JSON value", detail=str(e))
            value, end = None, skip_to
        else:
            err = _undecodable(text[pos:end], file, line)
        yield RawRecord(index, line, error=err) if err else RawRecord(index, line, value)
        index += 1
        pos = end
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] == "]":
            return
        else:
            raise DataError(
                file=file,
                line=lines.at(pos),
                record_id=f"#{index}",
                expected="',' or ']' between list items",
            )


def _iter_json_lines(text: str, file: str) -> Iterator[RawRecord]:
    index = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip(_WS):
            continue
        error = _undecodable(line, file, lineno)
        if error is None:
            try:
                value, end = _decode(line, len(line) - len(line.lstrip(_WS)))
                if line[end:].strip(_WS):
                    raise json.JSONDecodeError("Extra data", line, end)
            except ValueError as e:
                detail = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
                error = DataError(
                    file=file, line=lineno, expected="one JSON value per line", detail=detail
                )
        yield RawRecord(index, lineno, error=error) if error else RawRecord(index, lineno, value)
        index += 1


def write_samples(path: str | os.PathLike[str], samples: Iterable[Sample]) -> int:
    """Write samples as JSON lines (``Sample.to_dict``); returns the number written.

    Non-ASCII text is written as it is, except in a sample holding a lone surrogate (a
    ``"\\ud800"`` escape in its source), which is written with ASCII escapes: UTF-8 cannot
    encode it, and :func:`read_samples` gives back the same string either way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for s in samples:
            line = json.dumps(s.to_dict(), ensure_ascii=False)
            if _SURROGATE.search(line):
                line = json.dumps(s.to_dict())
            f.write(line)
            f.write("\n")
            n += 1
    return n


def read_samples(path: str | os.PathLike[str]) -> list[Sample]:
    """Read a file written by :func:`write_samples`; a bad line or a repeated sample id
    raises ``DataError``."""
    out = []
    seen: dict[str, int] = {}
    for rec in iter_json_records(path):
        if rec.error is not None:
            raise rec.error
        if not isinstance(rec.value, dict):
            raise DataError(file=str(path), line=rec.line, expected="a JSON object")
        rid = rec.value.get("id")
        for key in ("id", "tools", "messages", "gold"):
            if key not in rec.value:
                raise DataError(
                    file=str(path),
                    line=rec.line,
                    record_id=None if rid is None else str(rid),
                    field=key,
                    expected="a Sample field",
                )
        try:
            sample = Sample.from_dict(rec.value)
        except Exception as e:  # a field of the wrong kind: any failure is this record's
            raise DataError(
                file=str(path),
                line=rec.line,
                record_id=str(rid),
                expected="a Sample record",
                detail=f"{type(e).__name__}: {e}",
            ) from e
        if sample.id in seen:
            raise DataError(
                file=str(path),
                line=rec.line,
                record_id=sample.id,
                field="id",
                expected="a unique sample id",
                detail=f"already used at line {seen[sample.id]}",
            )
        seen[sample.id] = rec.line
        out.append(sample)
    return out
