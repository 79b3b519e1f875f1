"""BFCL v3 summary columns (Non-live, Live, Multi-turn, Relevance, Irrelevance, Overall) from
per-category accuracies, computed the way the installed ``nvidia-bfcl`` (26.3) computes them.

Mirrored from ``bfcl/eval_checker/eval_runner_helper.py``:

* :func:`weighted` is ``calculate_weighted_accuracy`` (mean over entries, weighted by count),
  :func:`unweighted` is ``calculate_unweighted_accuracy`` (plain mean over its inputs);
* :func:`bfcl_columns` is the aggregation tree of ``generate_leaderboard_csv``: Non-live
  groups are *unweighted* means (Python/Java/JavaScript simple averaged into "simple"),
  Live groups are *weighted* by entry count, Multi-turn is unweighted, Irrelevance is the
  unweighted mean of ``irrelevance`` and ``live_irrelevance``, Relevance is
  ``live_relevance``, and Overall is the unweighted mean of Live, Non-live and Multi-turn.

The one choice left is what a category that was not run contributes (:data:`Rule`):

* ``"bfcl"``: what ``get_category_score`` does: accuracy 0 with the full file's entry count,
  displayed as N/A. Exact leaderboard arithmetic, but the executable, Java/JavaScript and
  multi-turn categories this project does not run pull every aggregate down.
* ``"evaluated"``: a category not run is left out of every mean (an aggregate with no input
  run is ``None``). Same formulas over what was measured; the default for reports.

Pure: no BFCL import (the package data is only counted, in :func:`bfcl_category_sizes`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Rule = Literal["bfcl", "evaluated"]
RULES: tuple[Rule, ...] = ("bfcl", "evaluated")

NON_LIVE_AST = ("simple", "multiple", "parallel", "parallel_multiple")
NON_LIVE_EXEC = ("exec_simple", "exec_multiple", "exec_parallel", "exec_parallel_multiple")
LIVE_AST = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
MULTI_TURN = (
    "multi_turn_base",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
    "multi_turn_long_context",
)
LEADERBOARD_CATEGORIES: tuple[str, ...] = (
    *NON_LIVE_AST,
    "java",
    "javascript",
    *NON_LIVE_EXEC,
    "rest",
    "irrelevance",
    *LIVE_AST,
    "live_irrelevance",
    "live_relevance",
    *MULTI_TURN,
)
"""Every category ``generate_leaderboard_csv`` reads."""

COLUMNS: tuple[str, ...] = (
    "overall",
    "single_turn",
    "non_live",
    "non_live_ast",
    "non_live_exec",
    "live",
    "live_ast",
    "multi_turn",
    "relevance",
    "irrelevance",
)


@dataclass(frozen=True)
class Acc:
    """One accuracy as BFCL carries it: ``na`` is its ``display_accuracy == "N/A"``."""

    accuracy: float
    total_count: int
    na: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"accuracy": self.accuracy, "total_count": self.total_count, "na": self.na}


def weighted(items: Sequence[Acc | None], *, na_if_missing: bool = True) -> Acc | None:
    """``calculate_weighted_accuracy``; ``None`` inputs (not run, rule "evaluated") are left out."""
    kept = [a for a in items if a is not None]
    if not kept:
        return None
    count = sum(a.total_count for a in kept)
    acc = sum(a.accuracy * a.total_count for a in kept) / count if count else 0.0
    return Acc(acc, count, na_if_missing and any(a.na for a in kept))


def unweighted(items: Sequence[Acc | None], *, na_if_missing: bool = True) -> Acc | None:
    """``calculate_unweighted_accuracy``; ``None`` inputs are left out."""
    kept = [a for a in items if a is not None]
    if not kept:
        return None
    acc = sum(a.accuracy for a in kept) / len(kept)
    return Acc(acc, sum(a.total_count for a in kept), na_if_missing and any(a.na for a in kept))


def _getter(
    scores: Mapping[str, Acc], rule: Rule, full_sizes: Mapping[str, int]
) -> Callable[[str], Acc | None]:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")

    def get(category: str) -> Acc | None:
        if category in scores:
            return scores[category]
        if rule == "evaluated":
            return None
        return Acc(0.0, int(full_sizes.get(category, 0)), na=True)  # get_category_score

    return get


def bfcl_columns(
    scores: Mapping[str, Acc],
    rule: Rule = "evaluated",
    full_sizes: Mapping[str, int] | None = None,
) -> dict[str, Acc | None]:
    """The summary columns of ``generate_leaderboard_csv`` from per-category ``scores``.

    ``full_sizes``: entries per category in the package data, the count BFCL gives a
    category that was not run (rule ``"bfcl"`` only; see :func:`bfcl_category_sizes`).
    """
    get = _getter(scores, rule, full_sizes or {})
    simple_ast = unweighted([get("simple"), get("java"), get("javascript")])
    non_live_ast = [simple_ast, get("multiple"), get("parallel"), get("parallel_multiple")]
    simple_exec = unweighted([get("exec_simple"), get("rest")])
    non_live_exec = [simple_exec, *(get(c) for c in NON_LIVE_EXEC[1:])]
    non_live = unweighted([*non_live_ast, *non_live_exec, get("irrelevance")], na_if_missing=False)
    live_ast = [get(c) for c in LIVE_AST]
    live = weighted(
        [*live_ast, get("live_irrelevance"), get("live_relevance")], na_if_missing=False
    )
    multi_turn = unweighted([get(c) for c in MULTI_TURN], na_if_missing=False)
    return {
        "overall": unweighted([live, non_live, multi_turn], na_if_missing=False),
        "single_turn": unweighted([live, non_live]),
        "non_live": non_live,
        "non_live_ast": unweighted(non_live_ast),
        "non_live_exec": unweighted(non_live_exec),
        "live": live,
        "live_ast": weighted(live_ast),
        "multi_turn": multi_turn,
        "relevance": get("live_relevance"),
        "irrelevance": unweighted([get("irrelevance"), get("live_irrelevance")]),
    }


def bfcl_category_sizes() -> dict[str, int]:
    """Entries per leaderboard category in the installed package's data (JSON lines)."""
    from itool_ray.data.paths import bfcl_data_dir

    base = bfcl_data_dir()
    sizes = {}
    for category in LEADERBOARD_CATEGORIES:
        path = base / f"BFCL_v3_{category}.json"
        if path.is_file():
            with path.open(encoding="utf-8") as f:
                sizes[category] = sum(1 for line in f if line.strip())
    return sizes
