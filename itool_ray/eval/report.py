"""Benchmark report: every part's counts, the BFCL summary columns, JSON and Markdown.

:func:`score_benchmarks` decodes the single-turn parts with one ``respond`` call and the
BFCL multi-turn parts with :func:`itool_ray.eval.multi_turn.run_multi_turn` (one
``respond_chat`` call per step, every entry of every multi-turn part in it), then scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from itool_ray.data import Sample
from itool_ray.envs import MULTI_TURN_CATEGORIES, MultiTurnEntry, gold_defects
from itool_ray.eval.benchmarks import (
    UNSUPPORTED,
    PartResult,
    Verdict,
    is_multi_turn,
    score_multi_turn_part,
    score_part,
)
from itool_ray.eval.bfcl_summary import MULTI_TURN, Acc, Rule, bfcl_columns
from itool_ray.eval.multi_turn import ChatResponder, run_multi_turn

PAPER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Overall", "overall"),
    ("Non-live (AST)", "non_live_ast"),
    ("Live", "live"),
    ("Multi-turn", "multi_turn"),
    ("Relevance", "relevance"),
    ("Irrelevance", "irrelevance"),
)
"""The paper's BFCL columns (Table 1) and the BFCL aggregate each one shows."""


@dataclass(frozen=True)
class BenchmarkReport:
    """Results of one model on the benchmark parts, plus BFCL's summary under both rules of
    :mod:`itool_ray.eval.bfcl_summary` (``evaluated``: over the categories run; ``bfcl``: the
    leaderboard's arithmetic, a category not run counted 0). ``rejected_gold``: for
    ``model=oracle``, every gold answer the checkers reject (:func:`oracle_rejections`)."""

    parts: dict[str, PartResult]
    bfcl: dict[Rule, dict[str, Acc | None]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    rejected_gold: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "meta": self.meta,
            "parts": {name: p.to_dict() for name, p in self.parts.items()},
            "bfcl_categories": {
                c: a.to_dict() for c, a in bfcl_category_scores(self.parts).items()
            },
            "bfcl_summary": {
                rule: {k: (v.to_dict() if v is not None else None) for k, v in cols.items()}
                for rule, cols in self.bfcl.items()
            },
            "not_supported": {k: list(v) for k, v in UNSUPPORTED.items()},
        }
        if self.rejected_gold is not None:
            out["rejected_gold"] = self.rejected_gold
        return out

    def to_markdown(self) -> str:
        return render_markdown(self)


def bfcl_category_scores(parts: Mapping[str, PartResult]) -> dict[str, Acc]:
    """Per-category accuracy and count of the BFCL parts that were run, under BFCL's
    category names (``simple``, ``multi_turn_base``, ...)."""
    return {
        name.split("/", 1)[1]: Acc(p.accuracy, p.n)
        for name, p in parts.items()
        if name.startswith("bfcl/") and p.n
    }


