"""API-Bank loader: ``level-1-api.json``, ``level-2-api.json`` (evaluation) and
``lv3-api-train.json`` (training).

* Tools: level-1/2 list one JSON description per line after "API descriptions:" in
  ``instruction`` (``name``, ``description``, ``input_parameters``); lv3 puts the
  ``ToolSearcher`` description (``apiCode``, ``parameters``) on the first lines of ``input``.
  Tools that an earlier ``ToolSearcher`` call returned in the dialogue are appended to the
  candidates (``meta["discovered_tools"]``), so the gold call's tool is always described.
  API-Bank does not mark required parameters: ``required`` is empty.
* Conversation (``input``): ``User:`` -> user, ``AI:`` -> assistant text,
  ``API-Request: [call]->result`` -> an assistant call turn plus a tool turn
  ``[{"name": ..., "results": ...}]`` (the ToolACE tool-turn shape); other lines continue
  the previous turn; ``Generate API Request:`` ends it. "The current year is 2023." from the
  instruction becomes a leading system turn (dates in the gold depend on it).
* Ids: ``api-bank-<l1|l2|lv3>-<position in the file>`` (upstream ``id`` restarts in each
  dialogue ``file``; both are kept in ``meta``).
* Gold: the ``API-Request: [...]`` of ``expected_output`` / ``output`` in canonical syntax
  (raw text in ``meta["raw_gold"]``). Some upstream calls are not valid Python
  (``drug1=Amoxicillin``, ``attendees='['a', 'b']'``, missing brackets): a lenient parser
  reads bare words as strings, strips the outer quotes of a quoted list and reads it as a
  list when the parameter is an array; a digit string for an ``int`` parameter becomes an
  int (``room_count='2'``). Other upstream defects are kept as they are (14 level-2 golds
  call a tool the dialogue only names in AI text; a few golds use parameters their tool
  does not declare): evaluation sets stay complete.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from itool_ray.calls import Call, CallParseError, parse_calls
from itool_ray.data._common import convert_records, render_gold, require
from itool_ray.data.errors import DataError, LoadReport, LoadResult, OnError, collect
from itool_ray.data.jsonio import iter_json_records
from itool_ray.data.paths import shared_data_root
from itool_ray.data.sample import Message, Sample, Tool
from itool_ray.data.schema import make_tool, tool_properties

API_BANK_SPLITS: dict[str, str] = {
    "level-1": "level-1-api.json",
    "level-2": "level-2-api.json",
    "lv3-train": "lv3-api-train.json",
}
_ID_PREFIX = {"level-1": "api-bank-l1", "level-2": "api-bank-l2", "lv3-train": "api-bank-lv3"}
REQUEST_SYNTAX = "API-Request: [ApiName(key='value', ...)]"

_CALL = re.compile(r"^\[?\s*([A-Za-z_][\w.]*)\s*\((.*)\)\s*\]?$", re.S)
_ARG_SPLIT = re.compile(r",\s*(?=[A-Za-z_]\w*\s*=)")
_HISTORY_CALL = re.compile(r"^API-Request:\s*(.*?\)\]?)\s*->(.*)$", re.S)
_NOW = re.compile(r"The current (?:year|time) is ([^\n{}]+?)\.?\n")
_LOOSE_TOOL = re.compile(
    r"'name': '([\w.]+)', 'description': '(.*?)', 'input_parameters': "
    r"\{(.*?)\}, 'output_parameters'",
    re.S,
)
_LOOSE_PARAM = re.compile(r"'(\w+)': \{'type': '([^']*)', 'description': '(.*?)'\}", re.S)


def api_bank_tool(desc: dict[str, Any]) -> Tool:
    """``{"name"|"apiCode", "description", "input_parameters"|"parameters"}`` -> tool."""
    name = desc.get("name", desc.get("apiCode"))
    params = desc.get("input_parameters", desc.get("parameters", {}))
    if isinstance(params, set | list | tuple) and all(str(p).lower() == "none" for p in params):
        params = {}  # upstream writes {'none'} (a Python set) for "no parameters"
    if not isinstance(name, str) or not isinstance(params, dict):
        raise DataError(field="tool", expected="{name, description, input_parameters}")
    return make_tool(name, str(desc.get("description", "")), params, [])


# What ast.literal_eval raises besides ValueError / SyntaxError: TypeError for an unhashable
# key ({[1]: 2}), RecursionError / MemoryError for deep nesting.
_LITERAL_ERRORS = (ValueError, SyntaxError, TypeError, RecursionError, MemoryError)


def _lenient_value(key: str, raw: str) -> Any:
    """A bare word or a quoted string reads as a string; a literal that Python refuses for
    another reason than its syntax (``{[1]: 2}``) is an error naming the argument."""
    raw = raw.strip()
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        pass
    except _LITERAL_ERRORS as e:
        raise DataError(
            expected=REQUEST_SYNTAX,
            detail=f"argument {key!r}: {raw[:80]!r} is not a valid literal ({type(e).__name__})",
        ) from None
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?\d+(?:\.\d+)?")
_BOOL = {"true": True, "false": False}


def _coerce(value: Any, schema: dict[str, Any] | None) -> Any:
    """Lossless fixes of upstream strings to the parameter's type: a quoted list for an array,
    ``'2'`` for an integer or number, ``'True'`` for a boolean; anything else is kept."""
    if not schema or not isinstance(value, str):
        return value
    t = schema.get("type")
    if t == "array":
        try:
            parsed = ast.literal_eval(value)
        except _LITERAL_ERRORS:
            return value
        return list(parsed) if isinstance(parsed, list | tuple) else value
    if t == "integer" and _INT.fullmatch(value.strip()):
        return int(value)
    if t in ("float", "number") and _FLOAT.fullmatch(value.strip()):
        return float(value)
    if t == "boolean" and value.strip().lower() in _BOOL:
        return _BOOL[value.strip().lower()]
    return value


def parse_api_request(text: str, tools: list[Tool] | tuple[Tool, ...] = ()) -> list[Call]:
    """Calls of an API-Bank ``API-Request: [...]`` string (strict first, then lenient)."""
    body = text.strip()
    if body.startswith("API-Request:"):
        body = body[len("API-Request:") :].strip()
    if not body.startswith("["):
        body = f"[{body}]"
    schemas = {t["name"]: tool_properties(t) for t in tools}
    try:
        calls = parse_calls(body)
    except (CallParseError, RecursionError, MemoryError):
        calls = None
    if not calls:
        m = _CALL.match(body)
        if m is None:
            raise DataError(expected=REQUEST_SYNTAX, detail=f"cannot parse {text.strip()!r}")
        args: dict[str, Any] = {}
        for part in _ARG_SPLIT.split(m.group(2).strip()) if m.group(2).strip() else []:
            key, sep, raw = part.partition("=")
            if not sep:
                raise DataError(expected=REQUEST_SYNTAX, detail=f"argument {part!r} has no '='")
            key = key.strip()
            if not key.isidentifier():
                raise DataError(
                    expected=REQUEST_SYNTAX,
                    detail=f"argument name {key[:80]!r} is not an identifier",
                )
            if key in args:
                raise DataError(expected=REQUEST_SYNTAX, detail=f"argument {key!r} given twice")
            args[key] = _lenient_value(key, raw)
        calls = [Call(name=m.group(1), arguments=args)]
    return [
        Call(
            name=c.name,
            arguments={
                k: _coerce(v, schemas.get(c.name, {}).get(k)) for k, v in c.arguments.items()
            },
        )
        for c in calls
    ]


def _discovered(result: str) -> list[dict[str, Any]]:
    """Tool descriptions inside a ToolSearcher result (a dict, a list of dicts, or a Python
    repr that does not parse because of an apostrophe)."""
    try:
        value = ast.literal_eval(result)
    except _LITERAL_ERRORS:
        out = []
        for name, desc, body in _LOOSE_TOOL.findall(result):
            params = {p: {"type": t, "description": d} for p, t, d in _LOOSE_PARAM.findall(body)}
            out.append({"name": name, "description": desc, "input_parameters": params})
        return out
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, dict) and "name" in v and "input_parameters" in v]


def _jsonable(obj: Any) -> Any:
    """Python-literal results may hold sets (``{'none'}``): list them."""
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    return str(obj)


def _result_value(result: str) -> Any:
    try:
        return ast.literal_eval(result)
    except _LITERAL_ERRORS:
        return result


def _dialogue(lines: list[str], tools: list[Tool]) -> tuple[list[Message], list[str]]:
    """Turns of the ``input`` dialogue; appends discovered tools to ``tools`` in place."""
    turns: list[Message] = []
    discovered: list[str] = []
    for line in lines:
        if line.startswith("Generate API Request:"):
            break
        if line.startswith("User:"):
            turns.append({"role": "user", "content": line[5:].strip()})
        elif line.startswith("AI:"):
            turns.append({"role": "assistant", "content": line[3:].strip()})
        elif line.startswith("API-Request:"):
            m = _HISTORY_CALL.match(line)
            if m is None:
                raise DataError(
                    field="input",
                    expected=f"{REQUEST_SYNTAX}->result",
                    detail=f"cannot parse {line[:80]!r}",
                )
            try:
                calls = parse_api_request(m.group(1), tools)
            except DataError as e:
                raise DataError(field="input", expected=REQUEST_SYNTAX, detail=e.detail) from None
            turns.append({"role": "assistant", "content": render_gold(calls, field="input")})
            result = m.group(2).strip()
            names = {t["name"] for t in tools}
            for desc in _discovered(result) if calls[0].name == "ToolSearcher" else []:
                if desc["name"] not in names:
                    tools.append(api_bank_tool(desc))
                    names.add(desc["name"])
                    discovered.append(desc["name"])
            content = [{"name": calls[0].name, "results": _result_value(result)}]
            turns.append(
                {
                    "role": "tool",
                    "content": json.dumps(content, ensure_ascii=False, default=_jsonable),
                }
            )
        elif turns and line.strip():
            turns[-1]["content"] += "\n" + line
    if not turns or not any(t["role"] == "user" for t in turns):
        raise DataError(field="input", expected="a dialogue with at least one 'User:' line")
    return turns, discovered


def _tools_from_lines(lines: list[str], field: str) -> list[Tool]:
    tools = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            tools.append(api_bank_tool(json.loads(line)))
        except (json.JSONDecodeError, DataError) as e:
            raise DataError(
                field=field,
                expected="one JSON API description per line",
                detail=f"description {k}: {e}",
            ) from None
    if not tools:
        raise DataError(field=field, expected="at least one API description")
    return tools


def api_bank_record_sample(rec: Any, split: str, index: int) -> Sample:
    instruction = require(rec, "instruction", str, "a string instruction")
    inp = require(rec, "input", str, "a string dialogue")
    gold_key = "output" if split == "lv3-train" else "expected_output"
    raw_gold = require(rec, gold_key, str, REQUEST_SYNTAX)
    if split == "lv3-train":
        lines = inp.split("\n")
        first_user = next((i for i, ln in enumerate(lines) if ln.startswith("User:")), None)
        if first_user is None:
            raise DataError(field="input", expected="API descriptions then a 'User:' line")
        tools = _tools_from_lines(lines[:first_user], "input")
        lines = lines[first_user:]
    else:
        head, sep, descs = instruction.partition("API descriptions:")
        if not sep:
            raise DataError(field="instruction", expected="'API descriptions:' then the APIs")
        tools = _tools_from_lines(descs.strip().split("\n"), "instruction")
        lines = inp.split("\n")
    turns, discovered = _dialogue(lines, tools)
    try:
        gold_calls = parse_api_request(raw_gold, tools)
    except DataError as e:
        raise DataError(field=gold_key, expected=REQUEST_SYNTAX, detail=e.detail) from None
    now = _NOW.search(instruction)
    if now:
        turns.insert(0, {"role": "system", "content": now.group(0).strip()})
    meta: dict[str, Any] = {"split": split, "raw_gold": raw_gold}
    if "file" in rec:  # upstream ids repeat across files: (file, id) is the upstream key
        meta["file"] = rec["file"]
        meta["upstream_id"] = rec.get("id")
    if discovered:
        meta["discovered_tools"] = discovered
    return Sample(
        id=f"{_ID_PREFIX[split]}-{index}",
        tools=tuple(tools),
        messages=tuple(turns),
        gold=render_gold(gold_calls, field=gold_key),
        source="api-bank",
        meta=meta,
    )


def load_api_bank(
    split: str = "level-1",
    *,
    root: str | os.PathLike[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    on_error: OnError = "raise",
    max_error_messages: int = 20,
) -> LoadResult:
    """Load an API-Bank split: ``level-1``, ``level-2`` (evaluation) or ``lv3-train``."""
    if split not in API_BANK_SPLITS:
        raise ValueError(f"split must be one of {tuple(API_BANK_SPLITS)}, got {split!r}")
    base = Path(root) if root is not None else shared_data_root() / "api-bank"
    file_path = Path(path) if path is not None else base / API_BANK_SPLITS[split]
    report = LoadReport("api-bank", str(file_path), on_error, max_error_messages)
    return collect(_iter(file_path, split, report), report)


def _iter(file_path: Path, split: str, report: LoadReport) -> Iterator[Sample]:
    return convert_records(
        iter_json_records(file_path),
        report,
        str(file_path),
        lambda raw: [api_bank_record_sample(raw.value, split, raw.index)],
        lambda raw: str(raw.index),
    )
