"""The BFCL v3 multi-turn loader: the five categories, withheld functions, bad records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from itool_ray.envs import (
    MULTI_TURN_CATEGORIES,
    BfclEntryError,
    class_function_docs,
    load_multi_turn,
)


def test_five_categories_of_200_entries(all_entries):
    assert tuple(all_entries) == MULTI_TURN_CATEGORIES
    assert {c: len(es) for c, es in all_entries.items()} == dict.fromkeys(
        MULTI_TURN_CATEGORIES, 200
    )
    ids = [e.id for es in all_entries.values() for e in es]
    assert len(set(ids)) == 1000
    for category, entries in all_entries.items():
        for e in entries:
            assert e.category == category and e.id.startswith(category + "_")
            assert len(e.gold) == e.num_turns >= 1
            assert e.long_context == (
                category in ("multi_turn_long_context", "multi_turn_composite")
            )
            docs = [d for c in e.involved_classes for d in class_function_docs(c)]
            assert [d["name"] for d in e.functions] == [d["name"] for d in docs]


def test_entry_fields_of_base_0(entries_by_id):
    e = entries_by_id["multi_turn_base_0"]
    assert e.involved_classes == ("TwitterAPI", "GorillaFileSystem")
    assert e.turns[0][0]["role"] == "user" and "final_report.pdf" in e.turns[0][0]["content"]
    assert e.gold[2] == ("sort('final_report.pdf')",)
    assert "GorillaFileSystem" in e.initial_config
    assert not e.missed_functions and e.functions_at(0) == e.functions
    json.dumps([e.functions, e.turns, e.initial_config])  # plain JSON values


def test_withheld_functions_appear_at_their_turn(all_entries):
    miss = all_entries["multi_turn_miss_func"]
    assert all(e.missed_functions for e in miss)
    for e in miss + all_entries["multi_turn_composite"]:
        for turn, names in e.missed_functions.items():
            assert e.turns[turn] == ()  # the reveal turn has no user message
            before = {d["name"] for d in e.functions_at(turn - 1)}
            at = [d["name"] for d in e.functions_at(turn)]
            assert not set(names) & before
            assert at[-len(names) :] == list(names)  # appended at the end, as BFCL does
            assert set(names) <= e.withheld_at(turn - 1) and not set(names) & e.withheld_at(turn)
    e = next(e for e in miss if e.id == "multi_turn_miss_func_0")
    assert dict(e.missed_functions) == {3: ("sort",)}
    assert len(e.functions_at(2)) == len(e.functions) - 1
    assert e.functions_at(e.num_turns - 1)[-1]["name"] == "sort"


# -- malformed records -----------------------------------------------------------------------

GOOD = {
    "id": "multi_turn_base_0",
    "question": [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "more"}]],
    "initial_config": {"MathAPI": {}},
    "involved_classes": ["MathAPI"],
}


def _write(tmp_path: Path, records: list, answers: list) -> Path:
    (tmp_path / "possible_answer").mkdir(exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    (tmp_path / "BFCL_v3_multi_turn_base.json").write_text("\n".join(lines) + "\n")
    answer_lines = "\n".join(json.dumps(a) for a in answers)
    (tmp_path / "possible_answer" / "BFCL_v3_multi_turn_base.json").write_text(answer_lines)
    return tmp_path


ANSWER = {"id": "multi_turn_base_0", "ground_truth": [["add(a=1, b=2)"], []]}


def test_a_well_formed_record_loads(tmp_path):
    (e,) = load_multi_turn("multi_turn_base", data_dir=_write(tmp_path, [GOOD], [ANSWER]))
    assert e.gold == (("add(a=1, b=2)",), ()) and e.num_turns == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"question": "hello"}, "question"),
        ({"question": []}, "question"),
        ({"question": [[{"role": "user"}], []]}, "question[0][0]"),
        ({"question": [{"role": "user", "content": "x"}, []]}, "question[0]"),
        ({"involved_classes": ["Shell"]}, "involved_classes"),
        ({"involved_classes": ["MathAPI", "MathAPI"]}, "involved_classes"),
        ({"initial_config": []}, "initial_config"),
        ({"initial_config": {"MathAPI": 3}}, "initial_config.MathAPI"),
        ({"missed_function": {"1": ["nonexistent"]}}, "missed_function['1']"),
        ({"missed_function": {"7": ["add"]}}, "missed_function['7']"),
        ({"missed_function": {"0": ["add"]}}, "question[0]"),  # reveal turn has a message
        ({"missed_function": ["add"]}, "missed_function"),
    ],
)
def test_a_malformed_record_names_entry_line_and_field(tmp_path, change, field):
    bad = {**GOOD, **change}
    with pytest.raises(BfclEntryError) as info:
        load_multi_turn("multi_turn_base", data_dir=_write(tmp_path, [bad], [ANSWER]))
    err = info.value
    assert (err.field, err.entry_id, err.line) == (field, "multi_turn_base_0", 1)
    assert "multi_turn_base_0" in str(err) and repr(field) in str(err) and ":1 " in str(err)


@pytest.mark.parametrize(
    ("ground_truth", "field"),
    [
        ([["add(a=1, b=2)"]], "ground_truth"),  # one turn short
        ("add(a=1)", "ground_truth"),
        ([["add(a=1, b=2)"], [3]], "ground_truth[1]"),
    ],
)
def test_a_malformed_answer_names_the_entry(tmp_path, ground_truth, field):
    answer = {"id": "multi_turn_base_0", "ground_truth": ground_truth}
    with pytest.raises(BfclEntryError) as info:
        load_multi_turn("multi_turn_base", data_dir=_write(tmp_path, [GOOD], [answer]))
    assert (info.value.field, info.value.entry_id) == (field, "multi_turn_base_0")


def test_missing_or_orphan_answers_and_bad_json_are_located(tmp_path):
    with pytest.raises(BfclEntryError, match=r"multi_turn_base_0.*possible_answer"):
        load_multi_turn("multi_turn_base", data_dir=_write(tmp_path, [GOOD], []))
    orphan = {**ANSWER, "id": "multi_turn_base_9"}
    with pytest.raises(BfclEntryError, match=r"multi_turn_base_9.*every possible answer"):
        load_multi_turn("multi_turn_base", data_dir=_write(tmp_path, [GOOD], [ANSWER, orphan]))
    with pytest.raises(BfclEntryError, match=r"BFCL_v3_multi_turn_base.json:2"):
        load_multi_turn("multi_turn_base", data_dir=_write(tmp_path, [GOOD, "{oops"], [ANSWER]))
    with pytest.raises(
        BfclEntryError, match=r":2 \[entry multi_turn_base_0\]: field 'id'.*repeated"
    ):
        load_multi_turn("multi_turn_base", data_dir=_write(tmp_path, [GOOD, GOOD], [ANSWER]))
    with pytest.raises(BfclEntryError, match=r"field 'id'"):
        load_multi_turn("multi_turn_base", data_dir=_write(tmp_path, [{**GOOD, "id": 5}], [ANSWER]))


def test_unknown_category_is_refused():
    with pytest.raises(ValueError, match="multi_turn_base"):
        load_multi_turn("simple")


def test_the_package_imports_no_ray_vllm_or_torch():
    code = (
        "import sys, itool_ray.envs as e; e.load_all_multi_turn();"
        "print(sorted(m for m in ('ray', 'vllm', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
