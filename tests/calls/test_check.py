"""The BFCL-style checker: values, optional/required arguments, schema types, parallel calls."""

from __future__ import annotations

import dataclasses

import pytest

from itool_ray.calls import (
    Call,
    CheckResult,
    check_calls,
    ground_truth_from_calls,
    parse_calls,
    partial_credit,
    standardize_string,
)

TOOLS = [
    {
        "name": "math.area",
        "description": "area",
        "parameters": {
            "type": "dict",
            "properties": {
                "radius": {"type": "float"},
                "count": {"type": "integer"},
                "unit": {"type": "string"},
                "exact": {"type": "boolean"},
                "sizes": {"type": "array", "items": {"type": "integer"}},
                "weights": {"type": "array", "items": {"type": "float"}},
                "pair": {"type": "tuple", "items": {"type": "integer"}},
                "options": {"type": "dict"},
            },
            "required": ["radius"],
        },
    }
]


def gold_area(**allowed: list[object]) -> list[dict[str, dict[str, list[object]]]]:
    return [{"math.area": dict(allowed)}]


def ok(predicted: str, gold, tools=TOOLS) -> bool:
    return check_calls(parse_calls(predicted), gold, tools).correct


def test_standardize_string_matches_bfcl() -> None:
    assert standardize_string("New York, NY") == "newyorkny"
    assert standardize_string("It's a_b-c/d.e*f^g") == 'it"sabcdefg'


@pytest.mark.parametrize("tools", [None, TOOLS])
def test_numbers(tools) -> None:
    gold = gold_area(radius=[5.0])
    assert ok("[math.area(radius=5)]", gold, tools)  # 5 == 5.0, int for float is fine
    assert ok("[math.area(radius=5.0)]", gold, tools)
    assert not ok("[math.area(radius=6)]", gold, tools)
    assert not ok('[math.area(radius="5")]', gold, tools)


def test_integer_parameter_given_a_float_is_a_type_error() -> None:
    gold = gold_area(radius=[1.0], count=[3])
    assert ok("[math.area(radius=1, count=3.0)]", gold, tools=None)  # values compare equal
    result = check_calls(parse_calls("[math.area(radius=1, count=3.0)]"), gold, TOOLS)
    assert not result.correct and "expected type integer, got float" in result.errors[0]


def test_booleans_are_not_numbers() -> None:
    assert not ok("[f(a=True)]", [{"f": {"a": [1]}}], tools=None)
    assert not ok("[f(a=1)]", [{"f": {"a": [True]}}], tools=None)
    assert ok("[f(a=true)]", [{"f": {"a": [True]}}], tools=None)
    assert not ok("[math.area(radius=1.0, exact=1)]", gold_area(radius=[1.0], exact=[True]))


def test_strings_are_normalised_like_bfcl() -> None:
    gold = gold_area(radius=[1.0], unit=["Square Meters", "m^2"])
    assert ok('[math.area(radius=1.0, unit="square-meters")]', gold)
    assert ok('[math.area(radius=1.0, unit="M2")]', gold)
    assert not ok('[math.area(radius=1.0, unit="square feet")]', gold)


def test_optional_arguments() -> None:
    gold = gold_area(radius=[1.0], unit=["", "cm"])
    assert ok("[math.area(radius=1.0)]", gold)
    assert ok('[math.area(radius=1.0, unit="cm")]', gold)
    assert not ok('[math.area(radius=1.0, unit="mm")]', gold)


def test_missing_required_argument() -> None:
    result = check_calls(
        parse_calls('[math.area(unit="cm")]'), gold_area(radius=[1.0], unit=["cm"])
    )
    assert not result.correct and result.partial == 0.0
    assert "missing required argument 'radius'" in result.errors[0]
    # required by the schema even though the gold marks it optional
    gold = gold_area(radius=["", 1.0], unit=["cm"])
    assert ok('[math.area(unit="cm")]', gold, tools=None)
    assert not ok('[math.area(unit="cm")]', gold, tools=TOOLS)


def test_extra_argument() -> None:
    gold = gold_area(radius=[1.0])
    result = check_calls(parse_calls("[math.area(radius=1.0, count=2)]"), gold, TOOLS)
    assert not result.correct and "unexpected argument 'count'" in result.errors[0]
    # an argument in the gold but not in the schema is unexpected too
    assert not ok("[math.area(radius=1.0, colour=1)]", gold_area(radius=[1.0], colour=[1]))
    assert ok("[math.area(radius=1.0, colour=1)]", gold_area(radius=[1.0], colour=[1]), None)


def test_wrong_function() -> None:
    result = check_calls([Call("math.volume", {"radius": 1.0})], gold_area(radius=[1.0]), TOOLS)
    assert not result.correct
    assert result.errors == ["no call to 'math.area' (unmatched predicted calls: 'math.volume')"]


def test_dots_as_underscores() -> None:
    calls = [Call("math_area", {"radius": 1.0})]
    assert not check_calls(calls, gold_area(radius=[1.0])).correct
    assert check_calls(calls, gold_area(radius=[1.0]), dots_as_underscores=True).correct


