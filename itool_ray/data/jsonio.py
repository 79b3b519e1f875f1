"""Reading JSON-list / JSON-lines sources with line numbers, and the ``Sample`` JSONL format."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itool_ray.data.errors import DataError
from itool_ray.data.sample import Sample

_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


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
    non-blank character). A bad JSON line yields a ``RawRecord`` with ``error`` set (the
    caller applies its policy); a broken JSON list raises ``DataError`` (it cannot resync)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(file=str(path), expected="a readable file", detail=str(e)) from e
    start = len(text) - len(text.lstrip(_WS))
    if start < len(text) and text[start] == "[":
        yield from _iter_json_list(text, start, str(path))
    else:
        yield from _iter_json_lines(text, str(path))


def _iter_json_list(text: str, start: int, file: str) -> Iterator[RawRecord]:
    lines = _Lines(text)
    pos = start + 1
    index = 0
    while True:
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        if pos < len(text) and text[pos] == "]":
            return
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(
                file=file,
                line=lines.at(e.pos),
                record_id=f"#{index}",
                expected="valid JSON",
                detail=e.msg,
            ) from e
        yield RawRecord(index, lines.at(pos), value)
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
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield RawRecord(index, lineno, json.loads(line))
        except json.JSONDecodeError as e:
            yield RawRecord(
                index,
                lineno,
                error=DataError(
                    file=file, line=lineno, expected="one JSON value per line", detail=e.msg
                ),
            )
        index += 1


def write_samples(path: str | os.PathLike[str], samples: Iterable[Sample]) -> int:
    """Write samples as JSON lines (``Sample.to_dict``); returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s.to_dict(), ensure_ascii=False))
            f.write("\n")
            n += 1
    return n


def read_samples(path: str | os.PathLike[str]) -> list[Sample]:
    """Read a file written by :func:`write_samples`; a bad line raises ``DataError``."""
    out = []
    for rec in iter_json_records(path):
        if rec.error is not None:
            raise rec.error
        if not isinstance(rec.value, dict):
            raise DataError(file=str(path), line=rec.line, expected="a JSON object")
        for key in ("id", "tools", "messages", "gold"):
            if key not in rec.value:
                raise DataError(
                    file=str(path),
                    line=rec.line,
                    record_id=rec.value.get("id"),
                    field=key,
                    expected="a Sample field",
                )
        out.append(Sample.from_dict(rec.value))
    return out
