"""BFCL v3 loader, reading the data shipped in the installed ``nvidia-bfcl`` package.

``bfcl/data/BFCL_v3_<category>.json`` holds JSON lines ``{"id", "question": [[{"role",
"content"}, ...], ...], "function": [tool, ...]}`` and
``bfcl/data/possible_answer/BFCL_v3_<category>.json`` ``{"id", "ground_truth": [{"fname":
{"arg": [allowed, ...]}}]}``. Only the first turn list of ``question`` is used (the AST and
irrelevance categories are single-turn); a system message in it stays in ``messages`` (the
prompt builder merges it into the system prompt).

* AST categories: ``ground_truth`` goes to ``Sample.ground_truth`` unchanged; ``gold`` is the
  response rendered from the first allowed value of each argument, leaving out optional
  arguments whose first allowed value is ``""``.
* Irrelevance categories (no possible_answer file): ``gold`` is a plain-text refusal
  (:data:`NO_CALL_GOLD`), ``ground_truth`` is ``[]`` (the model must make no call).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from itool_ray.calls import Call
from itool_ray.data._common import convert_records, render_gold, require
from itool_ray.data.errors import DataError, LoadReport, LoadResult, OnError, collect
from itool_ray.data.jsonio import RawRecord, iter_json_records
from itool_ray.data.paths import bfcl_data_dir
from itool_ray.data.sample import GroundTruth, Sample, Tool
from itool_ray.data.schema import tool_properties, tool_required

BFCL_AST_CATEGORIES: tuple[str, ...] = (
    "simple",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
BFCL_IRRELEVANCE_CATEGORIES: tuple[str, ...] = ("irrelevance", "live_irrelevance")
BFCL_CATEGORIES: tuple[str, ...] = BFCL_AST_CATEGORIES + BFCL_IRRELEVANCE_CATEGORIES

NO_CALL_GOLD = (
    "None of the available functions can be used to answer this request, "
    "so I cannot make a function call for it."
)


def first_allowed(value: Any) -> Any:
    """The first choice inside an allowed value: a dict whose values are all lists is BFCL's
    ``{key: [allowed, ...]}`` form (``""`` first = optional key, left out), at any depth."""
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        return {k: first_allowed(v[0]) for k, v in value.items() if v and v[0] != ""}
    if isinstance(value, list):
        return [first_allowed(v) for v in value]
    return value


def gold_from_ground_truth(gt: Any, tools: Sequence[Tool] = ()) -> tuple[GroundTruth, list[Call]]:
    """Validate a BFCL ``ground_truth`` and build the gold calls from the first allowed value
    of each argument. An argument whose first allowed value is ``""`` is optional and left
    out, unless the tool schema requires it (then its first other value is used); an optional
    argument absent from the schema is left out too."""
    required = {t.get("name"): set(tool_required(t)) for t in tools if isinstance(t, dict)}
    known = {t.get("name"): set(tool_properties(t)) for t in tools if isinstance(t, dict)}
    if not isinstance(gt, list) or not gt:
        raise DataError(field="ground_truth", expected="a non-empty list of {fname: {arg: [..]}}")
    calls = []
    for i, entry in enumerate(gt):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise DataError(field=f"ground_truth[{i}]", expected="a one-key {fname: {arg: [..]}}")
        ((fname, args),) = entry.items()
        if not isinstance(args, dict):
            raise DataError(field=f"ground_truth[{i}].{fname}", expected="an {arg: [..]} object")
        chosen = {}
        for arg, allowed in args.items():
            if not isinstance(allowed, list):
                raise DataError(
                    field=f"ground_truth[{i}].{fname}.{arg}", expected="a list of allowed values"
                )
            if not allowed:
                # Upstream defect (live_simple_106/112): an array argument whose answer is
                # "no items" is written [] instead of [[]]; the intended value is [].
                chosen[arg] = []
                continue
            if "" in allowed and fname in known and arg not in known[fname]:
                continue  # optional and not in the schema (upstream parallel_multiple_26)
            if allowed[0] == "":
                others = [v for v in allowed if v != ""]
                if arg in required.get(fname, ()) and others:
                    chosen[arg] = first_allowed(others[0])
                continue  # optional argument, left out
            chosen[arg] = first_allowed(allowed[0])
        calls.append(Call(name=fname, arguments=chosen))
    return gt, calls


def _answers(path: Path) -> dict[str, Any]:
    """possible_answer by id, plus by id stem (``live_multiple_1052``) where the stem is unique:
    upstream has one id typo (question ``live_multiple_1052-79-0``, answer ``...-279-0``).
    A reference table: a bad line (no string id, a repeated id) raises ``DataError``."""
    out: dict[str, Any] = {}
    stems: dict[str, list[str]] = {}
    for raw in iter_json_records(path):
        if raw.error is not None:
            raise raw.error
        try:
            rid = require(raw.value, "id", str, "a string id")
            if rid in out:
                raise DataError(field="id", expected="a unique id", detail="repeated")
        except DataError as e:
            raise e.located(file=str(path), line=raw.line) from None
        out[rid] = raw.value.get("ground_truth")
        stems.setdefault(_stem(rid), []).append(rid)
    for stem, ids in stems.items():
        if len(ids) == 1 and stem not in out:
            out[stem] = out[ids[0]]
    return out


def _stem(rid: str) -> str:
    return rid.split("-", 1)[0]


def bfcl_record_sample(rec: Any, category: str, answers: dict[str, Any] | None) -> Sample:
    rid = require(rec, "id", str, "a string id")
    question = require(rec, "question", list, "[[{role, content}, ...]]")
    if not question or not isinstance(question[0], list) or not question[0]:
        raise DataError(field="question", expected="[[{role, content}, ...]] (a turn list)")
    messages = []
    for j, m in enumerate(question[0]):
        if not (
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
        ):
            raise DataError(field=f"question[0][{j}]", expected="{role: str, content: str}")
        messages.append({"role": m["role"], "content": m["content"]})
    functions = require(rec, "function", list, "a list of tools")
    for k, f in enumerate(functions):
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise DataError(field=f"function[{k}]", expected="a tool with a string name")
    if answers is None:
        gt: GroundTruth = []
        gold = NO_CALL_GOLD
    else:
        key = rid if rid in answers else _stem(rid)
        if key not in answers:
            raise DataError(field="id", expected="an entry in possible_answer/")
        gt, calls = gold_from_ground_truth(answers[key], functions)
        gold = render_gold(calls, field="ground_truth[{i}].{name}")
    return Sample(
        id=rid,
        tools=tuple(functions),
        messages=tuple(messages),
        gold=gold,
        ground_truth=gt,
        source="bfcl",
        meta={"category": category},
    )


def load_bfcl(
    category: str = "simple",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    on_error: OnError = "raise",
    max_error_messages: int = 20,
) -> LoadResult:
    """Load one BFCL v3 category (see :data:`BFCL_CATEGORIES`).

    Raises:
        FileNotFoundError: ``nvidia-bfcl`` is not installed and no ``data_dir`` was given.
    """
    if category not in BFCL_CATEGORIES:
        raise ValueError(f"unsupported BFCL category {category!r}; supported: {BFCL_CATEGORIES}")
    base = Path(data_dir) if data_dir is not None else bfcl_data_dir()
    path = base / f"BFCL_v3_{category}.json"
    answers = (
        None
        if category in BFCL_IRRELEVANCE_CATEGORIES
        else _answers(base / "possible_answer" / f"BFCL_v3_{category}.json")
    )
    report = LoadReport("bfcl", str(path), on_error, max_error_messages)
    return collect(_iter(path, category, answers, report), report)


def _iter(
    path: Path, category: str, answers: dict[str, Any] | None, report: LoadReport
) -> Iterator[Sample]:
    return convert_records(
        iter_json_records(path),
        report,
        str(path),
        lambda raw: [bfcl_record_sample(raw.value, category, answers)],
        _record_id,
    )


def _record_id(raw: RawRecord) -> str | None:
    rid = raw.value.get("id") if isinstance(raw.value, dict) else None
    return str(rid) if rid is not None else None
