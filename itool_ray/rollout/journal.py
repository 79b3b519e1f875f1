"""Append-only JSON-lines journals that survive a torn tail, and atomic rewrites.

The tree manager records finished trees, pairs and scaling events as one JSON object per
line. A process killed in the middle of an append leaves a last line without its newline (or
cut inside the JSON). Here:

- ``read_jsonl`` splits on ``"\\n"`` only (a U+2028 inside a string is data, not a line
  break), skips blank lines, and treats an unparsable *last* line as a torn tail: dropped
  and counted, never an exception. An unparsable line in the middle is real corruption and
  raises, naming the file and line.
- ``repair`` cuts a torn tail off the file itself (so the next append starts a fresh line).
- ``append_jsonl`` writes whole lines in one ``write`` and flushes; a file whose last line
  has no newline is repaired first, so a torn append never glues onto the next record.
- ``write_jsonl_atomic`` rewrites a journal through a temporary file and ``os.replace``;
  ``write_json_atomic`` writes one JSON document the same way (a checkpoint).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class JournalError(ValueError):
    """A journal line other than the last does not parse."""


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def read_jsonl(path: str | os.PathLike[str]) -> tuple[list[Any], int]:
    """(records, torn): the file's records and 1 if a torn last line was dropped, else 0.
    A missing file is empty."""
    p = Path(path)
    if not p.exists():
        return [], 0
    lines = _lines(p.read_bytes())
    out: list[Any] = []
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            out.append(json.loads(raw.decode("utf-8")))
        except (ValueError, RecursionError) as e:
            if i == last:  # a record is written whole with its newline: a bad last line is torn
                log.warning("%s: dropped a torn last line (%d bytes)", p, len(raw))
                return out, 1
            raise JournalError(f"{p}: line {i + 1} is not valid JSON ({e})") from None
    return out, 0


def repair(path: str | os.PathLike[str]) -> int:
    """Cut a torn tail (an unparsable last line, or bytes after the last newline that do
    not parse) off the file; returns the bytes removed."""
    p = Path(path)
    if not p.exists():
        return 0
    data = p.read_bytes()
    if data.endswith(b"\n"):
        body = data.rstrip(b"\n")
        cut = body.rfind(b"\n") + 1  # start of the last line
        try:
            json.loads(body[cut:].decode("utf-8") or "null")
            return 0
        except (ValueError, RecursionError):
            pass
    else:
        cut = data.rfind(b"\n") + 1  # start of the unterminated tail (0: the whole file)
    tail = data[cut:]
    if tail.strip():
        try:
            json.loads(tail.decode("utf-8"))
            with open(p, "ab") as f:  # a whole record that only lost its newline
                f.write(b"\n")
            return 0
        except (ValueError, RecursionError):
            pass
    with open(p, "r+b") as f:
        f.truncate(cut)
    if tail:
        log.warning("%s: cut a torn tail of %d bytes", p, len(tail))
    return len(tail)


def append_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> None:
    """Append records as whole lines in one write (after repairing a torn tail)."""
    blob = "".join(json.dumps(r) + "\n" for r in records)
    if not blob:
        return
    p = Path(path)
    if p.exists() and p.stat().st_size:
        with open(p, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                repair(p)
    with open(p, "a", encoding="utf-8") as f:
        f.write(blob)
        f.flush()


def write_jsonl_atomic(path: str | os.PathLike[str], records: Iterable[Any]) -> None:
    """Replace the file's content with ``records`` atomically (temporary file + rename)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def write_json_atomic(path: str | os.PathLike[str], value: Any) -> None:
    """Replace the file with ``value`` as one JSON document (temporary file + rename): a kill
    leaves the old file or the new one, never a torn one. No fsync: it is a checkpoint written
    every few seconds, and a process kill, not a power loss, is what it guards against."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, p)
