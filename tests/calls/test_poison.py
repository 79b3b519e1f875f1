"""Poison model outputs: every shape is a wrong answer (a ``CallParseError``), never another
exception, and never slow. The inputs are the ones that once raised ``RecursionError`` /
``MemoryError`` out of the parser, or parsed and then broke the renderer and the checker."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from itool_ray.calls import CallParseError, ParseErrorReason, parse_calls, parse_partial
from itool_ray.calls.literal import MAX_INT_DIGITS
from itool_ray.mcts.rewards import CallsOutcome

POISON = {
    "minus x 3000": "[f(a=" + "-" * 3000 + "1)]",
    "minus x 6000": "[f(a=" + "-" * 6000 + "1)]",
    "plus chain": "[f(a=" + "1+" * 3000 + "1)]",
    "attribute chain": "[f(a=x" + ".y" * 3000 + ")]",
    "call chain": "[f(a=x" + "()" * 3000 + ")]",
    "not chain": "[f(a=" + "not " * 3000 + "1)]",
    "tilde chain": "[f(a=" + "~" * 6000 + "1)]",
    "huge hex": "[f(a=0x" + "f" * 5000 + ")]",
    "huge negative hex": "[f(a=-0x" + "f" * 5000 + ")]",
    "huge binary": "[f(a=0b" + "1" * 20000 + ")]",
    "huge decimal": "[f(a=" + "9" * 5000 + ")]",
    "deep list": "[f(a=" + "[" * 5000 + "]" * 5000 + ")]",
    "deep dict": "[f(a=" + "{1: " * 3000 + "1" + "}" * 3000 + ")]",
}


@pytest.mark.parametrize("text", list(POISON.values()), ids=list(POISON))
def test_poison_is_a_parse_error(text: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(CallParseError):
        parse_calls(text)
    partial = parse_partial(text)
    assert partial.error is not None and partial.done
    assert time.perf_counter() - t0 < 5.0  # generous: seconds would mean a pathological path


@pytest.mark.parametrize("text", list(POISON.values()), ids=list(POISON))
def test_poison_scores_zero_in_the_search_reward(text: str) -> None:
    sample = SimpleNamespace(id="s", gold="[f(a=1)]", ground_truth=None, tools=())
    outcome = CallsOutcome(use_tools=False)
    assert outcome(sample, text, True) == 0.0
    assert 0.0 <= outcome(sample, text[: len(text) // 2], False) <= 1.0  # a prefix: no raise
    assert outcome(sample, text, False) == 0.0


def test_deep_unary_reports_too_complex() -> None:
    with pytest.raises(CallParseError) as info:
        parse_calls(POISON["minus x 3000"])
    assert info.value.reason == ParseErrorReason.TOO_COMPLEX


def test_integer_bound_is_inclusive_of_ordinary_values() -> None:
    big = int("9" * MAX_INT_DIGITS)
    (call,) = parse_calls(f"[f(a={big}, b=-{big}, c=0x{'f' * 100})]")
    assert call.arguments == {"a": big, "b": -big, "c": int("f" * 100, 16)}
    with pytest.raises(CallParseError) as info:
        parse_calls(f"[f(a=1{'0' * MAX_INT_DIGITS})]")
    assert info.value.reason == ParseErrorReason.TOO_COMPLEX


def test_signed_numbers_still_parse() -> None:
    (call,) = parse_calls("[f(a=-1, b=+2.5, c=-0.0, d=[-3])]")
    assert call.arguments == {"a": -1, "b": 2.5, "c": -0.0, "d": [-3]}
    assert str(call.arguments["c"]) == "-0.0"
