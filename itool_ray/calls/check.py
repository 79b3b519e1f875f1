"""Check predicted calls against gold answers, following BFCL's AST checker.

Gold answers use BFCL's `possible_answer` shape, `GroundTruth`: `[{"fname": {"arg": [allowed
values]}}]`, where `""` among the allowed values marks an optional argument. Inside an allowed
value, a dict whose values are all lists is read the BFCL way, as `{key: [allowed values]}`
(so `""` there marks an optional key); any other dict is compared as it is. ToolACE-style exact
gold goes through `ground_truth_from_calls`, which writes every dict in that allowed-values form.

The rules mirror `bfcl/eval_checker/ast_eval/ast_checker.py` (nvidia-bfcl 26.3):

- names are compared exactly (BFCL rewrites `.` to `_` only for models whose API forbids dots;
  `dots_as_underscores=True` does the same here);
- strings are compared after BFCL's `standardize_string` (drop spaces and `,./-_*^`,
  lowercase, `'` -> `"`), at any depth (BFCL does it at the top level, in lists and dict
  values);
- numbers compare by value (`1 == 1.0`), booleans only equal booleans, lists and tuples are
  compared element-wise, dicts key by key;
- with the tool schema: the schema's `required` arguments must be present, arguments outside
  its `properties` are unexpected, and values are type-checked by exact Python type (`bool` is
  not an `int`; an `int` is fine where a `float` is expected; a tuple only for `tuple`), with
  BFCL's escape hatch: a value whose type equals the gold value's type passes; one level of
  element types is checked for arrays (`items.type`);
- arguments missing from the gold dict are unexpected; gold arguments without `""` are
  required;
- parallel calls match order-insensitively through a maximum one-to-one assignment (BFCL
  matches greedily, which can only reject more; with distinct gold calls it is the same).

Deliberate differences, all more lenient and rare: string normalisation also applies inside
nested lists and dicts; an `int` element is accepted in an array of `float`; values whose type
matches only the gold (not the schema) are still compared with normalisation; the JSON-schema
type names `number`, `object`, `int`, `str`, `bool`, `list` are understood too (unknown type
names skip the type check instead of failing).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from itool_ray.calls.call import Call

GroundTruth = list[dict[str, dict[str, list[Any]]]]
"""BFCL `possible_answer["ground_truth"]`: one `{name: {arg: [allowed values]}}` per call."""

_STANDARDIZE = re.compile(r"[ \,\.\/\-\_\*\^]")

# Schema type name -> accepted Python types (exact `type(...)` match, as BFCL does).
_SCHEMA_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "str": (str,),
    "any": (str,),  # BFCL maps "any" to str; other types pass only through the gold escape
    "integer": (int,),
    "int": (int,),
    "float": (float, int),
    "number": (float, int),
    "boolean": (bool,),
    "bool": (bool,),
    "array": (list,),
    "list": (list,),
    "tuple": (list, tuple),
    "dict": (dict,),
    "object": (dict,),
}


@dataclass(frozen=True)
class CheckResult:
    """Verdict on one response.

    Attributes:
        correct: every gold call matched one-to-one and no extra call (BFCL's "valid").
        partial: fraction of gold calls matched by a one-to-one assignment, in [0, 1]; for an
            expected no-call answer, 1.0 when correct, else 0.0.
        errors: human-readable reasons, empty when correct.
    """

    correct: bool
    partial: float
    errors: list[str] = field(default_factory=list)


def standardize_string(value: str) -> str:
    """BFCL's `standardize_string`."""
    return _STANDARDIZE.sub("", value).lower().replace("'", '"')


def ground_truth_from_calls(calls: Sequence[Call]) -> GroundTruth:
    """Exact gold (each value the only allowed one) in BFCL's shape."""
    return [{c.name: {k: [_wrap(v)] for k, v in c.arguments.items()}} for c in calls]


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: [_wrap(v)] for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wrap(v) for v in value]
    return value


def value_matches(value: Any, gold: Any) -> bool:
    """Whether `value` equals one gold allowed value, under the normalisation above."""
    if isinstance(gold, str):
        return isinstance(value, str) and standardize_string(value) == standardize_string(gold)
    if isinstance(gold, bool) or isinstance(value, bool):
        return type(gold) is bool and type(value) is bool and value == gold
    if isinstance(gold, (int, float)):
        return isinstance(value, (int, float)) and value == gold
    if gold is None:
        return value is None
    if isinstance(gold, (list, tuple)):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(gold)
            and all(value_matches(v, g) for v, g in zip(value, gold, strict=True))
        )
    if isinstance(gold, dict):
        if not isinstance(value, dict):
            return False
        if all(isinstance(v, list) for v in gold.values()):
            return _allowed_dict_matches(value, gold)
        return value.keys() == gold.keys() and all(value_matches(value[k], gold[k]) for k in gold)
    return bool(value == gold)


