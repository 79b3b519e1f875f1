"""Score model responses against a sample's gold answer (pure: no engine here)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from itool_ray.calls import CallParseError, check_calls, ground_truth_from_calls, parse_calls
from itool_ray.calls.check import GroundTruth
from itool_ray.data import Sample


def gold_ground_truth(sample: Sample) -> GroundTruth | None:
    """The sample's allowed answers; ``None`` when the gold answer is plain text (no call)."""
    if sample.ground_truth is not None:
        return sample.ground_truth
    calls = parse_calls(sample.gold)
    return None if calls is None else ground_truth_from_calls(calls)


@dataclass(frozen=True)
class Scored:
    """One response judged: ``parse_error`` is set when the output was not a valid call list
    (it counts as a wrong answer, never a crash)."""

    sample_id: str
    response: str
    correct: bool
    partial: float
    parse_error: str | None = None
    gold_calls: int = 0  # calls in the gold answer (0: a text answer): 2+ is a "hard" row
    detail: Mapping[str, Any] | None = None
    """More about the answer, kept in its record (a multi-turn entry: how it was played)."""


def gold_call_count(sample: Sample) -> int:
    """Number of calls the gold answer makes (0 for a text answer or an unparsable gold)."""
    if sample.ground_truth is not None:
        return len(sample.ground_truth)
    try:
        calls = parse_calls(sample.gold)
    except CallParseError:
        return 0
    return len(calls or ())


def score_response(sample: Sample, response: str) -> Scored:
    n = gold_call_count(sample)
    try:
        predicted = parse_calls(response)
    except CallParseError as e:
        return Scored(sample.id, response, False, 0.0, f"{e.reason} at {e.position}", n)
    result = check_calls(predicted, gold_ground_truth(sample), list(sample.tools))
    return Scored(sample.id, response, result.correct, result.partial, gold_calls=n)


ERROR_KINDS: tuple[str, ...] = (
    "correct",
    "not a call list",
    "fewer calls",
    "more calls",
    "other functions",
    "wrong arguments",
)
"""The kinds of :func:`error_kind`, in the order a table shows them."""


def error_kind(sample: Sample, response: str | None, correct: bool) -> str:
    """What is wrong with a judged answer to a call-answer sample (one of
    :data:`ERROR_KINDS`): ``not a call list`` (prose, a broken call list, or no answer),
    ``fewer calls`` / ``more calls`` than the gold, ``other functions`` (as many calls, not
    the gold's functions as a multiset), else ``wrong arguments``."""
    gold = gold_ground_truth(sample)
    if not gold:
        raise ValueError(f"error_kind: sample {sample.id!r} has no gold calls")
    if correct:
        return "correct"
    try:
        predicted = parse_calls(response or "")
    except CallParseError:
        predicted = None
    if predicted is None:
        return "not a call list"
    if len(predicted) != len(gold):
        return "fewer calls" if len(predicted) < len(gold) else "more calls"
    names = sorted(name for call in gold for name in call)
    if sorted(c.name for c in predicted) != names:
        return "other functions"
    return "wrong arguments"


@dataclass(frozen=True)
class Counts:
    """Accuracy of one model on one set: ``n`` responses, ``correct`` of them right;
    ``parse_errors`` (broken call lists) and ``skipped`` (prompts that did not fit) are wrong
    answers inside ``n``. Subclasses add their own detail fields, serialised as they are."""

    name: str
    n: int
    correct: int
    parse_errors: int
    skipped: int = 0
    mean_partial: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return {**d, "accuracy": self.accuracy}


@dataclass(frozen=True)
class EvalSummary(Counts):
    """Accuracy of one model on one held-out set, with a few wrong answers as examples."""

    examples: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    """Every scored record: ``{"id", "correct", "gold_calls"}`` (paired tests, hard rows) and
    its ``detail``."""


def summarize(name: str, scored: Sequence[Scored], skipped: int = 0, keep: int = 3) -> EvalSummary:
    counts = Counter(s.correct for s in scored)
    return EvalSummary(
        name=name,
        n=len(scored),
        correct=counts[True],
        parse_errors=sum(s.parse_error is not None for s in scored),
        skipped=skipped,
        mean_partial=sum(s.partial for s in scored) / len(scored) if scored else 0.0,
        examples=[
            {
                "id": s.sample_id,
                "response": s.response[:300],
                "correct": s.correct,
                "parse_error": s.parse_error,
            }
            for s in scored[:keep]
        ],
        records=[
            {
                "id": s.sample_id,
                "correct": s.correct,
                "gold_calls": s.gold_calls,
                **(s.detail or {}),
            }
            for s in scored
        ],
    )
