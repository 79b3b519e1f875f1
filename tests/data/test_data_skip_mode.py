"""Poison records (issue 17, item 8): skip mode skips them and counts records, raise mode
names the record and the field; nothing else of the file is lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from itool_ray.data import (
    DataError,
    Sample,
    load_api_bank,
    load_bfcl,
    load_seal_tools,
    load_toolace,
    read_samples,
    write_samples,
)

POOL = [
    {
        "api_name": "getX",
        "api_description": "x",
        "field": "A/B",
        "parameters": {"q": {"type": "str", "description": "q"}},
        "required": ["q"],
    }
]


def _row(rid: str, **params: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "query": "x",
        "calling": [{"api": "getX", "parameters": params or {"q": rid}}],
    }


def _lines(path: Path, *lines: str | bytes) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return path


def _seal(tmp_path: Path, *lines: str | bytes) -> tuple[Path, Path]:
    pool = _lines(tmp_path / "tool.jsonl", *(json.dumps(p) for p in POOL))
    return _lines(tmp_path / "dev.jsonl", *lines), pool


def _check_both_modes(load, *, needle: str, start: str, kept: list[str], records: int) -> None:
    """Raise mode: a ``DataError`` starting with ``start`` and holding ``needle``; skip mode:
    the ``kept`` ids, one skipped record, ``records`` records counted."""
    with pytest.raises(DataError) as info:
        load("raise")
    assert str(info.value).startswith(start), str(info.value)
    assert needle in str(info.value)
    result = load("skip")
    assert [s.id for s in result] == kept
    assert (result.report.records, result.report.skipped) == (records, 1)
    assert needle in result.report.errors[0]


def test_a_byte_that_is_not_utf8_skips_only_its_record(tmp_path):
    rows, pool = _seal(
        tmp_path,
        json.dumps(_row("r0")),
        b'{"id": "r1", "query": "caf\xe9", "calling": []}',
        json.dumps(_row("r2")),
    )
    _check_both_modes(
        lambda m: load_seal_tools(path=rows, tools_path=pool, on_error=m),
        needle="expected UTF-8 text (byte 0xe9 at column 27)",
        start=f"{rows}:2: ",
        kept=["r0", "r2"],
        records=3,
    )


def test_a_bad_byte_inside_a_json_list_item_skips_that_item(tmp_path):
    path = tmp_path / "data.json"
    good = {"system": _TA_SYSTEM, "conversations": _TA_CONV}
    body = json.dumps([{**good, "id": 0}, {**good, "id": 1}], indent=1).encode()
    path.write_bytes(body.replace(b'"hi"', b'"h\xffi"', 1))  # in record 0 only
    _check_both_modes(
        lambda m: load_toolace(path, on_error=m),
        needle="expected UTF-8 text (byte 0xff at column",
        start=f"{path}:",
        kept=["toolace-1-t1"],
        records=2,
    )


def test_a_100k_deep_json_line_is_one_bad_record(tmp_path):
    rows, pool = _seal(
        tmp_path, json.dumps(_row("r0")), "[" * 100_000 + "]" * 100_000, json.dumps(_row("r2"))
    )
    _check_both_modes(
        lambda m: load_seal_tools(path=rows, tools_path=pool, on_error=m),
        needle="nested deeper than the JSON decoder allows",
        start=f"{rows}:2: expected one JSON value per line",
        kept=["r0", "r2"],
        records=3,
    )


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than the JSON decoder allows"),
        ('{"instruction": ' + "7" * 5000 + "}", "Exceeds the limit (4300 digits)"),
    ],
)
def test_an_item_of_a_json_list_the_decoder_cannot_read_is_one_bad_record(tmp_path, item, needle):
    path = tmp_path / "level-1-api.json"
    good = json.dumps(_api_bank_record())
    path.write_text(f"[{good},\n {item},\n {good}]")
    _check_both_modes(
        lambda m: load_api_bank("level-1", path=path, on_error=m),
        needle=needle,
        start=f"{path}:2: expected a JSON value",
        kept=["api-bank-l1-0", "api-bank-l1-2"],
        records=3,
    )


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ('{"q": NaN}', "field 'calling[0].parameters.q': expected a literal value"),
        ('{"user-id": "u"}', "field 'calling[0].parameters.user-id': expected an identifier"),
    ],
)
def test_a_seal_tools_parameter_that_cannot_be_written_as_a_call(tmp_path, params, needle):
    bad = f'{{"id": "r1", "query": "x", "calling": [{{"api": "getX", "parameters": {params}}}]}}'
    rows, pool = _seal(tmp_path, json.dumps(_row("r0")), bad, json.dumps(_row("r2")))
    _check_both_modes(
        lambda m: load_seal_tools(path=rows, tools_path=pool, on_error=m),
        needle=needle,
        start=f"{rows}:2 [record r1]: ",
        kept=["r0", "r2"],
        records=3,
    )


def _bfcl(tmp_path: Path, questions: list[str], answers: list[str]) -> Path:
    (tmp_path / "possible_answer").mkdir()
    _lines(tmp_path / "BFCL_v3_simple.json", *questions)
    _lines(tmp_path / "possible_answer" / "BFCL_v3_simple.json", *answers)
    return tmp_path


def _question(rid: str) -> str:
    tool = {"name": "f", "parameters": {"type": "dict", "properties": {"a": {}}}}
    return json.dumps(
        {"id": rid, "question": [[{"role": "user", "content": "hi"}]], "function": [tool]}
    )


def test_a_bfcl_ground_truth_nan(tmp_path):
    root = _bfcl(
        tmp_path,
        [_question("q0"), _question("q1")],
        [
            '{"id": "q0", "ground_truth": [{"f": {"a": [1]}}]}',
            '{"id": "q1", "ground_truth": [{"f": {"a": [NaN]}}]}',
        ],
    )
    _check_both_modes(
        lambda m: load_bfcl("simple", data_dir=root, on_error=m),
        needle="field 'ground_truth[0].f.a': expected a literal value",
        start=f"{root / 'BFCL_v3_simple.json'}:2 [record q1]: ",
        kept=["q0"],
        records=2,
    )


def test_a_repeated_bfcl_answer_id_is_refused(tmp_path):
    answer = '{"id": "q0", "ground_truth": [{"f": {"a": [1]}}]}'
    root = _bfcl(tmp_path, [_question("q0")], [answer, answer])
    with pytest.raises(DataError, match=r"BFCL_v3_simple\.json:2: field 'id': expected a unique"):
        load_bfcl("simple", data_dir=root, on_error="skip")


def _api_bank_record(gold: str = "API-Request: [Ping()]") -> dict[str, Any]:
    desc = {"name": "Ping", "description": "p", "input_parameters": {}}
    return {
        "instruction": "Do it.\nAPI descriptions:\n" + json.dumps(desc),
        "input": "User: ping please\nGenerate API Request:\n",
        "expected_output": gold,
    }


@pytest.mark.parametrize(
    ("gold", "needle"),
    [
        ("API-Request: [Ping(user id='u')]", "argument name 'user id' is not an identifier"),
        ("API-Request: [Ping(a={[1]: 2})]", "argument 'a': '{[1]: 2}' is not a valid literal"),
    ],
)
def test_an_api_bank_argument_that_is_not_a_call_argument(tmp_path, gold, needle):
    path = tmp_path / "level-1-api.json"
    recs = [_api_bank_record(), _api_bank_record(gold), _api_bank_record()]
    path.write_text(json.dumps(recs, indent=1))
    _check_both_modes(
        lambda m: load_api_bank("level-1", path=path, on_error=m),
        needle=needle,
        start=f"{path}:7 [record 1]: field 'expected_output'",
        kept=["api-bank-l1-0", "api-bank-l1-2"],
        records=3,
    )


def test_a_bom_before_a_json_list_keeps_it_a_list(tmp_path):
    path = tmp_path / "level-1-api.json"
    path.write_text("\ufeff" + json.dumps([_api_bank_record()] * 5, indent=1), encoding="utf-8")
    for mode in ("raise", "skip"):
        result = load_api_bank("level-1", path=path, on_error=mode)
        assert len(result) == 5 and result.report.records == 5 and result.report.skipped == 0


def test_a_bom_before_json_lines_keeps_the_first_record(tmp_path):
    rows, pool = _seal(tmp_path, "\ufeff" + json.dumps(_row("r0")), json.dumps(_row("r1")))
    for mode in ("raise", "skip"):
        result = load_seal_tools(path=rows, tools_path=pool, on_error=mode)
        assert [s.id for s in result] == ["r0", "r1"] and result.report.skipped == 0
        assert result[0].meta["line"] == 1


def test_line_separators_inside_strings_read_back(tmp_path):
    # str.splitlines() splits on these; JSON keeps them raw inside strings
    texts = ["a\u2028b", "a\u2029b", "a\x85b", "a\x0bb\x0cc\x1cd", "lone \ud800 surrogate"]
    samples = [
        Sample(id=f"s{i}", tools=(), messages=({"role": "user", "content": t},), gold=t)
        for i, t in enumerate(texts)
    ]
    path = tmp_path / "s.jsonl"
    assert write_samples(path, samples) == len(samples)
    assert read_samples(path) == samples


_TA_SYSTEM = "Here is a list of functions in JSON format that you can invoke:\n" + json.dumps(
    [{"name": "f", "parameters": {}}]
)
_TA_CONV = [{"from": "user", "value": "hi"}, {"from": "assistant", "value": "[f(a=1)]"}]


def test_repeated_ids_are_caught_by_every_loader(tmp_path):
    rows, pool = _seal(tmp_path, json.dumps(_row("r0")), json.dumps(_row("r0")))
    _check_both_modes(
        lambda m: load_seal_tools(path=rows, tools_path=pool, on_error=m),
        needle="field 'id': expected a unique sample id (sample id 'r0' already produced by line 1)",
        start=f"{rows}:2 [record r0]: ",
        kept=["r0"],
        records=2,
    )
    answer = '{"id": "q0", "ground_truth": [{"f": {"a": [1]}}]}'
    (tmp_path / "bfcl").mkdir()
    root = _bfcl(tmp_path / "bfcl", [_question("q0"), _question("q0")], [answer])
    _check_both_modes(
        lambda m: load_bfcl("simple", data_dir=root, on_error=m),
        needle="expected a unique sample id",
        start=f"{root / 'BFCL_v3_simple.json'}:2 [record q0]: field 'id'",
        kept=["q0"],
        records=2,
    )
    rec = {"id": 7, "system": _TA_SYSTEM, "conversations": _TA_CONV}
    path = _lines(tmp_path / "data.jsonl", json.dumps(rec), json.dumps(rec))
    _check_both_modes(
        lambda m: load_toolace(path, on_error=m),
        needle="sample id 'toolace-7-t1' already produced by line 1",
        start=f"{path}:2 [record 7]: field 'id'",
        kept=["toolace-7-t1"],
        records=2,
    )
    samples = [Sample(id="s", tools=(), messages=(), gold="x")] * 2
    write_samples(tmp_path / "s.jsonl", samples)
    with pytest.raises(DataError, match=r"s\.jsonl:2 \[record s\]: field 'id'"):
        read_samples(tmp_path / "s.jsonl")


def test_any_failure_of_one_record_is_that_records_error(tmp_path, monkeypatch):
    """Skip mode catches whatever converting one record raises, not only ``DataError``."""
    import itool_ray.data.seal_tools as seal

    def boom(raw, **kw):
        if raw["api_name"] == "getX":
            raise KeyError("surprise")
        return {"name": raw["api_name"]}

    rows, pool = _seal(tmp_path, json.dumps(_row("r0")))
    monkeypatch.setattr(seal, "seal_tool", boom)
    _check_both_modes(
        lambda m: load_seal_tools(path=rows, tools_path=pool, on_error=m),
        needle="expected a record this loader can convert (KeyError: 'surprise')",
        start=f"{rows}:1 [record r0]: ",
        kept=[],
        records=1,
    )


def test_error_messages_stay_short(tmp_path):
    rows, pool = _seal(tmp_path, json.dumps({"id": "x" * 100_000, "query": 1, "calling": []}))
    with pytest.raises(DataError) as info:
        load_seal_tools(path=rows, tools_path=pool)
    assert len(str(info.value)) < 500 and "more characters]" in str(info.value)