def _allowed_dict_matches(value: dict[Any, Any], gold: dict[Any, list[Any]]) -> bool:
    for key, v in value.items():
        if key not in gold or not any(value_matches(v, g) for g in gold[key]):
            return False
    return all("" in allowed for key, allowed in gold.items() if key not in value)


def _find_tool(tools: Sequence[dict[str, Any]] | None, name: str) -> dict[str, Any] | None:
    for tool in tools or ():
        if tool.get("name") == name:
            return tool
    return None


def _gold_type(allowed: list[Any]) -> type | None:
    for a in allowed:
        if a != "":
            return type(a)
    return None


def _type_error(arg: str, value: Any, allowed: list[Any], spec: dict[str, Any]) -> str | None:
    """BFCL's type check for one argument against its schema entry, or None if it passes."""
    types = _SCHEMA_TYPES.get(str(spec.get("type"))) if isinstance(spec, dict) else None
    if types is None:
        return None
    gold_type = _gold_type(allowed)
    if type(value) not in types:
        if gold_type is not None and type(value) is gold_type:
            return None  # BFCL: a value of the gold's own type passes (a "variable")
        return f"argument {arg!r}: expected type {spec.get('type')}, got {type(value).__name__}"
    items = spec.get("items")
    item_type = items.get("type") if isinstance(items, dict) else None
    item_types = _SCHEMA_TYPES.get(str(item_type))
    if spec.get("type") not in ("array", "list", "tuple") or item_types is None:
        return None
    for gold in allowed:
        if not isinstance(gold, list):
            return None  # BFCL passes the nested check when any allowed value is not a list
        escape = _gold_type(gold)
        if all(type(v) in item_types or type(v) is escape for v in value):
            return None
    return f"argument {arg!r}: elements must be of type {item_type}"


def call_errors(
    predicted: Call,
    gold: dict[str, dict[str, list[Any]]],
    tool: dict[str, Any] | None = None,
    *,
    dots_as_underscores: bool = False,
) -> list[str]:
    """Why `predicted` does not match the single gold call `{name: {arg: [allowed]}}`."""
    ((gold_name, gold_args),) = gold.items()
    name, expected = predicted.name, gold_name
    if dots_as_underscores:
        name, expected = name.replace(".", "_"), expected.replace(".", "_")
    if name != expected:
        return [f"function {predicted.name!r} is not {gold_name!r}"]
    errors: list[str] = []
    params = (tool.get("parameters") or {}) if tool else {}
    properties = params.get("properties") or {}
    required = [*(params.get("required") or ()), *(a for a, v in gold_args.items() if "" not in v)]
    for arg in dict.fromkeys(required):
        if arg not in predicted.arguments:
            errors.append(f"missing required argument {arg!r}")
    for arg, value in predicted.arguments.items():
        if arg not in gold_args or (tool is not None and arg not in properties):
            errors.append(f"unexpected argument {arg!r}")
            continue
        allowed = gold_args[arg]
        if tool is not None:
            problem = _type_error(arg, value, allowed, properties[arg])
            if problem:
                errors.append(problem)
                continue
        if not any(value_matches(value, g) for g in allowed):
            errors.append(f"argument {arg!r}: {value!r} is not one of {allowed!r}")
    return errors


def _max_matching(compatible: list[list[int]], n_right: int) -> list[int | None]:
    """Maximum bipartite matching (augmenting paths); result[i] = right index or None."""
    owner: list[int | None] = [None] * n_right

    def augment(i: int, seen: list[bool]) -> bool:
        for j in compatible[i]:
            if not seen[j]:
                seen[j] = True
                current = owner[j]
                if current is None or augment(current, seen):
                    owner[j] = i
                    return True
        return False

    for i in range(len(compatible)):
        augment(i, [False] * n_right)
    result: list[int | None] = [None] * len(compatible)
    for j, left in enumerate(owner):
        if left is not None:
            result[left] = j
    return result


def _assign(
    predicted: Sequence[Call],
    gold: GroundTruth,
    tools: Sequence[dict[str, Any]] | None,
    dots_as_underscores: bool,
) -> tuple[list[int | None], list[list[list[str]]]]:
    errors = [
        [
            call_errors(
                p, g, _find_tool(tools, next(iter(g))), dots_as_underscores=dots_as_underscores
            )
            for p in predicted
        ]
        for g in gold
    ]
    compatible = [[j for j, e in enumerate(row) if not e] for row in errors]
    return _max_matching(compatible, len(predicted)), errors


