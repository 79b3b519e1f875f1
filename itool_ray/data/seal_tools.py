"""Seal-Tools loader: ``tool.jsonl`` (the API pool) + ``dev`` / ``test_*`` rows.

Row shape: ``{"id", "query", "calling": [{"api", "parameters": {...}, "responses": [...]}]}``.
Each row becomes one single-turn sample whose gold is the calling list in canonical call
syntax (``responses`` is not an argument and is dropped from the gold).

Candidate tools (``candidates=``):

* ``"sampled"`` (default): the called apis (first-call order) plus ``num_distractors`` other
  apis of the pool, drawn with ``random.Random(f"seal-tools:{seed}:{row id}")``: first from
  the same top-level field as the called apis (harder, like a retriever), then from the
  whole pool; then the list is shuffled with the same generator. Depends only on
  (seed, row id, pool), so it is stable under reordering and partial reads.
* ``"upstream"``: the 5-api candidate list of the upstream ``finetune/<split>.json`` prompt
  (gold apis plus retrieved distractors). Rows whose gold apis are missing from that list
  (8 difficult rows over the three splits) are bad records.

Parameter values ``"API_call_k"`` (the k-th output of an earlier call) are kept as string
literals, as the upstream evaluator compares them; such rows carry
``meta["references"]`` and can be left out with ``drop_references=True``. With
``include_responses=True`` each tool also lists its response fields (``"responses"``) so the
numbering (responses counted over the calls in order) can be learnt.
"""

from __future__ import annotations

import ast
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from itool_ray.calls import Call
from itool_ray.data._common import convert_records, render_gold, require
from itool_ray.data.errors import DataError, LoadReport, LoadResult, OnError, collect
from itool_ray.data.jsonio import RawRecord, iter_json_records
from itool_ray.data.paths import shared_data_root
from itool_ray.data.sample import Sample, Tool
from itool_ray.data.schema import make_tool

SEAL_SPLITS: tuple[str, ...] = ("dev", "test_in_domain", "test_out_domain")
_REF = re.compile(r"^API_call_\d+$")
_API_LIST = re.compile(r"api_list = (\[.*\])\ntask_instruction = ", re.S)


def seal_tool(raw: dict[str, Any], *, include_responses: bool = False) -> Tool:
    """A ``tool.jsonl`` entry in the canonical tool shape (types ``str`` -> ``string``...)."""
    tool = make_tool(
        str(raw["api_name"]),
        str(raw.get("api_description", "")),
        raw.get("parameters") or {},
        raw.get("required") or [],
    )
    if include_responses:
        tool["responses"] = dict(raw.get("responses") or {})
    return tool


def _check_pool_entry(raw: Any) -> None:
    require(raw, "api_name", str, "a string api name")
    if not isinstance(raw.get("parameters", {}), dict):
        raise DataError(field="parameters", expected="an object {name: {type, description}}")
    if not isinstance(raw.get("required", []), list):
        raise DataError(field="required", expected="a list of parameter names")


