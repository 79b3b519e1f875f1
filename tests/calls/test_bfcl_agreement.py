"""Agreement of `check_calls` with BFCL's own AST checker on the BFCL v3 AST categories.

For every entry of the six categories below, two responses are built from the gold answer:
(a) the first allowed value of every gold argument (optional arguments whose first allowed
value is "" are left out), which both checkers must accept; (b) the same response with one
value changed deterministically, which both must reject. Every response goes through the text
path (`render_calls` -> `parse_calls`) before it is checked, and the rendered text is also
decoded independently with `ast` + `ast.literal_eval` (BFCL's own decoder needs tree_sitter).
Run with `pytest -s` to see the disagreements and the figures.
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pytest

from itool_ray.calls import Call, check_calls, parse_calls, render_calls, value_matches

try:
    from bfcl.eval_checker.ast_eval.ast_checker import ast_checker
except ImportError:  # pragma: no cover - depends on the environment
    ast_checker = None

pytestmark = pytest.mark.skipif(
    ast_checker is None,
    reason="BFCL checker not importable: pip install --no-deps nvidia-bfcl==26.3",
)

CATEGORIES = ["simple", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple"]
MODEL_NAME = "Team-ACE/ToolACE-8B"
MIN_AGREEMENT = 0.99
_OMIT = object()


def _read_jsonl(path: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_category(category: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(question entry, possible-answer entry) pairs, paired by position as BFCL's runner does."""
    data = resources.files("bfcl") / "data"
    questions = _read_jsonl(data / f"BFCL_v3_{category}.json")
    answers = _read_jsonl(data / "possible_answer" / f"BFCL_v3_{category}.json")
    assert len(questions) == len(answers)
    return list(zip(questions, answers, strict=True))


def _is_allowed_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, list) for v in value.values())


def build_value(allowed_value: Any) -> Any:
    """A concrete value from one allowed value (dicts in BFCL's {key: [allowed]} form)."""
    if _is_allowed_dict(allowed_value):
        out = {}
        for key, allowed in allowed_value.items():
            if allowed and allowed[0] != "":
                out[key] = build_value(allowed[0])
        return out
    if isinstance(allowed_value, list):
        return [build_value(v) for v in allowed_value]
    return allowed_value


def first_value(allowed: list[Any], schema_required: bool) -> Any:
    if not allowed:
        return _OMIT
    if allowed[0] == "":
        if not schema_required:
            return _OMIT
        rest = [a for a in allowed if a != ""]
        return build_value(rest[0]) if rest else ""
    return build_value(allowed[0])


def build_response(
    ground_truth: list[dict[str, Any]], functions: list[dict[str, Any]]
) -> list[Call]:
    calls = []
    by_name = {f["name"]: f for f in functions}
    for gold_call in ground_truth:
        ((name, args),) = gold_call.items()
        required = set((by_name.get(name) or {}).get("parameters", {}).get("required", []))
        arguments = {}
        for arg, allowed in args.items():
            value = first_value(allowed, arg in required)
            if value is not _OMIT:
                arguments[arg] = value
        calls.append(Call(name, arguments))
    return calls


def mutate_value(value: Any) -> Any:
    """A deterministic different value of (mostly) the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.0
    if isinstance(value, str):
        return value + "zq9"
    if value is None:
        return "zq9"
    if isinstance(value, (list, tuple)):
        return [mutate_value(value[0]), *value[1:]] if value else ["zq9"]
    if isinstance(value, dict):
        if not value:
            return {"zq9": 1}
        key = next(iter(value))
        return {**value, key: mutate_value(value[key])}
    raise TypeError(type(value))


def mutate_response(calls: list[Call], ground_truth: list[dict[str, Any]]) -> list[Call]:
    """Change one value of the first call (its name when it has no arguments)."""
    first, rest = calls[0], calls[1:]
    if not first.arguments:
        return [Call(first.name + "_zq9", {}), *rest]
    ((_, gold_args),) = ground_truth[0].items()
    arg = next(iter(first.arguments))
    new = mutate_value(first.arguments[arg])
    if any(value_matches(new, g) for g in gold_args[arg]):  # still allowed: grow it instead
        new = [new, "zq9"] if not isinstance(new, list) else [*new, "zq9"]
    return [Call(first.name, {**first.arguments, arg: new}), *rest]


def variants(calls: list[Call], gold: list[dict[str, Any]]) -> list[tuple[str, list[Call]]]:
    """Extra responses beyond (a) and (b), each exercising one rule on the first call.

    Accepted by BFCL: "case" (top-level strings upper-cased: BFCL is case-insensitive),
    "int_for_float" (an integral float written as an int). Rejected: "extra_arg", "drop_arg"
    (a required argument left out), "str_for_number" (a number written as a string).
    """
    first, rest = calls[0], calls[1:]
    ((_, gold_args),) = gold[0].items()
    out: list[tuple[str, list[Call]]] = [
        ("extra_arg", [Call(first.name, {**first.arguments, "zq9_extra": 1}), *rest])
    ]
    args = first.arguments
    strings = {k: v.upper() for k, v in args.items() if isinstance(v, str) and v != v.upper()}
    if strings:
        out.append(("case", [Call(first.name, {**args, **strings}), *rest]))
    floats = {k: int(v) for k, v in args.items() if isinstance(v, float) and v.is_integer()}
    if floats:
        out.append(("int_for_float", [Call(first.name, {**args, **floats}), *rest]))
    required = [k for k in args if "" not in gold_args.get(k, [""])]
    if required:
        dropped = {k: v for k, v in args.items() if k != required[0]}
        out.append(("drop_arg", [Call(first.name, dropped), *rest]))
    numbers = [k for k, v in args.items() if type(v) in (int, float)]
    if numbers:
        out.append(("str_for_number", [Call(first.name, {**args, numbers[0]: "zq9"}), *rest]))
    return out


def independent_decode(text: str) -> list[Call]:
    """Decode rendered text with Python's own parser (names without spaces only)."""
    tree = ast.parse(text, mode="eval")
    assert isinstance(tree.body, ast.List)
    calls = []
    for node in tree.body.elts:
        assert isinstance(node, ast.Call) and not node.args
        calls.append(
            Call(ast.unparse(node.func), {k.arg: ast.literal_eval(k.value) for k in node.keywords})
        )
    return calls


