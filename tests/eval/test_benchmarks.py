"""The benchmark harness on real entries: BFCL v3 (official checker), API-Bank level-1/2,
Seal-Tools test_out_domain, with known-right and known-wrong model outputs.

The first three entries of every part are answered with a fixed plan of right and wrong
outputs (below); each part's counts and the BFCL summary columns are worked out by hand.
"""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from itool_ray.calls import Call, parse_calls, render_calls
from itool_ray.data import Sample, shared_data_root
from itool_ray.eval.benchmarks import (
    expand_benchmarks,
    is_multi_turn,
    judge,
    load_parts,
    score_part,
)
from itool_ray.eval.bfcl_summary import bfcl_category_sizes
from itool_ray.eval.report import build_report, render_markdown, score_benchmarks

try:
    from bfcl.eval_checker.ast_eval.ast_checker import ast_checker
except ImportError:  # pragma: no cover - depends on the environment
    ast_checker = None

pytestmark = [
    pytest.mark.skipif(ast_checker is None, reason="pip install --no-deps nvidia-bfcl==26.3"),
    pytest.mark.skipif(
        not (shared_data_root() / "api-bank" / "level-1-api.json").exists(),
        reason="shared data (API-Bank, Seal-Tools) not found",
    ),
]

PROSE = "Sorry, none of these tools can do that."
BROKEN = '[calculate(base=10, height="5'  # a call list that never closes


# ---- known outputs built from a sample ------------------------------------------------------


def gold(s: Sample) -> str:
    return s.gold


def wrong_name(s: Sample) -> str:
    first, *rest = parse_calls(s.gold)
    return render_calls([Call(first.name + "_zq9", first.arguments), *rest])


