"""Benchmark report: every part's counts, the BFCL summary columns, JSON and Markdown."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from itool_ray.data import Sample
from itool_ray.eval.benchmarks import UNSUPPORTED, PartResult, Verdict, score_part
from itool_ray.eval.bfcl_summary import Acc, Rule, bfcl_columns

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
    leaderboard's arithmetic, a category not run counted 0)."""

    parts: dict[str, PartResult]
    bfcl: dict[Rule, dict[str, Acc | None]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "parts": {name: p.to_dict() for name, p in self.parts.items()},
            "bfcl_summary": {
                rule: {k: (v.to_dict() if v is not None else None) for k, v in cols.items()}
                for rule, cols in self.bfcl.items()
            },
            "not_supported": {k: list(v) for k, v in UNSUPPORTED.items()},
        }

    def to_markdown(self) -> str:
        return render_markdown(self)


def bfcl_category_scores(parts: Mapping[str, PartResult]) -> dict[str, Acc]:
    """Per-category accuracy and count of the BFCL parts that were run."""
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
    sets: Mapping[str, Sequence[Sample]],
    respond: Callable[[list[Sample]], Sequence[str | None]],
    *,
    checker: Callable[..., dict[str, Any]] | None = None,
    full_sizes: Mapping[str, int] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> tuple[BenchmarkReport, dict[str, list[Verdict]]]:
    """Decode every part's samples with one ``respond`` call (as ``score_sets`` does) and
    score them; also returns every verdict per part."""
    owners = [(name, s) for name, samples in sets.items() for s in samples]
    responses = list(respond([s for _, s in owners])) if owners else []
    if len(responses) != len(owners):
        raise RuntimeError(f"responder returned {len(responses)} answers for {len(owners)}")
    by_part: dict[str, list[str | None]] = {name: [] for name in sets}
    for (name, _), text in zip(owners, responses, strict=True):
        by_part[name].append(text)
    results, verdicts = {}, {}
    for name, samples in sets.items():
        results[name], verdicts[name] = score_part(name, samples, by_part[name], checker)
    return build_report(results, full_sizes=full_sizes, meta=meta), verdicts


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
        "| "
        + " | ".join(
            "not supported" if key == "multi_turn" else _pct(cols.get(key))
            for _, key in PAPER_COLUMNS
        )
        + " |",
        "",
        "BFCL's formulas over the categories run: Non-live (AST) is its AST summary "
        "(unweighted mean), Live is weighted by entries and holds live relevance and "
        "irrelevance, Overall is the mean of the Live and Non-live groups (Non-live there "
        "also holds irrelevance; multi-turn is not run). Parse errors, text answers and "
        "skipped prompts (longer than the context) are wrong unless no call is wanted.",
    ]
    strict = report.bfcl.get("bfcl")
    if strict:
        lines.append(
            f"With the leaderboard's rule (a category not run counts 0): Overall "
            f"{_pct(strict['overall'])}, Non-live {_pct(strict['non_live'])}, "
            f"Live {_pct(strict['live'])}."
        )
    lines += ["", *_part_rows(parts, lambda n: n.split("/", 1)[1]), ""]
    lines.append(
        "Not supported: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in UNSUPPORTED.items()) + "."
    )
    return lines


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
            lines.append(f"| all | {n} | {correct} | {100 * correct / n:.2f} | "
                         f"{sum(p.parse_errors for p in seal)} | {sum(p.no_call for p in seal)} | "
                         f"{sum(p.skipped for p in seal)} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)
