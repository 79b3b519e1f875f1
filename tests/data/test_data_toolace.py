"""ToolACE loader on hand-written records in the exact data.json shape, and its error policy."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from itool_ray.calls import parse_calls
from itool_ray.data import (
    DataError,
    SourceUnavailableError,
    load_toolace,
    load_toolace_hub,
    parse_system_tools,
)

MARKET_TOOLS = [
    {
        "name": "Market Trends API",
        "description": "Get the latest market trends.",
        "parameters": {
            "type": "dict",
            "properties": {
                "trend_type": {"type": "string", "description": "Trend category"},
                "country": {"type": "string", "description": "Country code"},
            },
            "required": ["trend_type"],
        },
    },
    {
        "name": "math.factorial",
        "description": "Factorial of n.",
        "parameters": {
            "type": "dict",
            "properties": {"n": {"type": "integer", "description": "n"}},
            "required": ["n"],
        },
    },
]


def toolace_system(tools: list[dict[str, Any]]) -> str:
    """A system prompt in the shape of ToolACE's data.json."""
    return (
        "You are an expert in composing functions. You are given a question and a set of "
        "possible functions. \nBased on the question, you will need to make one or more "
        "function/tool calls to achieve the purpose. \n"
        "Here is a list of functions in JSON format that you can invoke:\n"
        + json.dumps(tools)
        + ". \nShould you decide to return the function call(s). \nPut it in the format of "
        "[func1(params_name=params_value, params_name2=params_value2...), func2(params)]\n\n"
        "NO other text MUST be included. \n"
    )


def single_turn() -> dict[str, Any]:
    return {
        "system": toolace_system(MARKET_TOOLS),
        "conversations": [
            {"from": "user", "value": "What are the market indexes in the us?"},
            {
                "from": "assistant",
                "value": '[Market Trends API(trend_type="MARKET_INDEXES", country="us")]',
            },
        ],
    }


def multi_turn() -> dict[str, Any]:
    return {
        "system": toolace_system(MARKET_TOOLS),
        "conversations": [
            {"from": "user", "value": "Show me market indexes and 5 factorial."},
            {
                "from": "assistant",
                "value": "[Market Trends API(trend_type='MARKET_INDEXES'), math.factorial(n=5)]",
            },
            {"from": "tool", "value": '[{"name": "math.factorial", "results": {"value": 120}}]'},
            {"from": "assistant", "value": "5! is 120 and the indexes are up."},
            {"from": "user", "value": "Thanks! Now 7 factorial."},
            {"from": "assistant", "value": "[math.factorial(n=7)]"},
        ],
    }


def plain_text() -> dict[str, Any]:
    return {
        "system": toolace_system(MARKET_TOOLS),
        "conversations": [
            {"from": "user", "value": "Book me a flight to Paris."},
            {"from": "assistant", "value": "None of the given functions can book a flight."},
        ],
    }


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_single_turn_record(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([single_turn()], indent=2))
    result = load_toolace(path)
    assert len(result) == 1
    s = result[0]
    assert s.id == "toolace-0-t1"
    assert s.source == "toolace"
    assert list(s.tools) == MARKET_TOOLS  # names with a space and a dot survive
    assert s.messages == ({"role": "user", "content": "What are the market indexes in the us?"},)
    assert s.gold == '[Market Trends API(trend_type="MARKET_INDEXES", country="us")]'
    assert s.ground_truth is None
    assert result.report.records == 1 and result.report.samples == 1