def check_calls(
    predicted: Sequence[Call] | None,
    gold: GroundTruth | None,
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    dots_as_underscores: bool = False,
) -> CheckResult:
    """Judge a whole response (`predicted` None = a text answer) against gold.

    `gold` None or `[]` means the right answer is no call: correct iff `predicted` is None or
    empty. `tools` (BFCL / ToolACE tool dicts) enables the schema checks.
    """
    if not gold:
        if not predicted:
            return CheckResult(True, 1.0, [])
        return CheckResult(False, 0.0, [f"expected no call, got {len(predicted)} call(s)"])
    if predicted is None:
        return CheckResult(False, 0.0, [f"expected {len(gold)} call(s), got a text answer"])
    assignment, errors = _assign(predicted, gold, tools, dots_as_underscores)
    matched = sum(j is not None for j in assignment)
    messages: list[str] = []
    if len(predicted) != len(gold):
        messages.append(f"expected {len(gold)} call(s), got {len(predicted)}")
    used = {j for j in assignment if j is not None}
    for i, j in enumerate(assignment):
        if j is None:
            messages.append(_unmatched_gold_message(gold[i], predicted, errors[i], used))
    for j, call in enumerate(predicted):
        if j not in used and len(predicted) > len(gold):
            messages.append(f"call {j} ({call.name}) matches no gold call")
    correct = matched == len(gold) == len(predicted)
    return CheckResult(correct, matched / len(gold), [] if correct else messages)


def _unmatched_gold_message(
    gold: dict[str, dict[str, list[Any]]],
    predicted: Sequence[Call],
    row: list[list[str]],
    used: set[int],
) -> str:
    name = next(iter(gold))
    candidates = [j for j in range(len(predicted)) if j not in used]
    same_name = [j for j in candidates if row[j] and not row[j][0].startswith("function ")]
    if same_name:
        j = same_name[0]
        return f"gold call {name!r} vs predicted call {j}: " + "; ".join(row[j])
    others = ", ".join(repr(predicted[j].name) for j in candidates) or "none"
    return f"no call to {name!r} (unmatched predicted calls: {others})"


def partial_credit(
    predicted_prefix: Sequence[Call] | None,
    gold: GroundTruth | None,
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    dots_as_underscores: bool = False,
) -> float:
    """Score the calls made so far, an intermediate MCTS reward in [0, 1].

    The calls so far must match *distinct* gold calls (one-to-one, any order); the score is
    the number matched over the number of gold calls. A call that cannot be matched (wrong,
    duplicated, or one call too many) means the finished response can no longer be correct,
    so the score drops to 0.0 rather than just lowering it. With no gold calls (the right
    answer is text), an empty prefix scores 1.0 and any call 0.0.
    """
    prefix = list(predicted_prefix or [])
    if not gold:
        return 0.0 if prefix else 1.0
    if len(prefix) > len(gold):
        return 0.0
    assignment, _ = _assign(prefix, gold, tools, dots_as_underscores)
    matched = sum(j is not None for j in assignment)
    if matched < len(prefix):
        return 0.0
    return matched / len(gold)


# -- memoisation helpers: the same verdicts, built from per-call rows a caller can cache --------


def gold_row(
    predicted: Call,
    gold: GroundTruth,
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    dots_as_underscores: bool = False,
) -> tuple[bool, ...]:
    """For each gold call, whether `predicted` matches it (no `call_errors`).

    The compatibility of one predicted call, which `check_calls` and `partial_credit` build
    for every call they judge; it depends on the call alone, so a caller scoring many call
    lists that share calls (the paths of a search tree) can compute it once per distinct call
    and judge with `matched_from_rows`, `correct_from_rows` and `credit_from_rows`.
    """
    return tuple(
        not call_errors(
            predicted, g, _find_tool(tools, next(iter(g))), dots_as_underscores=dots_as_underscores
        )
        for g in gold
    )


def matched_from_rows(rows: Sequence[Sequence[bool]], n_gold: int) -> int:
    """Size of a maximum one-to-one assignment of predicted calls (one `gold_row` each) to
    the `n_gold` gold calls: the `matched` count of `check_calls` and `partial_credit`."""
    compatible = [[j for j, row in enumerate(rows) if row[i]] for i in range(n_gold)]
    return sum(j is not None for j in _max_matching(compatible, len(rows)))


