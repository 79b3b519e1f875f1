"""Evaluation: scoring responses against gold answers, held-out accuracy per stage, and the
paper's benchmarks (BFCL v3 with its official checker, API-Bank, Seal-Tools) with their
report. Pure scoring: Ray and vLLM appear only in ``generate`` and ``job``."""

from itool_ray.eval.benchmarks import (
    PARTS,
    PartResult,
    Verdict,
    expand_benchmarks,
    judge,
    load_parts,
    score_part,
)
from itool_ray.eval.bfcl_summary import Acc, bfcl_columns
from itool_ray.eval.report import BenchmarkReport, build_report, render_markdown, score_benchmarks
from itool_ray.eval.scoring import EvalSummary, Scored, gold_ground_truth, score_response, summarize

__all__ = [
    "PARTS",
    "Acc",
    "BenchmarkReport",
    "EvalSummary",
    "PartResult",
    "Scored",
    "Verdict",
    "bfcl_columns",
    "build_report",
    "expand_benchmarks",
    "gold_ground_truth",
    "judge",
    "load_parts",
    "render_markdown",
    "score_benchmarks",
    "score_part",
    "score_response",
    "summarize",
]