def load_seal_tools_pool(path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """The raw ``tool.jsonl`` entries by ``api_name`` (file order). A reference table, so a
    bad entry always raises ``DataError``."""
    path = Path(path) if path is not None else shared_data_root() / "seal-tools" / "tool.jsonl"
    pool: dict[str, dict[str, Any]] = {}
    for raw in iter_json_records(path):
        if raw.error is not None:
            raise raw.error
        try:
            _check_pool_entry(raw.value)
            if raw.value["api_name"] in pool:
                raise DataError(field="api_name", expected="a unique api name", detail="repeated")
        except DataError as e:
            raise e.located(file=str(path), line=raw.line) from None
        pool[raw.value["api_name"]] = raw.value
    return pool


def seal_tools_pool_tools(path: str | os.PathLike[str] | None = None) -> list[Tool]:
    """The whole Seal-Tools pool as canonical tools (e.g. for the synthesizer)."""
    return [seal_tool(raw) for raw in load_seal_tools_pool(path).values()]


def _top_field(raw: dict[str, Any]) -> str:
    return str(raw.get("field", "")).split("/")[0]


class _Distractors:
    """Seeded distractor sampling over a pool, same-field first."""

    def __init__(self, pool: dict[str, dict[str, Any]]) -> None:
        self.names = list(pool)
        self.by_field: dict[str, list[str]] = {}
        for name, raw in pool.items():
            self.by_field.setdefault(_top_field(raw), []).append(name)
        self.pool = pool

    def pick(self, rng: random.Random, called: list[str], k: int) -> list[str]:
        taken = set(called)
        fields = {_top_field(self.pool[n]) for n in called}
        near = [n for f in sorted(fields) for n in self.by_field.get(f, []) if n not in taken]
        out = rng.sample(near, min(k, len(near)))
        taken.update(out)
        while len(out) < k and len(taken) < len(self.names):
            n = self.names[rng.randrange(len(self.names))]
            if n not in taken:
                taken.add(n)
                out.append(n)
        return out


def _upstream_candidates(path: Path) -> dict[str, list[dict[str, Any]]]:
    """``finetune/<split>.json``: row id -> the api_list rendered into its prompt."""
    out: dict[str, list[dict[str, Any]]] = {}
    for raw in iter_json_records(path):
        if raw.error is not None:
            raise raw.error
        rec = raw.value
        rid = str(rec.get("id")) if isinstance(rec, dict) else f"#{raw.index}"
        try:
            conv = require(rec, "conversations", list, "a [human, gpt] conversation")
            first = conv[0] if conv and isinstance(conv[0], dict) else {}
            m = _API_LIST.search(str(first.get("value", "")))
            if m is None:
                raise DataError(
                    field="conversations[0].value",
                    expected="'api_list = [...]' followed by 'task_instruction = '",
                )
            api_list = ast.literal_eval(m.group(1))
            if not isinstance(api_list, list):
                raise DataError(field="conversations[0].value", expected="a list api_list")
        except Exception as e:  # literal_eval raises ValueError, TypeError, RecursionError...
            err = DataError.from_exception(e, expected="a Python-literal api_list")
            if not isinstance(e, DataError):
                err = DataError(
                    field="conversations[0].value", expected=err.expected, detail=err.detail
                )
            raise err.located(file=str(path), line=raw.line, record_id=rid) from None
        out[rid] = api_list
    return out


def _row_calls(row: Any, pool: dict[str, dict[str, Any]]) -> tuple[str, str, list[Call]]:
    rid = str(require(row, "id", str, "a string row id"))
    query = require(row, "query", str, "a string query")
    calling = require(row, "calling", list, "a non-empty list of {api, parameters}")
    if not calling:
        raise DataError(field="calling", expected="a non-empty list of {api, parameters}")
    calls = []
    for i, c in enumerate(calling):
        if not isinstance(c, dict) or not isinstance(c.get("api"), str):
            raise DataError(field=f"calling[{i}].api", expected="a string api name")
        if c["api"] not in pool:
            raise DataError(
                field=f"calling[{i}].api",
                expected="an api_name of tool.jsonl",
                detail=f"unknown api {c['api']!r}",
            )
        params = c.get("parameters", {})
        if not isinstance(params, dict):
            raise DataError(field=f"calling[{i}].parameters", expected="an object")
        calls.append(Call(name=c["api"], arguments=dict(params)))
    return rid, query, calls


def load_seal_tools(
    split: str = "dev",
    *,
    root: str | os.PathLike[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    tools_path: str | os.PathLike[str] | None = None,
    candidates: Literal["sampled", "upstream"] = "sampled",
    num_distractors: int = 4,
    seed: int = 0,
    include_responses: bool = False,
    drop_references: bool = False,
    on_error: OnError = "raise",
    max_error_messages: int = 20,
) -> LoadResult:
    """Load one Seal-Tools split (``dev``, ``test_in_domain``, ``test_out_domain``).

    Args:
        root: the ``seal-tools`` folder (default ``<shared data>/seal-tools``).
        path / tools_path: explicit rows file / pool file (override ``root``).
        candidates: ``"sampled"`` distractors or the ``"upstream"`` finetune lists.
        num_distractors: distractors per row in ``"sampled"`` mode.
    """
    if split not in SEAL_SPLITS and path is None:
        raise ValueError(f"split must be one of {SEAL_SPLITS}, got {split!r}")
    if candidates not in ("sampled", "upstream"):
        raise ValueError(f"candidates must be 'sampled' or 'upstream', got {candidates!r}")
    if num_distractors < 0:
        raise ValueError("num_distractors must be >= 0")
    base = Path(root) if root is not None else shared_data_root() / "seal-tools"
    rows_path = Path(path) if path is not None else base / f"{split}.jsonl"
    pool = load_seal_tools_pool(tools_path if tools_path is not None else base / "tool.jsonl")
    upstream = (
        _upstream_candidates(base / "finetune" / f"{split}.json")
        if candidates == "upstream"
        else None
    )
    report = LoadReport("seal-tools", str(rows_path), on_error, max_error_messages)
    gen = _iter_rows(
        rows_path,
        pool,
        upstream,
        report,
        num_distractors=num_distractors,
        seed=seed,
        include_responses=include_responses,
        drop_references=drop_references,
    )
    return collect(gen, report)


def _iter_rows(
    rows_path: Path,
    pool: dict[str, dict[str, Any]],
    upstream: dict[str, list[dict[str, Any]]] | None,
    report: LoadReport,
    *,
    num_distractors: int,
    seed: int,
    include_responses: bool,
    drop_references: bool,
) -> Iterator[Sample]:
    distractors = _Distractors(pool)

    def convert(raw: RawRecord) -> list[Sample]:
        rid, query, calls = _row_calls(raw.value, pool)
        called = list(dict.fromkeys(c.name for c in calls))
        if upstream is None:
            rng = random.Random(f"seal-tools:{seed}:{rid}")
            names = called + distractors.pick(rng, called, num_distractors)
            rng.shuffle(names)
            raws = [pool[n] for n in names]
        else:
            if rid not in upstream:
                raise DataError(field="id", expected="a row present in finetune/")
            raws = upstream[rid]
            listed = {r.get("api_name") for r in raws if isinstance(r, dict)}
            missing = [n for n in called if n not in listed]
            if missing:
                raise DataError(
                    field="calling",
                    expected="apis present in the upstream candidate api_list",
                    detail=f"missing {missing}",
                )
        gold = render_gold(calls, field="calling[{i}].parameters")
        refs = sorted(
            {v for c in calls for v in c.arguments.values() if isinstance(v, str) and _REF.match(v)}
        )
        if refs and drop_references:
            report.filtered += 1
            return []
        meta: dict[str, Any] = {"split": rows_path.stem}
        if refs:
            meta["references"] = refs
        return [
            Sample(
                id=rid,
                tools=tuple(seal_tool(r, include_responses=include_responses) for r in raws),
                messages=({"role": "user", "content": query},),
                gold=gold,
                source="seal-tools",
                meta=meta,
            )
        ]

    yield from convert_records(
        iter_json_records(rows_path), report, str(rows_path), convert, _row_id
    )


def _row_id(raw: RawRecord) -> str | None:
    rid = raw.value.get("id") if isinstance(raw.value, dict) else None
    return str(rid) if rid is not None else None