def correct_from_rows(rows: Sequence[Sequence[bool]] | None, gold: GroundTruth | None) -> bool:
    """`check_calls(predicted, gold, tools).correct` from the predicted calls' `gold_row`s
    (`rows` None = a text answer)."""
    if not gold:
        return not rows
    if rows is None:
        return False
    return len(rows) == len(gold) == matched_from_rows(rows, len(gold))


def credit_from_rows(rows: Sequence[Sequence[bool]], gold: GroundTruth | None) -> float:
    """`partial_credit(predicted_prefix, gold, tools)` from the calls' `gold_row`s."""
    if not gold:
        return 0.0 if rows else 1.0
    if len(rows) > len(gold):
        return 0.0
    matched = matched_from_rows(rows, len(gold))
    if matched < len(rows):
        return 0.0
    return matched / len(gold)


# -- graded credit: how close a wrong call list is, argument by argument -------------------------


def call_similarity(
    predicted: Call,
    gold: dict[str, dict[str, list[Any]]],
    tool: dict[str, Any] | None = None,
    *,
    dots_as_underscores: bool = False,
) -> float:
    """How much of the single gold call `{name: {arg: [allowed]}}` `predicted` gets right,
    in [0, 1]: 1.0 exactly when it matches (no `call_errors`); 0.0 for another function;
    else (1 + right arguments) / (1 + arguments), over the union of the gold's arguments and
    the predicted ones: a gold argument is right when its value is allowed (or it is optional
    and left out), a predicted argument the gold does not have is wrong."""
    if not call_errors(predicted, gold, tool, dots_as_underscores=dots_as_underscores):
        return 1.0
    ((gold_name, gold_args),) = gold.items()
    name, expected = predicted.name, gold_name
    if dots_as_underscores:
        name, expected = name.replace(".", "_"), expected.replace(".", "_")
    if name != expected:
        return 0.0
    args = predicted.arguments
    right = sum(
        (any(value_matches(args[a], g) for g in allowed) if a in args else "" in allowed)
        for a, allowed in gold_args.items()
    )
    names = len(gold_args) + sum(a not in gold_args for a in args)
    return min((1 + right) / (1 + names), 1.0 - 1.0 / (2 + names))


def similarity_row(
    predicted: Call,
    gold: GroundTruth,
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    dots_as_underscores: bool = False,
) -> tuple[float, ...]:
    """For each gold call, `call_similarity` of `predicted` to it (1.0 where `gold_row` is
    True): what `graded_credit` judges with, computed once per distinct call by a caller
    that caches (`graded_from_rows`)."""
    return tuple(
        call_similarity(
            predicted, g, _find_tool(tools, next(iter(g))), dots_as_underscores=dots_as_underscores
        )
        for g in gold
    )


def graded_credit(
    predicted: Sequence[Call] | None,
    gold: GroundTruth | None,
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    dots_as_underscores: bool = False,
) -> float:
    """A graded score of a call list against gold, in [0, 1]: 1.0 exactly when
    `check_calls` finds it correct; else each gold call is paired with at most one predicted
    call (greedily, most similar pair first, by `call_similarity`) and the similarities of the
    pairs are summed over max(gold calls, predicted calls), so a missing call and an extra
    call each cost one call's worth. A text answer scores 1.0 when no call is expected, else
    0.0; any call when none is expected scores 0.0."""
    if not gold:
        return 0.0 if predicted else 1.0
    if predicted is None:
        return 0.0
    rows = [
        similarity_row(p, gold, tools, dots_as_underscores=dots_as_underscores) for p in predicted
    ]
    return graded_from_rows(rows, len(gold))


def graded_from_rows(rows: Sequence[Sequence[float]], n_gold: int) -> float:
    """`graded_credit` of a call list (at least one gold call) from its calls'
    `similarity_row`s."""
    if (
        len(rows) == n_gold
        and matched_from_rows([[s == 1.0 for s in r] for r in rows], n_gold) == n_gold
    ):
        return 1.0  # correct_from_rows
    scores = sorted((-s, i, j) for j, row in enumerate(rows) for i, s in enumerate(row) if s > 0)
    used_gold: set[int] = set()
    used_pred: set[int] = set()
    total = 0.0
    for neg, i, j in scores:
        if i not in used_gold and j not in used_pred:
            used_gold.add(i)
            used_pred.add(j)
            total -= neg
    return min(total / max(n_gold, len(rows)), 1.0 - 1.0 / (2 * n_gold + 2))