def test_multi_turn_every_assistant_turn_is_a_target(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [multi_turn()])
    samples = list(load_toolace(path))
    assert [s.id for s in samples] == ["toolace-0-t1", "toolace-0-t3", "toolace-0-t5"]
    first, second, third = samples
    assert len(first.messages) == 1
    # single quotes in the source are rendered canonically (double quotes)
    assert first.gold == '[Market Trends API(trend_type="MARKET_INDEXES"), math.factorial(n=5)]'
    # the tool turn maps to role "tool" and the text answer is a plain-text target
    assert [m["role"] for m in second.messages] == ["user", "assistant", "tool"]
    assert second.messages[2]["content"].startswith('[{"name": "math.factorial"')
    assert second.gold == "5! is 120 and the indexes are up."
    assert parse_calls(second.gold) is None
    # the last target sees the whole history, including its own earlier call turn
    assert [m["role"] for m in third.messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert third.messages[1]["content"] == first.gold
    assert third.gold == "[math.factorial(n=7)]"
    assert all(s.meta["line"] == 1 for s in samples)


def test_plain_text_answer(tmp_path):
    (s,) = load_toolace(write_jsonl(tmp_path / "d.jsonl", [plain_text()]))
    assert s.gold == "None of the given functions can book a flight."


def test_json_list_records_get_their_line_numbers(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([single_turn(), plain_text()], indent=1))
    samples = load_toolace(path).samples
    lines = path.read_text().splitlines()
    for s in samples:  # meta["line"] is where the record's "{" is
        assert lines[s.meta["line"] - 1].strip() == "{"
    assert samples[0].meta["line"] < samples[1].meta["line"]


def test_system_prompt_parse_errors():
    with pytest.raises(DataError, match="marker not found"):
        parse_system_tools("You are an expert. No tools here.")
    with pytest.raises(DataError, match="system"):
        parse_system_tools(
            "Here is a list of functions in JSON format that you can invoke:\n[{oops"
        )


def _bad_records():
    missing = single_turn()
    del missing["conversations"]
    wrong_type = single_turn()
    wrong_type["conversations"][1]["value"] = 42
    bad_role = single_turn()
    bad_role["conversations"][0]["from"] = "narrator"
    bad_call = single_turn()
    bad_call["conversations"][1]["value"] = '[Market Trends API(trend_type="X", 3)]'
    return [
        (missing, "field 'conversations'"),
        (wrong_type, "field 'conversations[1].value': expected a string"),
        (bad_role, "field 'conversations[0].from'"),
        (bad_call, "field 'conversations[1].value': expected a call list"),
    ]


@pytest.mark.parametrize("record,needle", _bad_records())
def test_malformed_record_names_file_line_and_field(tmp_path, record, needle):
    path = write_jsonl(tmp_path / "bad.jsonl", [single_turn(), record])
    with pytest.raises(DataError) as info:
        load_toolace(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2 [record 1]: ")
    assert needle in message
    assert info.value.file == str(path) and info.value.line == 2


def test_bad_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(single_turn()) + "\n{not json\n")
    with pytest.raises(DataError, match=rf"{path}:2: expected one JSON value per line"):
        load_toolace(path)


def test_skip_mode_counts_bad_records_and_keeps_good_ones(tmp_path, caplog):
    bad = [r for r, _ in _bad_records()]
    path = tmp_path / "mixed.jsonl"
    rows = [single_turn(), *bad, multi_turn()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    with caplog.at_level(logging.WARNING, logger="itool_ray.data.errors"):
        result = load_toolace(path, on_error="skip", max_error_messages=2)
    report = result.report
    assert report.records == 7 and report.skipped == 5
    assert report.samples == len(result) == 1 + 3
    assert [s.meta["record"] for s in result] == ["0", "5", "5", "5"]
    assert len(report.errors) == 2 and f"{path}:2" in report.errors[0]
    assert "skipped 5 malformed record(s) of 7" in caplog.text


def test_bad_on_error_value(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        load_toolace(write_jsonl(tmp_path / "d.jsonl", [single_turn()]), on_error="ignore")


def test_hub_loader_reads_rows_through_datasets(monkeypatch):
    calls = {}

    def load_dataset(name, split, **kwargs):
        calls.update(name=name, split=split, **kwargs)
        return [single_turn(), multi_turn()]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    result = load_toolace_hub(split="train", revision="main")
    assert calls == {"name": "Team-ACE/ToolACE", "split": "train", "revision": "main"}
    assert [s.id for s in result] == [
        "toolace-0-t1",
        "toolace-1-t1",
        "toolace-1-t3",
        "toolace-1-t5",
    ]
    assert result.report.path == "hf://Team-ACE/ToolACE[train]"


def test_hub_loader_offline_suggests_a_local_file(monkeypatch):
    def load_dataset(name, split, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(SourceUnavailableError) as info:
        load_toolace_hub()
    assert "ConnectionError: hub unreachable" in str(info.value)
    assert "load_toolace(path)" in str(info.value)


def test_hub_loader_without_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(SourceUnavailableError, match="not installed.*load_toolace"):
        load_toolace_hub()
