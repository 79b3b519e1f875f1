"""Tool calls in ToolACE syntax: parse (never eval), render, and check against gold answers.

Pure Python (no ray, vllm or torch). See `parse` for what counts as a call list, `render`
for the canonical text form, and `check` for the BFCL-compatible checker.
"""

from itool_ray.calls.call import Call, CallParseError, ParseErrorReason
from itool_ray.calls.check import (
    CheckResult,
    GroundTruth,
    call_errors,
    call_similarity,
    check_calls,
    graded_credit,
    ground_truth_from_calls,
    partial_credit,
    standardize_string,
    value_matches,
)
from itool_ray.calls.parse import (
    CallScanner,
    PartialCalls,
    next_call_boundary,
    parse_calls,
    parse_partial,
)
from itool_ray.calls.render import render_call, render_calls, render_value

__all__ = [
    "Call",
    "CallParseError",
    "CallScanner",
    "CheckResult",
    "GroundTruth",
    "ParseErrorReason",
    "PartialCalls",
    "call_errors",
    "call_similarity",
    "check_calls",
    "graded_credit",
    "ground_truth_from_calls",
    "next_call_boundary",
    "parse_calls",
    "parse_partial",
    "partial_credit",
    "render_call",
    "render_calls",
    "render_value",
    "standardize_string",
    "value_matches",
]
