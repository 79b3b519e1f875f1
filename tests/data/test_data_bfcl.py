"""BFCL v3 loader on the data of the installed nvidia-bfcl package."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from itool_ray.calls import check_calls, parse_calls
from itool_ray.data import (
    BFCL_AST_CATEGORIES,
    BFCL_IRRELEVANCE_CATEGORIES,
    NO_CALL_GOLD,
    DataError,
    bfcl_data_dir,
    load_bfcl,
)
from itool_ray.data.bfcl import first_allowed, gold_from_ground_truth

EXPECTED_COUNTS = {
    "simple": 400,
    "multiple": 200,
    "parallel": 200,
    "parallel_multiple": 200,
    "live_simple": 258,
    "live_multiple": 1053,
    "live_parallel": 16,
    "live_parallel_multiple": 24,
    "irrelevance": 240,
    "live_irrelevance": 882,
}
# Upstream answers no response can satisfy (the official checker rejects the gold too):
# a name mismatch, an empty allowed list, a required argument allowed only "", an argument
# missing from the schema, a gold argument the schema does not have.
UNSATISFIABLE = {
    "simple_363",
    "live_simple_106-63-0",
    "live_simple_112-68-0",
    "live_multiple_507-149-4",
    "live_multiple_862-181-3",
    "live_multiple_964-207-0",
}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


requires_bfcl = pytest.mark.skipif(
    importlib.util.find_spec("bfcl") is None, reason="nvidia-bfcl is not installed"
)


@pytest.fixture(scope="module")
def ast_samples():
    return {c: load_bfcl(c) for c in BFCL_AST_CATEGORIES}


@requires_bfcl
def test_counts_per_category(ast_samples):
    counts = {c: len(r) for c, r in ast_samples.items()}
    counts.update({c: len(load_bfcl(c)) for c in BFCL_IRRELEVANCE_CATEGORIES})
    assert counts == EXPECTED_COUNTS


@requires_bfcl
def test_known_record(ast_samples):
    s = ast_samples["simple"][0]
    assert s.id == "simple_0" and s.source == "bfcl" and s.meta["category"] == "simple"
    assert s.messages == (
        {
            "role": "user",
            "content": "Find the area of a triangle with a base of 10 units and height of 5 units.",
        },
    )
    assert [t["name"] for t in s.tools] == ["calculate_triangle_area"]
    assert s.ground_truth == [
        {"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}
    ]
    assert s.gold == '[calculate_triangle_area(base=10, height=5, unit="units")]'


@requires_bfcl
def test_nested_allowed_values_and_upstream_id_typo(ast_samples):
    s = next(x for x in ast_samples["simple"] if x.id == "simple_89")
    assert parse_calls(s.gold)[0].arguments["conditions"] == {
        "department": "Science",
        "school": "Bluebird High School",
    }
    # question id live_multiple_1052-79-0 has its answer under live_multiple_1052-279-0
    s = next(x for x in ast_samples["live_multiple"] if x.id == "live_multiple_1052-79-0")
    assert s.ground_truth and parse_calls(s.gold)


@requires_bfcl
def test_system_turns_are_kept():
    s = next(x for x in load_bfcl("live_simple") if x.messages[0]["role"] == "system")
    assert s.messages[-1]["role"] == "user"


@requires_bfcl
def test_gold_passes_the_official_checker(ast_samples):
    ast_checker = pytest.importorskip("bfcl.eval_checker.ast_eval.ast_checker").ast_checker
    failed = set()
    for category, samples in ast_samples.items():
        for s in samples:
            out = [c.to_bfcl() for c in parse_calls(s.gold)]
            verdict = ast_checker(
                list(s.tools),
                out,
                s.ground_truth,
                language="Python",
                test_category=category,
                model_name="Team-ACE/ToolACE-8B",
            )
            if not verdict["valid"]:
                failed.add(s.id)
    assert failed == UNSATISFIABLE


@requires_bfcl
def test_gold_passes_the_project_checker(ast_samples):
    failed = {
        s.id
        for samples in ast_samples.values()
        for s in samples
        if not check_calls(parse_calls(s.gold), s.ground_truth, list(s.tools)).correct
    }
    assert failed <= UNSATISFIABLE


@requires_bfcl
@pytest.mark.parametrize("category", BFCL_IRRELEVANCE_CATEGORIES)
def test_irrelevance(category):
    samples = load_bfcl(category)
    assert all(s.gold == NO_CALL_GOLD and s.ground_truth == [] for s in samples)
    assert parse_calls(NO_CALL_GOLD) is None


@requires_bfcl
def test_data_dir_is_found_through_the_package():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("bfcl")
    assert bfcl_data_dir() == Path(next(iter(spec.submodule_search_locations))) / "data"


def test_unknown_category():
    with pytest.raises(ValueError, match="unsupported BFCL category 'java'"):
        load_bfcl("java", data_dir="/nonexistent")


def test_first_allowed_and_optional_arguments():
    assert first_allowed([{"a": [1, 2], "b": ["", 3]}, 4]) == [{"a": 1}, 4]
    tools = [{"name": "f", "parameters": {"properties": {"x": {}, "y": {}}, "required": ["y"]}}]
    gt = [{"f": {"x": ["", 1], "y": ["", 2], "z": ["", 3]}}]
    _, calls = gold_from_ground_truth(gt, tools)
    # x optional -> out; y required by the schema -> its first real value; z unknown -> out
    assert calls[0].arguments == {"y": 2}


def _fake_bfcl(tmp_path, questions, answers):
    (tmp_path / "possible_answer").mkdir()
    write_jsonl(tmp_path / "BFCL_v3_simple.json", questions)
    write_jsonl(tmp_path / "possible_answer" / "BFCL_v3_simple.json", answers)
    return tmp_path


def _question(rid):
    return {
        "id": rid,
        "question": [[{"role": "user", "content": "hi"}]],
        "function": [{"name": "f", "parameters": {"type": "dict", "properties": {}}}],
    }


@pytest.mark.parametrize(
    "question,answer,needle",
    [
        ({**_question("q1"), "question": "hi"}, None, "field 'question'"),
        ({**_question("q1"), "function": [{"x": 1}]}, None, "field 'function[0]'"),
        (_question("q1"), {"id": "q1", "ground_truth": [{"f": {"a": 1}}]}, "field 'ground_truth"),
        (_question("q9"), None, "field 'id': expected an entry in possible_answer/"),
    ],
)
def test_malformed_records(tmp_path, question, answer, needle):
    answers = [{"id": "q0", "ground_truth": [{"f": {}}]}]
    if answer:
        answers.append(answer)
    root = _fake_bfcl(tmp_path, [_question("q0"), question], answers)
    with pytest.raises(DataError) as info:
        load_bfcl("simple", data_dir=root)
    assert str(info.value).startswith(f"{root / 'BFCL_v3_simple.json'}:2 [record ")
    assert needle in str(info.value)
    result = load_bfcl("simple", data_dir=root, on_error="skip")
    assert [s.id for s in result] == ["q0"] and result.report.skipped == 1
    assert json.loads(json.dumps(result[0].ground_truth)) == [{"f": {}}]