def build_report(
    parts: Mapping[str, PartResult],
    *,
    full_sizes: Mapping[str, int] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> BenchmarkReport:
    """Aggregate part results; ``full_sizes`` (:func:`bfcl_category_sizes`) feeds rule
    ``bfcl``'s count for categories not run, and leaving it out skips that rule."""
    scores = bfcl_category_scores(parts)
    bfcl: dict[Rule, dict[str, Acc | None]] = {}
    if scores:
        bfcl["evaluated"] = bfcl_columns(scores, "evaluated")
        if full_sizes is not None:
            bfcl["bfcl"] = bfcl_columns(scores, "bfcl", full_sizes)
    return BenchmarkReport(dict(parts), bfcl, dict(meta or {}))


def score_benchmarks(
    sets: Mapping[str, Sequence[Any]],
    respond: Callable[[list[Sample]], Sequence[str | None]],
    *,
    respond_chat: ChatResponder | None = None,
    checker: Callable[..., dict[str, Any]] | None = None,
    full_sizes: Mapping[str, int] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> tuple[BenchmarkReport, dict[str, list[Verdict]]]:
    """Decode every single-turn part's samples with one ``respond`` call (as ``score_sets``
    does) and every multi-turn part's entries with ``respond_chat`` (one call per step, all
    parts together), score them; also returns every verdict per part, in ``sets`` order.

    Raises:
        ValueError: multi-turn parts without ``respond_chat``.
    """
    single = {name: items for name, items in sets.items() if not is_multi_turn(name)}
    multi = {name: items for name, items in sets.items() if is_multi_turn(name)}
    results: dict[str, PartResult] = {}
    verdicts: dict[str, list[Verdict]] = {}
    owners = [(name, s) for name, samples in single.items() for s in samples]
    responses = list(respond([s for _, s in owners])) if owners else []
    if len(responses) != len(owners):
        raise RuntimeError(f"responder returned {len(responses)} answers for {len(owners)}")
    by_part: dict[str, list[str | None]] = {name: [] for name in single}
    for (name, _), text in zip(owners, responses, strict=True):
        by_part[name].append(text)
    for name, samples in single.items():
        results[name], verdicts[name] = score_part(name, samples, by_part[name], checker)
    if any(multi.values()):
        if respond_chat is None:
            raise ValueError(f"multi-turn parts {sorted(multi)} need a respond_chat responder")
        entries = [e for items in multi.values() for e in items]
        runs = iter(run_multi_turn(entries, respond_chat))
        for name, items in multi.items():
            part_runs = [next(runs) for _ in items]
            results[name], verdicts[name] = score_multi_turn_part(name, items, part_runs)
    else:
        for name in multi:
            results[name], verdicts[name] = score_multi_turn_part(name, [], [])
    order = list(sets)
    report = build_report({n: results[n] for n in order}, full_sizes=full_sizes, meta=meta)
    return report, {n: verdicts[n] for n in order}


def oracle_rejections(
    sets: Mapping[str, Sequence[Any]], verdicts: Mapping[str, Sequence[Verdict]]
) -> list[dict[str, Any]]:
    """The gold answers judged wrong in an oracle run (``model=oracle``): ``{part, id,
    error}``, with ``gold_defects`` (why BFCL's own gold cannot be answered) for a
    multi-turn entry. Empty when the harness accepts every gold."""
    out = []
    for part, vs in verdicts.items():
        items = {getattr(e, "id", None): e for e in sets.get(part, ())}
        for v in vs:
            if v.correct:
                continue
            row: dict[str, Any] = {"part": part, "id": v.sample_id, "error": (v.error or "")[:300]}
            entry = items.get(v.sample_id)
            if isinstance(entry, MultiTurnEntry):
                row["gold_defects"] = gold_defects(entry)
            out.append(row)
    return out


# ---- Markdown ----------------------------------------------------------------------------


def _pct(acc: Acc | None) -> str:
    return "-" if acc is None else f"{100 * acc.accuracy:.2f}"


def _part_rows(parts: Sequence[PartResult], label: Callable[[str], str]) -> list[str]:
    rows = [
        "| set | n | correct | accuracy | parse errors | no call | skipped |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in parts:
        rows.append(
            f"| {label(p.name)} | {p.n} | {p.correct} | {100 * p.accuracy:.2f} | "
            f"{p.parse_errors} | {p.no_call} | {p.skipped} |"
        )
    return rows


def _bfcl_section(report: BenchmarkReport, parts: list[PartResult]) -> list[str]:
    cols = report.bfcl.get("evaluated", {})
    lines = [
        "## BFCL v3 (official AST checker, nvidia-bfcl)",
        "",
        "| " + " | ".join(title for title, _ in PAPER_COLUMNS) + " |",
        "|" + "---:|" * len(PAPER_COLUMNS),
        "| " + " | ".join(_pct(cols.get(key)) for _, key in PAPER_COLUMNS) + " |",
        "",
        "BFCL's formulas over the categories run: Non-live (AST) is its AST summary "
        "(unweighted mean), Live is weighted by entries and holds live relevance and "
        "irrelevance, Multi-turn is the unweighted mean of multi_turn_base, miss_func, "
        "miss_param and long_context (multi_turn_composite is reported apart, in no "
        "aggregate), Overall is the unweighted mean of the Live, Non-live and Multi-turn "
        "groups (Non-live there also holds irrelevance). Parse errors, text answers and "
        "skipped prompts (longer than the context) are wrong unless no call is wanted.",
    ]
    strict = report.bfcl.get("bfcl")
    if strict:
        lines.append(
            f"With the leaderboard's rule (a category not run counts 0): Overall "
            f"{_pct(strict['overall'])}, Non-live {_pct(strict['non_live'])}, "
            f"Live {_pct(strict['live'])}, Multi-turn {_pct(strict['multi_turn'])}."
        )
    lines += _multi_turn_lines(report)
    lines += ["", *_part_rows(parts, lambda n: n.split("/", 1)[1]), ""]
    lines.append(
        "Not supported: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in UNSUPPORTED.items()) + "."
    )
    return lines


def _multi_turn_lines(report: BenchmarkReport) -> list[str]:
    """BFCL's multi-turn table (its ``data_multi_turn.csv`` columns, plus composite)."""
    scores = bfcl_category_scores(report.parts)
    if not any(c in scores for c in MULTI_TURN_CATEGORIES):
        return []
    cols = report.bfcl.get("evaluated", {})
    names = [c.removeprefix("multi_turn_") for c in MULTI_TURN_CATEGORIES]
    cells = [_pct(cols.get("multi_turn"))] + [_pct(scores.get(c)) for c in MULTI_TURN_CATEGORIES]
    return [
        "",
        "| Multi-turn | " + " | ".join(names) + " |",
        "|" + "---:|" * (len(names) + 1),
        "| " + " | ".join(cells) + " |",
        "",
        f"Multi-turn = mean of {', '.join(c.removeprefix('multi_turn_') for c in MULTI_TURN)}"
        "; decoded turn by turn with the tools executed (safe executor, no eval), "
        "judged by BFCL's multi-turn state and response checks.",
    ]


def _rejected_lines(report: BenchmarkReport) -> list[str]:
    rejected = report.rejected_gold
    if rejected is None:
        return []
    lines = ["## Oracle self-check: gold answers the checkers reject", ""]
    if not rejected:
        return [*lines, "None: every gold answer scores as correct.", ""]
    lines += [
        f"{len(rejected)} gold answers are judged wrong:",
        "",
        "| part | id | why |",
        "|---|---|---|",
    ]
    for r in rejected:
        why = "; ".join(r.get("gold_defects") or []) or r["error"]
        why = why.replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(f"| {r['part']} | {r['id']} | {why} |")
    return [*lines, ""]


def render_markdown(report: BenchmarkReport) -> str:
    """The paper's BFCL columns, then API-Bank L1/L2 and Seal-Tools easy/hard, each with n,
    accuracy (%) and the parse-error, no-call and skipped counts."""
    lines = [f"# Benchmarks: {report.meta.get('model', '?')}"]
    if report.meta.get("adapter"):
        lines.append(f"adapter: `{report.meta['adapter']}`")
    lines.append("")
    groups = {
        src: [p for n, p in report.parts.items() if n.startswith(src + "/")]
        for src in ("bfcl", "api-bank", "seal-tools")
    }
    if groups["bfcl"]:
        lines += [*_bfcl_section(report, groups["bfcl"]), ""]
    if groups["api-bank"]:
        lines += ["## API-Bank (API name + arguments)", ""]
        lines += [*_part_rows(groups["api-bank"], lambda n: n.split("/", 1)[1]), ""]
    if groups["seal-tools"]:
        seal = groups["seal-tools"]
        n, correct = sum(p.n for p in seal), sum(p.correct for p in seal)
        lines += ["## Seal-Tools test_out_domain (unseen tools, call match)", ""]
        lines += _part_rows(seal, lambda n: n.split("/", 1)[1])
        if len(seal) > 1 and n:
            lines.append(
                f"| all | {n} | {correct} | {100 * correct / n:.2f} | "
                f"{sum(p.parse_errors for p in seal)} | {sum(p.no_call for p in seal)} | "
                f"{sum(p.skipped for p in seal)} |"
            )
        lines.append("")
    lines += _rejected_lines(report)
    return "\n".join(lines)
