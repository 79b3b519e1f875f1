"""Easy / medium / hard buckets for the warm-up SFT (iTool section 4.1, eq. 1-3).

The paper: "we first divide the dataset evenly into three subsets (i.e., easy, medium, hard)
based on difficulty levels. We follow the criteria: 1) candidate toolset number 2) the string
length of the toolset, 3) the number of tool calls needed in response." It does not say how
the three criteria are combined. Two rules are provided (a registry, see :data:`RULES`):

* ``"rank_sum"`` (default): each criterion is turned into its rank over the dataset (ties get
  the average rank), and the difficulty score is the sum of the three ranks (a Borda count).
  The criteria weigh the same whatever their scale, and each one matters.
* ``"lexicographic"``: sort by (number of tools, tool-list length, number of calls). The
  tool-list length is almost never tied, so the number of calls then barely matters; kept as
  the literal reading of the list order.

Samples are sorted by (score, id) (the id breaks ties, so the result does not depend on the
input order) and cut into three contiguous thirds whose sizes differ by at most one (the
easier buckets take the remainder).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from itool_ray.calls import CallParseError, parse_calls
from itool_ray.data.sample import Sample

BUCKET_NAMES: tuple[str, str, str] = ("easy", "medium", "hard")


@dataclass(frozen=True)
class DifficultyFeatures:
    """The paper's three criteria for one sample."""

    n_tools: int
    tools_chars: int
    n_calls: int


def tools_text(sample: Sample) -> str:
    """The tool list as the string whose length is criterion 2 (``json.dumps`` of the list)."""
    return json.dumps(list(sample.tools), ensure_ascii=False)


def count_gold_calls(sample: Sample) -> int:
    """Calls in the gold response: ``len(ground_truth)`` when given, else the parsed gold
    (0 for a plain-text answer)."""
    if sample.ground_truth is not None:
        return len(sample.ground_truth)
    try:
        calls = parse_calls(sample.gold)
    except CallParseError as e:
        raise ValueError(f"sample {sample.id!r}: gold is not a valid call list: {e}") from e
    return 0 if calls is None else len(calls)


def difficulty_features(sample: Sample) -> DifficultyFeatures:
    return DifficultyFeatures(len(sample.tools), len(tools_text(sample)), count_gold_calls(sample))


def _average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = mean
        i = j + 1
    return ranks


def _rank_sum(feats: Sequence[DifficultyFeatures]) -> list[Any]:
    cols = ([f.n_tools for f in feats], [f.tools_chars for f in feats], [f.n_calls for f in feats])
    ranks = [_average_ranks(c) for c in cols]
    return [sum(r[i] for r in ranks) for i in range(len(feats))]


def _lexicographic(feats: Sequence[DifficultyFeatures]) -> list[Any]:
    return [(f.n_tools, f.tools_chars, f.n_calls) for f in feats]


RULES: dict[str, Callable[[Sequence[DifficultyFeatures]], list[Any]]] = {
    "rank_sum": _rank_sum,
    "lexicographic": _lexicographic,
}


def _order(samples: Sequence[Sample], rule: str) -> list[int]:
    if rule not in RULES:
        raise ValueError(f"unknown difficulty rule {rule!r}; known: {sorted(RULES)}")
    feats = [difficulty_features(s) for s in samples]
    scores = RULES[rule](feats)
    return sorted(
        range(len(samples)),
        key=lambda i: (scores[i], samples[i].id, samples[i].gold, tools_text(samples[i])),
    )


def difficulty_order(samples: Sequence[Sample], *, rule: str = "rank_sum") -> list[Sample]:
    """The samples from easiest to hardest (ties broken by id, then gold and tools)."""
    return [samples[i] for i in _order(samples, rule)]


def third_sizes(n: int) -> tuple[int, int, int]:
    """Sizes of three contiguous parts of ``n`` items, differing by at most one."""
    q, r = divmod(n, 3)
    return (q + (r > 0), q + (r > 1), q)


@dataclass(frozen=True)
class DifficultyBuckets:
    """Three buckets, each ordered from easiest to hardest."""

    easy: tuple[Sample, ...]
    medium: tuple[Sample, ...]
    hard: tuple[Sample, ...]
    rule: str = "rank_sum"

    def __iter__(self) -> Iterator[tuple[str, tuple[Sample, ...]]]:
        """``(name, samples)`` pairs in training order: easy, medium, hard."""
        return iter(zip(BUCKET_NAMES, (self.easy, self.medium, self.hard), strict=True))

    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(part) for name, part in self}


def bucket_by_difficulty(samples: Sequence[Sample], *, rule: str = "rank_sum") -> DifficultyBuckets:
    """Cut the samples into easy / medium / hard thirds (see the module docstring)."""
    ordered = difficulty_order(samples, rule=rule)
    a, b, _ = third_sizes(len(ordered))
    return DifficultyBuckets(
        tuple(ordered[:a]), tuple(ordered[a : a + b]), tuple(ordered[a + b :]), rule
    )


def label_difficulty(samples: Sequence[Sample], *, rule: str = "rank_sum") -> list[Sample]:
    """Copies of the samples (input order) with ``meta["difficulty"]`` set to the bucket name."""
    order = _order(samples, rule)
    a, b, _ = third_sizes(len(order))
    labels = [""] * len(samples)
    for pos, i in enumerate(order):
        labels[i] = BUCKET_NAMES[0 if pos < a else 1 if pos < a + b else 2]
    return [
        replace(s, meta={**s.meta, "difficulty": lab})
        for s, lab in zip(samples, labels, strict=True)
    ]