def _other(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value - 999_999
    if isinstance(value, str):
        return "zq9 wrong"
    return ["zq9 wrong"]


def wrong_value(s: Sample) -> str:
    first, *rest = parse_calls(s.gold)
    key = next(iter(first.arguments))
    return render_calls(
        [Call(first.name, {**first.arguments, key: _other(first.arguments[key])}), *rest]
    )


def reversed_calls(s: Sample) -> str:
    return render_calls(parse_calls(s.gold)[::-1])


def first_call_only(s: Sample) -> str:
    return render_calls(parse_calls(s.gold)[:1])


def drop_last_call(s: Sample) -> str:
    return render_calls(parse_calls(s.gold)[:-1])


def some_call(s: Sample) -> str:
    return render_calls([Call(s.tools[0]["name"], {})])


def const(text: str | None):
    return lambda s: text


# part -> the output given to entries 0, 1, 2; then (correct, parse_errors, no_call, skipped)
PLAN = {
    "bfcl/simple": ([gold, wrong_name, const(BROKEN)], (1, 1, 0, 0)),
    "bfcl/multiple": ([gold, wrong_value, const(PROSE)], (1, 0, 1, 0)),
    "bfcl/parallel": ([gold, gold, first_call_only], (2, 0, 0, 0)),
    "bfcl/parallel_multiple": ([gold, reversed_calls, wrong_value], (2, 0, 0, 0)),
    "bfcl/live_simple": ([gold, const(None), gold], (2, 0, 0, 1)),
    "bfcl/live_multiple": ([gold, gold, const("[]")], (2, 0, 1, 0)),
    "bfcl/live_parallel": ([gold, wrong_name, gold], (2, 0, 0, 0)),
    "bfcl/live_parallel_multiple": ([gold, gold, gold], (3, 0, 0, 0)),
    # BFCL's relevance rules: an unparsable output is "no call", so right for irrelevance
    "bfcl/irrelevance": ([const(PROSE), some_call, const(BROKEN)], (2, 1, 1, 0)),
    "bfcl/live_irrelevance": ([const(PROSE), const("[]"), some_call], (2, 0, 2, 0)),
    "bfcl/live_relevance": ([some_call, const(PROSE), const("[]")], (1, 0, 2, 0)),
    "api-bank/level-1": ([gold, wrong_value, wrong_name], (1, 0, 0, 0)),
    "api-bank/level-2": ([gold, gold, const(BROKEN)], (2, 1, 0, 0)),
    "seal-tools/easy": ([gold, wrong_value, gold], (2, 0, 0, 0)),
    "seal-tools/hard": ([gold, drop_last_call, const(PROSE)], (1, 0, 1, 0)),
}


@pytest.fixture(scope="module")
def sets() -> dict[str, list[Sample]]:
    parts = expand_benchmarks({"bfcl": 3, "api-bank": 3, "seal-tools": 3})
    # the multi-turn parts have their own tests (tests/eval/test_multi_turn.py)
    return load_parts({k: v for k, v in parts.items() if not is_multi_turn(k)})


@pytest.fixture(scope="module")
def scored(sets):
    answers = {
        s.id: make(s)
        for name, samples in sets.items()
        for s, make in zip(samples, PLAN[name][0], strict=True)
    }
    return score_benchmarks(sets, lambda samples: [answers[s.id] for s in samples])


def test_every_part_loads_three_real_entries(sets):
    assert list(sets) == list(PLAN)
    assert all(len(v) == 3 for v in sets.values())
    assert [s.id for s in sets["seal-tools/easy"]] == [
        f"test_out_domain-easy-{i}" for i in range(3)
    ]
    assert all("-difficult-" in s.id for s in sets["seal-tools/hard"])
    assert [s.id for s in sets["api-bank/level-2"]] == [f"api-bank-l2-{i}" for i in range(3)]


def test_a_spread_draw_takes_entries_over_every_part_seeded(sets):
    """``draw=spread``: per part, as many entries drawn over the whole part (seeded, in its
    order) instead of its first ones; the same seed, the same entries."""
    parts = {
        "bfcl/simple": 3,
        "seal-tools/easy": 3,
        "bfcl/live_relevance": 3,
        "bfcl/multi_turn_base": 3,
    }
    spread = load_parts(parts, how="spread", seed=4)
    assert {k: len(v) for k, v in spread.items()} == parts
    for part in ("bfcl/simple", "seal-tools/easy", "bfcl/live_relevance"):
        assert [s.id for s in spread[part]] != [s.id for s in sets[part]]
    assert [e.id for e in spread["bfcl/multi_turn_base"]] != [
        f"multi_turn_base_{i}" for i in range(3)
    ]
    again = load_parts(parts, how="spread", seed=4)
    assert {k: [x.id for x in v] for k, v in again.items()} == {
        k: [x.id for x in v] for k, v in spread.items()
    }


@pytest.mark.parametrize("part", list(PLAN))
def test_part_counts(scored, part):
    report, verdicts = scored
    correct, parse_errors, no_call, skipped = PLAN[part][1]
    r = report.parts[part]
    assert (r.n, r.correct, r.parse_errors, r.no_call, r.skipped) == (
        3,
        correct,
        parse_errors,
        no_call,
        skipped,
    )
    assert r.accuracy == pytest.approx(correct / 3)
    assert len(r.wrong_examples) == 3 - correct
    assert [v.correct for v in verdicts[part]].count(True) == correct


def test_bfcl_verdicts_come_from_the_official_checker(scored):
    _, verdicts = scored
    wrong = verdicts["bfcl/simple"][1]
    assert not wrong.correct and "not found in model output" in wrong.error  # BFCL's message
    assert verdicts["bfcl/simple"][2].parse_error is not None
    assert verdicts["bfcl/live_simple"][1].response is None


def test_bfcl_summary_columns_by_hand(scored):
    report, _ = scored
    cols = report.bfcl["evaluated"]
    third = Fraction(1, 3)
    simple, multiple, parallel, par_mul, irrel = third, third, 2 * third, 2 * third, 2 * third
    non_live_ast = (simple + multiple + parallel + par_mul) / 4  # unweighted
    non_live = (simple + multiple + parallel + par_mul + irrel) / 5
    live = Fraction(2 + 2 + 2 + 3 + 2 + 1, 18)  # weighted by entries: all parts have 3
    expected = {
        "non_live_ast": non_live_ast,
        "non_live": non_live,
        "live": live,
        "live_ast": Fraction(9, 12),
        "relevance": third,
        "irrelevance": (irrel + 2 * third) / 2,
        "overall": (live + non_live) / 2,  # multi-turn not run
        "single_turn": (live + non_live) / 2,
    }
    for key, value in expected.items():
        assert cols[key].accuracy == pytest.approx(float(value)), key
    assert cols["multi_turn"] is None and cols["non_live_exec"] is None
    assert cols["non_live_ast"].accuracy == 0.5 and cols["overall"].accuracy == pytest.approx(0.6)


def test_markdown_and_json(scored):
    report, _ = scored
    md = render_markdown(report)
    assert "| 60.00 | 50.00 | 66.67 | - | 33.33 | 66.67 |" in md  # multi-turn not run
    assert "| simple | 3 | 1 | 33.33 | 1 | 0 | 0 |" in md
    assert "| level-2 | 3 | 2 | 66.67 | 1 | 0 | 0 |" in md
    assert "| hard | 3 | 1 | 33.33 | 0 | 1 | 0 |" in md
    assert "| all | 6 | 3 | 50.00 | 0 | 1 | 0 |" in md
    assert "java, javascript" in md and "parse errors" in md
    data = json.loads(json.dumps(report.to_dict()))
    assert data["parts"]["bfcl/irrelevance"]["parse_errors"] == 1
    assert data["bfcl_summary"]["evaluated"]["live"]["total_count"] == 18
    assert "java" in data["not_supported"]["bfcl java / javascript (Python call syntax only)"]
    assert data["bfcl_categories"]["simple"] == {"accuracy": 1 / 3, "total_count": 3, "na": False}


def test_seal_tools_partial_credit(scored):
    _, verdicts = scored
    right, dropped, _ = verdicts["seal-tools/hard"]
    n_gold = len(parse_calls(right.response))
    assert dropped.partial == pytest.approx((n_gold - 1) / n_gold)


def test_unknown_part_and_response_count(sets):
    with pytest.raises(ValueError, match="unknown part"):
        judge("bfcl/java", sets["bfcl/simple"][0], "[]")
    with pytest.raises(ValueError, match="is multi-turn"):
        judge("bfcl/multi_turn_base", sets["bfcl/simple"][0], "[]")
    with pytest.raises(ValueError, match="2 responses for 3 samples"):
        score_part("bfcl/simple", sets["bfcl/simple"], ["[]", "[]"])


def test_bfcl_decodes_like_its_prompting_handler(sets):
    """BFCL strips code fences and adds missing brackets before decoding, so a bare call is
    a call: right for an AST entry, wrong where no call is wanted."""
    simple, irrelevant = sets["bfcl/simple"][0], sets["bfcl/irrelevance"][0]
    bare = "```\n" + simple.gold[1:-1] + "\n```"
    assert judge("bfcl/simple", simple, bare).correct
    bare_call = some_call(irrelevant)[1:-1]
    verdict = judge("bfcl/irrelevance", irrelevant, bare_call)
    assert verdict.called and not verdict.correct
    assert judge("bfcl/irrelevance", irrelevant, "").correct  # "" decodes to []
    # the other benchmarks read the output as it is: a bare call is text there
    seal = sets["seal-tools/easy"][0]
    assert not judge("seal-tools/easy", seal, seal.gold[1:-1]).called


def test_leaderboard_rule_in_the_report(scored):
    report, _ = scored
    strict = build_report(report.parts, full_sizes=bfcl_category_sizes()).bfcl["bfcl"]
    third = Fraction(1, 3)
    # java / javascript / executable groups count 0: simple AST = (1/3 + 0 + 0) / 3
    # + multiple 1/3, parallel 2/3, parallel_multiple 2/3, irrelevance 2/3, exec groups 0
    non_live = (third / 3 + third + 3 * (2 * third)) / 9
    live = Fraction(12, 18)  # every live category was run
    overall = (live + non_live + 0) / 3  # multi-turn 0
    assert strict["non_live"].accuracy == pytest.approx(float(non_live))
    assert strict["overall"].accuracy == pytest.approx(float(overall))
    assert strict["multi_turn"].total_count == 800 and strict["multi_turn"].accuracy == 0
    md = render_markdown(build_report(report.parts, full_sizes=bfcl_category_sizes()))
    assert "Overall 31.28, Non-live 27.16, Live 66.67" in md