def bfcl_verdict(entry: dict[str, Any], calls: list[Call], gold: list[Any], category: str) -> Any:
    try:
        result = ast_checker(
            entry["function"],
            [c.to_bfcl() for c in calls],
            gold,
            language="Python",
            test_category=category,
            model_name=MODEL_NAME,
        )
    except Exception as exc:  # BFCL crashes on some malformed entries
        return f"crash: {type(exc).__name__}: {exc}"
    return result["valid"], result.get("error")


@dataclass
class Case:
    category: str
    id: str
    kind: str  # "gold" (a) or "mutated" (b)
    ours: bool
    bfcl: Any
    reason: str


def run_category(category: str) -> tuple[list[Case], int]:
    cases: list[Case] = []
    text_round_trips = 0
    for entry, answer in load_category(category):
        gold = answer["ground_truth"]
        built = build_response(gold, entry["function"])
        responses = [("gold", built), ("mutated", mutate_response(built, gold))]
        for kind, response in responses + variants(built, gold):
            text = render_calls(response)
            parsed = parse_calls(text)
            assert parsed == response, (entry["id"], text)
            if all(" " not in c.name for c in response):
                assert independent_decode(text) == response, (entry["id"], text)
            text_round_trips += 1
            ours = check_calls(parsed, gold, entry["function"])
            theirs = bfcl_verdict(entry, parsed, gold, category)
            reason = "; ".join(ours.errors) or "-"
            if isinstance(theirs, tuple):
                reason += f" | bfcl: {theirs[1]}"
            cases.append(Case(category, entry["id"], kind, ours.correct, theirs, reason))
    return cases, text_round_trips


def _agrees(case: Case) -> bool:
    return isinstance(case.bfcl, tuple) and case.bfcl[0] == case.ours


def test_bfcl_agreement() -> None:
    all_cases: list[Case] = []
    for category in CATEGORIES:
        cases, round_trips = run_category(category)
        assert round_trips == len(cases) > 0
        all_cases += cases
        agree = sum(_agrees(c) for c in cases)
        expected = Counter(
            (c.kind, c.ours, c.bfcl[0] if isinstance(c.bfcl, tuple) else "crash") for c in cases
        )
        print(
            f"\n[bfcl agreement] {category}: {agree}/{len(cases)} = {agree / len(cases):.2%}"
            f"  (kind, ours, bfcl) counts: {dict(sorted(expected.items(), key=str))}"
        )
    disagreements = [c for c in all_cases if not _agrees(c)]
    for c in disagreements:
        verdict = c.bfcl[0] if isinstance(c.bfcl, tuple) else c.bfcl
        print(
            f"[bfcl disagreement] {c.category} {c.id} ({c.kind}): ours={c.ours}"
            f" bfcl={verdict} reason={c.reason[:300]}"
        )
    overall = 1 - len(disagreements) / len(all_cases)
    print(
        f"[bfcl agreement] overall: {len(all_cases) - len(disagreements)}/{len(all_cases)}"
        f" = {overall:.2%}"
    )
    assert overall >= MIN_AGREEMENT
    # The gold responses must be accepted and the mutated ones rejected, by both, almost always.
    n_entries = sum(c.kind == "gold" for c in all_cases)
    gold_ok = sum(c.kind == "gold" and c.ours for c in all_cases)
    mutated_rejected = sum(c.kind == "mutated" and not c.ours for c in all_cases)
    print(f"[bfcl agreement] (a) accepted: {gold_ok}/{n_entries}; (b) rejected: {mutated_rejected}")
    assert gold_ok >= MIN_AGREEMENT * n_entries
    assert mutated_rejected == n_entries