def test_lists_tuples_and_element_types() -> None:
    gold = gold_area(radius=[1.0], sizes=[[1, 2]], weights=[[0.5, 2.0]], pair=[[1, 2]])
    assert ok("[math.area(radius=1.0, sizes=[1, 2], weights=[0.5, 2], pair=(1, 2))]", gold)
    assert not ok("[math.area(radius=1.0, sizes=[2, 1], weights=[0.5, 2], pair=(1, 2))]", gold)
    assert not ok("[math.area(radius=1.0, sizes=(1, 2), weights=[0.5, 2], pair=(1, 2))]", gold)
    assert not ok('[math.area(radius=1.0, sizes=[1, "2"], weights=[0.5, 2], pair=(1, 2))]', gold)
    assert ok("[math.area(radius=1.0, sizes=(1, 2), weights=[0.5, 2], pair=[1, 2])]", gold, None)


def test_dicts_in_bfcl_allowed_form_and_raw_form() -> None:
    gold = gold_area(radius=[1.0], options=[{"mode": ["fast", "quick"], "depth": ["", 2]}])
    assert ok('[math.area(radius=1.0, options={"mode": "Quick"})]', gold)
    assert ok('[math.area(radius=1.0, options={"mode": "fast", "depth": 2})]', gold)
    assert not ok('[math.area(radius=1.0, options={"depth": 2})]', gold)  # missing key
    assert not ok('[math.area(radius=1.0, options={"mode": "fast", "x": 1})]', gold)
    raw = gold_area(radius=[1.0], options=[{"position": {"lateral": 10.5, "long": 50}}])
    assert ok('[math.area(radius=1.0, options={"position": {"lateral": 10.5, "long": 50.0}})]', raw)
    assert not ok('[math.area(radius=1.0, options={"position": {"lateral": 10.5}})]', raw)


def test_parallel_calls_are_order_insensitive() -> None:
    gold = [{"f": {"a": [1]}}, {"f": {"a": [2]}}, {"g": {"b": ["x"]}}]
    assert ok('[g(b="x"), f(a=2), f(a=1)]', gold, None)
    result = check_calls(parse_calls("[f(a=2), f(a=2), f(a=1)]"), gold)
    assert not result.correct and result.partial == pytest.approx(2 / 3)


def test_one_to_one_assignment_beats_greedy_matching() -> None:
    # BFCL's greedy pass would give f(a=1) to the first gold call and then fail the second.
    gold = [{"f": {"a": [1, 2]}}, {"f": {"a": [1]}}]
    assert ok("[f(a=1), f(a=2)]", gold, None)


def test_wrong_number_of_calls_keeps_partial_credit() -> None:
    gold = [{"f": {"a": [1]}}, {"g": {}}]
    too_many = check_calls(parse_calls("[f(a=1), g(), h()]"), gold)
    assert not too_many.correct and too_many.partial == 1.0
    assert any("expected 2 call(s), got 3" in e for e in too_many.errors)
    too_few = check_calls(parse_calls("[g()]"), gold)
    assert not too_few.correct and too_few.partial == 0.5


@pytest.mark.parametrize("gold", [None, []])
def test_no_call_expected(gold) -> None:
    assert check_calls(None, gold) == CheckResult(True, 1.0, [])
    assert check_calls([], gold).correct
    result = check_calls([Call("f", {})], gold)
    assert (result.correct, result.partial) == (False, 0.0)


def test_text_answer_when_calls_expected() -> None:
    result = check_calls(None, [{"f": {}}])
    assert (result.correct, result.partial) == (False, 0.0)
    assert "text answer" in result.errors[0]


def test_check_result_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        check_calls(None, None).correct = False  # type: ignore[misc]


def test_ground_truth_from_calls_is_exact() -> None:
    calls = parse_calls(
        '[book(hotel="Ritz", guests=[{"name": "Ann", "age": 30}], prefs={"ids": [1, 2]}),'
        " pay(amount=12.5)]"
    )
    gold = ground_truth_from_calls(calls)
    assert gold[1] == {"pay": {"amount": [12.5]}}
    assert gold[0]["book"]["prefs"] == [{"ids": [[1, 2]]}]
    assert check_calls(list(reversed(calls)), gold).correct
    variants = [
        '[book(hotel="Ritz", guests=[{"name": "Ann", "age": 31}], prefs={"ids": [1, 2]})]',
        '[book(hotel="Ritz", guests=[{"name": "Ann"}], prefs={"ids": [1, 2]})]',
        '[book(hotel="Ritz", guests=[{"name": "Ann", "age": 30}], prefs={"ids": 1})]',
        '[book(hotel="Ritz", guests=[{"name": "Ann", "age": 30}], prefs={"ids": [[1, 2]]})]',
        '[book(hotel="Ritz", guests=[{"name": "Ann", "age": 30}])]',
    ]
    for text in variants:
        result = check_calls([*parse_calls(text), calls[1]], gold)
        assert not result.correct and result.partial == 0.5, text


def test_partial_credit_fractions() -> None:
    gold = [{"f": {"a": [1]}}, {"g": {}}, {"h": {"b": ["x"]}}]
    f, g, h = Call("f", {"a": 1}), Call("g", {}), Call("h", {"b": "x"})
    assert partial_credit([], gold) == 0.0
    assert partial_credit([g], gold) == pytest.approx(1 / 3)
    assert partial_credit([h, f], gold) == pytest.approx(2 / 3)
    assert partial_credit([f, g, h], gold) == 1.0
    assert partial_credit([f, Call("f", {"a": 2})], gold) == 0.0  # a wrong call zeroes it
    assert partial_credit([f, f], gold) == 0.0  # a repeated call matches no distinct gold call
    assert partial_credit([f, g, h, g], gold) == 0.0  # one call too many
    assert partial_credit(None, None) == 1.0
    assert partial_credit([f], []) == 0.0
