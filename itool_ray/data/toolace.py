"""ToolACE loader (``Team-ACE/ToolACE`` ``data.json``): a local file or the Hugging Face hub.

Record shape (see docs/FORMATS.md): ``{"system": str, "conversations": [{"from": "user" |
"assistant" | "tool", "value": str}, ...]}``. The tools are the JSON list that follows
"Here is a list of functions in JSON format that you can invoke" in ``system``.

Every assistant turn that follows at least one user turn becomes a sample whose
``messages`` are the turns before it (multi-turn); an assistant call turn (gold or history)
is stored in canonical call syntax, plain-text turns unchanged; tool turns become role
``"tool"``. A record with any malformed turn is one bad record (its samples are all dropped
under ``on_error="skip"``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from itool_ray.data._common import canonical_turn, convert_records, require
from itool_ray.data.errors import (
    DataError,
    LoadReport,
    LoadResult,
    OnError,
    SourceUnavailableError,
    collect,
)
from itool_ray.data.jsonio import RawRecord, iter_json_records
from itool_ray.data.sample import Message, Sample, Tool

TOOLS_MARKER = "Here is a list of functions in JSON format that you can invoke"

ROLE_MAP: dict[str, str] = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
}

_DECODER = json.JSONDecoder()


def parse_system_tools(system: str) -> list[Tool]:
    """The tool list embedded in a ToolACE system prompt."""
    at = system.find(TOOLS_MARKER)
    expected = f"a JSON list of tools after {TOOLS_MARKER!r}"
    if at < 0:
        raise DataError(field="system", expected=expected, detail="marker not found")
    start = system.find("[", at + len(TOOLS_MARKER))
    if start < 0:
        raise DataError(field="system", expected=expected, detail="no '[' after the marker")
    try:
        tools, _ = _DECODER.raw_decode(system, start)
    except json.JSONDecodeError as e:
        raise DataError(field="system", expected=expected, detail=e.msg) from e
    if not isinstance(tools, list):
        raise DataError(field="system", expected=expected, detail="not a list")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise DataError(
                field=f"system.tools[{i}].name", expected="a tool object with a string name"
            )
    return tools


def toolace_record_samples(record: Any, record_id: str) -> list[Sample]:
    """All samples of one ToolACE dialogue (raises ``DataError`` without a location)."""
    system = require(record, "system", str, "a string holding the tool list")
    tools = tuple(parse_system_tools(system))
    conv = require(record, "conversations", list, "a list of {from, value} turns")
    turns: list[Message] = []
    targets: list[int] = []
    seen_user = False
    for j, turn in enumerate(conv):
        if not isinstance(turn, dict):
            raise DataError(field=f"conversations[{j}]", expected="a {from, value} object")
        frm = turn.get("from")
        role = ROLE_MAP.get(frm) if isinstance(frm, str) else None
        if role is None:
            raise DataError(
                field=f"conversations[{j}].from",
                expected="one of user/assistant/tool",
                detail=f"got {frm!r}",
            )
        value = turn.get("value")
        if not isinstance(value, str):
            raise DataError(
                field=f"conversations[{j}].value",
                expected="a string",
                detail=f"got {type(value).__name__}",
            )
        if role == "assistant":
            value, _ = canonical_turn(value, field=f"conversations[{j}].value")
            if seen_user:
                targets.append(j)
        seen_user = seen_user or role == "user"
        turns.append({"role": role, "content": value})
    if not targets:
        raise DataError(field="conversations", expected="an assistant turn after a user turn")
    return [
        Sample(
            id=f"toolace-{record_id}-t{j}",
            tools=tools,
            messages=tuple(turns[:j]),
            gold=turns[j]["content"],
            source="toolace",
            meta={"record": record_id, "turn": j},
        )
        for j in targets
    ]


def _record_id(raw: RawRecord) -> str:
    rid = raw.value.get("id") if isinstance(raw.value, dict) else None
    return str(rid) if rid is not None else str(raw.index)


def _iter_records(raws: Iterable[RawRecord], report: LoadReport, file: str) -> Iterator[Sample]:
    return convert_records(
        raws,
        report,
        file,
        lambda raw: toolace_record_samples(raw.value, _record_id(raw)),
        _record_id,
    )


def load_toolace(
    path: str | os.PathLike[str], *, on_error: OnError = "raise", max_error_messages: int = 20
) -> LoadResult:
    """Load a local ToolACE ``data.json`` (a JSON list or JSON lines)."""
    file = str(Path(path))
    report = LoadReport("toolace", file, on_error, max_error_messages)
    return collect(_iter_records(iter_json_records(path), report, file), report)


def load_toolace_hub(
    name: str = "Team-ACE/ToolACE",
    split: str = "train",
    *,
    on_error: OnError = "raise",
    max_error_messages: int = 20,
    **load_kwargs: Any,
) -> LoadResult:
    """Load ToolACE through ``datasets.load_dataset(name, split=split, **load_kwargs)``.

    Raises:
        SourceUnavailableError: ``datasets`` is missing or the hub cannot be reached; the
            message suggests :func:`load_toolace` on a local copy of ``data.json``.
    """
    hint = (
        f"download data.json of {name} where the hub is reachable and load it with "
        f"itool_ray.data.load_toolace(path)"
    )
    try:
        import datasets  # lazy: optional heavy dependency
    except ImportError as e:
        raise SourceUnavailableError(f"the 'datasets' package is not installed; {hint}") from e
    try:
        ds = datasets.load_dataset(name, split=split, **load_kwargs)
    except Exception as e:  # offline: ConnectionError, HfHubHTTPError, OSError...
        raise SourceUnavailableError(
            f"could not load {name!r} (split {split!r}) from the Hugging Face hub: "
            f"{type(e).__name__}: {e}; {hint}"
        ) from e
    where = f"hf://{name}[{split}]"
    report = LoadReport("toolace", where, on_error, max_error_messages)
    raws = (RawRecord(i, 0, dict(row)) for i, row in enumerate(ds))
    return collect(_iter_records(raws, report, where), report)
