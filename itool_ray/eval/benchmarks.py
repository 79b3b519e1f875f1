"""The benchmark suites of the paper, scored offline (pure: no Ray, vLLM or torch here).

A *part* is one scored set; its name says how a response is judged:

* ``bfcl/<category>``, AST categories (``simple`` ... ``live_parallel_multiple``): the
  response is cleaned as BFCL does for prompting models (:func:`bfcl_prompt_text`), parsed
  with :func:`itool_ray.calls.parse_calls`, and the calls go to BFCL's own ``ast_checker``
  (``nvidia-bfcl``, imported on first use) with the entry's functions and possible answers.
  Text, ``[]`` or an unparsable output is wrong (BFCL: decode failed).
* ``bfcl/multi_turn_base``, ``_miss_func``, ``_miss_param``, ``_long_context``,
  ``_composite``: each entry is decoded turn by turn with its tools executed
  (:func:`itool_ray.eval.multi_turn.run_multi_turn`) and judged by BFCL's multi-turn
  checks on the project's safe executor (:func:`itool_ray.envs.score_entry`:
  state and execution results per turn); a step that does not parse ends its turn, so a
  turn that needed calls is wrong, never an error (:func:`judge_multi_turn`).
* ``bfcl/irrelevance``, ``bfcl/live_irrelevance``: correct iff the output does not decode
  into at least one call (text, ``[]``, or an unparsable output: BFCL's
  ``relevance_file_runner``); ``bfcl/live_relevance``: correct iff it does.
* ``api-bank/level-1``, ``api-bank/level-2``: API name plus argument match against the
  ``expected_output`` call (:func:`itool_ray.calls.check_calls` without the schema, whose
  types upstream golds do not always follow; strings compared BFCL-normalised).
* ``seal-tools/easy``, ``seal-tools/hard``: ``test_out_domain`` rows (tools never seen in
  training) whose id says ``easy`` (one call) or ``difficult`` (2-6 calls), judged by the
  project's checker with the tool schema (the whole call list, any order).

Everywhere a prompt that did not fit the context (``None`` response) counts as wrong, so a
part's ``n`` is the number of entries asked (multi-turn: the entry stops there, and the
turns it did not reach are unanswered).

:func:`oracle_response` is the gold answer of a single-turn entry (``model=oracle``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from itool_ray.calls import Call, CallParseError, check_calls, parse_calls, render_calls
from itool_ray.data import BFCL_AST_CATEGORIES, Sample
from itool_ray.envs import MULTI_TURN_CATEGORIES, MultiTurnEntry, decode_step, score_entry
from itool_ray.eval.bfcl_summary import NON_LIVE_EXEC
from itool_ray.eval.multi_turn import MultiTurnRun
from itool_ray.eval.scoring import Counts, gold_ground_truth

BFCL_NO_CALL = ("irrelevance", "live_irrelevance")
BFCL_CALL = ("live_relevance",)
BFCL_PARTS: tuple[str, ...] = (
    *BFCL_AST_CATEGORIES,
    *BFCL_NO_CALL,
    *BFCL_CALL,
    *MULTI_TURN_CATEGORIES,
)
MULTI_TURN_PARTS: tuple[str, ...] = tuple(f"bfcl/{c}" for c in MULTI_TURN_CATEGORIES)
"""The BFCL v3 multi-turn parts (their entries are :class:`MultiTurnEntry`, not samples)."""
API_BANK_PARTS: tuple[str, ...] = ("level-1", "level-2")
SEAL_PARTS: tuple[str, ...] = ("easy", "hard")
SEAL_SPLIT = "test_out_domain"
PARTS: tuple[str, ...] = (
    *(f"bfcl/{c}" for c in BFCL_PARTS),
    *(f"api-bank/{p}" for p in API_BANK_PARTS),
    *(f"seal-tools/{p}" for p in SEAL_PARTS),
)
UNSUPPORTED: dict[str, tuple[str, ...]] = {
    "bfcl executable (needs the real functions)": (*NON_LIVE_EXEC, "rest"),
    "bfcl java / javascript (Python call syntax only)": ("java", "javascript"),
}
GROUPS: dict[str, tuple[str, ...]] = {
    "bfcl": tuple(p for p in PARTS if p.startswith("bfcl/")),
    "bfcl/multi_turn": MULTI_TURN_PARTS,
    "api-bank": tuple(p for p in PARTS if p.startswith("api-bank/")),
    "seal-tools": tuple(p for p in PARTS if p.startswith("seal-tools/")),
    f"seal-tools/{SEAL_SPLIT}": tuple(p for p in PARTS if p.startswith("seal-tools/")),
}
"""Names a config may use for several parts at once."""

BFCL_MODEL_NAME = "itool-ray"
"""``model_name`` given to BFCL's checker: not in its ``UNDERSCORE_TO_DOT`` list, so function
names are compared as written (dots kept)."""


def is_multi_turn(part: str) -> bool:
    """A BFCL multi-turn part (decoded by the multi-turn loop, scored per entry)."""
    return part in MULTI_TURN_PARTS


def expand_benchmarks(spec: Mapping[str, int | None]) -> dict[str, int | None]:
    """``{group or part: limit}`` -> ``{part: limit}`` (a limit applies to each part; ``None``
    means every entry). Raises ``ValueError`` naming an unknown or unsupported name."""
    out: dict[str, int | None] = {}
    for name, limit in spec.items():
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"benchmark {name!r}: limit must be a positive integer or null")
        if name in GROUPS:
            out.update(dict.fromkeys(GROUPS[name], limit))
        elif name in PARTS:
            out[name] = limit
        else:
            category = name.removeprefix("bfcl/")
            if any(category in cats for cats in UNSUPPORTED.values()):
                raise ValueError(f"benchmark {name!r} is not supported; supported: {PARTS}")
            raise ValueError(f"unknown benchmark {name!r}; known: {', '.join((*GROUPS, *PARTS))}")
    return out


# ---- loading (pure: the project's loaders) ------------------------------------------------


def seal_level(sample: Sample) -> str:
    """``easy`` or ``hard`` for a Seal-Tools row: its id says ``easy`` / ``difficult``
    (``test_out_domain-easy-0``); without that, one gold call is easy."""
    label = sample.id.rsplit("-", 2)[-2] if sample.id.count("-") >= 2 else ""
    if label in ("easy", "difficult"):
        return "easy" if label == "easy" else "hard"
    calls = parse_calls(sample.gold)
    return "easy" if calls is not None and len(calls) == 1 else "hard"


def load_bfcl_relevance(limit: int | None = None) -> list[Sample]:
    """``BFCL_v3_live_relevance.json`` (no possible answers: any call is right). The samples
    carry no gold call: ``gold`` is empty and ``meta["expects_call"]`` is set."""
    from itool_ray.data.bfcl import bfcl_record_sample
    from itool_ray.data.errors import DataError
    from itool_ray.data.jsonio import iter_json_records
    from itool_ray.data.paths import bfcl_data_dir

    path = bfcl_data_dir() / "BFCL_v3_live_relevance.json"
    out = []
    for raw in iter_json_records(path):
        if limit is not None and len(out) >= limit:
            break
        try:
            if raw.error is not None:
                raise raw.error
            sample = bfcl_record_sample(raw.value, "live_relevance", None)
        except DataError as e:
            raise e.located(file=str(path), line=raw.line) from None
        meta = {**sample.meta, "line": raw.line, "expects_call": True}
        out.append(replace(sample, gold="", ground_truth=None, meta=meta))
    return out


Entry = Sample | MultiTurnEntry
"""What a part holds: samples, or BFCL multi-turn entries (:data:`MULTI_TURN_PARTS`)."""


def load_parts(
    parts: Mapping[str, int | None], *, how: str = "first", seed: int = 0
) -> dict[str, list[Any]]:
    """The entries of each part (``limit`` of each, as ``how`` says: its first ones or a
    seeded draw over the whole part, :func:`~itool_ray.datasets.draw`), loaded by the
    project's loaders: :class:`Sample` lists, :class:`MultiTurnEntry` lists for the
    multi-turn parts. A malformed record raises (an evaluation set is never silently
    shortened)."""
    from itool_ray.datasets import draw, load_named
    from itool_ray.envs import load_multi_turn

    out: dict[str, list[Any]] = {}
    seal: list[Sample] | None = None
    for part, limit in parts.items():
        if is_multi_turn(part):
            entries = load_multi_turn(part.split("/", 1)[1])
            out[part] = draw(entries, limit, how=how, seed=seed)
        elif part == "bfcl/live_relevance":
            out[part] = draw(load_bfcl_relevance(None), limit, how=how, seed=seed)
        elif part.startswith("seal-tools/"):
            if seal is None:
                seal = load_named(f"seal-tools/{SEAL_SPLIT}", on_error="raise")
            level = part.split("/", 1)[1]
            out[part] = draw([s for s in seal if seal_level(s) == level], limit, how=how, seed=seed)
        elif part in PARTS:
            out[part] = load_named(part, limit=limit, on_error="raise", how=how, seed=seed)
        else:
            raise ValueError(f"unknown part {part!r}; known: {PARTS}")
    return out


# ---- judging one response ------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One response judged.

    Attributes:
        response: the model output; ``None`` when the prompt did not fit (wrong).
        called: the output decoded into at least one call.
        parse_error: set when the output began a call list but is not a valid one.
        partial: share of gold calls matched (1.0 / 0.0 where only all-or-nothing exists).
        error: why it is wrong (``None`` when correct).
        multi_turn: multi-turn parts only: the run (``outputs`` per turn, ``stopped``,
            ``queries``, ``calls``) and BFCL's verdict (``error_type``, ``turn``,
            ``details``, ``undecoded`` steps); ``response`` is then the outputs as JSON.
    """

    sample_id: str
    response: str | None
    correct: bool
    called: bool = False
    parse_error: str | None = None
    partial: float = 0.0
    error: str | None = None
    multi_turn: dict[str, Any] | None = None


AstChecker = Callable[..., dict[str, Any]]


@cache
def official_ast_checker() -> AstChecker:
    """BFCL's ``ast_checker`` from the installed ``nvidia-bfcl`` package."""
    try:
        from bfcl.eval_checker.ast_eval.ast_checker import ast_checker
    except ImportError as e:
        raise RuntimeError(
            "BFCL scoring needs the official checker: pip install --no-deps nvidia-bfcl==26.3"
        ) from e
    return ast_checker


def bfcl_prompt_text(response: str) -> str:
    """The text BFCL decodes for a prompting model (``default_decode_ast_prompting`` in
    ``bfcl/model_handler/utils.py``): code-fence backticks, newlines and spaces stripped from
    both ends, then ``[`` / ``]`` added where missing, so ``f(a=1)`` counts as a call."""
    text = response.strip("`\n ")
    if not text.startswith("["):
        text = "[" + text
    if not text.endswith("]"):
        text = text + "]"
    return text


def _decode(response: str) -> tuple[list[Call] | None, str | None]:
    try:
        return parse_calls(response), None
    except CallParseError as e:
        return None, f"{e.reason} at offset {e.position}"


def _bfcl_ast(sample: Sample, category: str, calls: list[Call], checker: AstChecker) -> str | None:
    """BFCL's verdict on decoded calls: ``None`` if valid, else its error."""
    if sample.ground_truth is None:
        raise ValueError(f"BFCL sample {sample.id!r}: ground_truth is missing")
    try:
        result = checker(
            copy.deepcopy(list(sample.tools)),
            [c.to_bfcl() for c in calls],
            copy.deepcopy(sample.ground_truth),
            "Python",
            category,
            BFCL_MODEL_NAME,
        )
    except Exception as e:  # the checker crashes on a few malformed outputs: a wrong answer
        return f"BFCL checker raised {type(e).__name__}: {e}"
    if result.get("valid"):
        return None
    return "; ".join(str(x) for x in result.get("error", [])) or "rejected by BFCL"


def judge(
    part: str, sample: Sample, response: str | None, checker: AstChecker | None = None
) -> Verdict:
    """Judge ``response`` for ``sample`` by the rules of ``part`` (module docstring)."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known: {PARTS}")
    if is_multi_turn(part):
        raise ValueError(f"part {part!r} is multi-turn: judge it with judge_multi_turn")
    if response is None:
        return Verdict(sample.id, None, False, error="prompt longer than the context: not asked")
    source, name = part.split("/", 1)
    calls, parse_error = _decode(bfcl_prompt_text(response) if source == "bfcl" else response)
    called = bool(calls)
    base = Verdict(sample.id, response, False, called, parse_error)
    if source == "bfcl" and name in BFCL_NO_CALL + BFCL_CALL:
        ok = called == (name in BFCL_CALL)
        why = "expected a call, got none" if name in BFCL_CALL else "expected no call"
        return replace(base, correct=ok, partial=float(ok), error=None if ok else why)
    if parse_error is not None:
        return replace(base, error=f"unparsable output: {parse_error}")
    if source == "bfcl":
        if calls is None:
            return replace(base, error="text answer, no call")
        error = _bfcl_ast(sample, name, calls, checker or official_ast_checker())
        return replace(base, correct=error is None, partial=float(error is None), error=error)
    tools = list(sample.tools) if source == "seal-tools" else None
    result = check_calls(calls, gold_ground_truth(sample), tools)
    error = None if result.correct else "; ".join(result.errors)
    return replace(base, correct=result.correct, partial=result.partial, error=error)


# ---- one part's result ---------------------------------------------------------------------


@dataclass(frozen=True)
class PartResult(Counts):
    """Counts for one part. ``no_call``: outputs that decoded into no call (text or ``[]``);
    ``parse_errors``: outputs that are broken call lists; ``skipped``: prompts that did not
    fit. All three are inside ``n``."""

    no_call: int = 0
    wrong_examples: tuple[dict[str, Any], ...] = ()


def _skipped(v: Verdict) -> bool:
    """A prompt of this entry did not fit the context (multi-turn: at some step)."""
    return v.response is None or (v.multi_turn or {}).get("stopped") == "context"


def summarize_part(name: str, verdicts: Sequence[Verdict], keep: int = 3) -> PartResult:
    wrong = [v for v in verdicts if not v.correct]
    answered = [v for v in verdicts if not _skipped(v)]
    return PartResult(
        name=name,
        n=len(verdicts),
        correct=len(verdicts) - len(wrong),
        parse_errors=sum(v.parse_error is not None for v in verdicts),
        no_call=sum(not v.called and v.parse_error is None for v in answered),
        skipped=len(verdicts) - len(answered),
        mean_partial=sum(v.partial for v in verdicts) / len(verdicts) if verdicts else 0.0,
        wrong_examples=tuple(
            {
                "id": v.sample_id,
                "response": (v.response or "")[:300],
                "error": (v.error or "")[:300],
            }
            for v in wrong[:keep]
        ),
    )


def score_part(
    name: str,
    samples: Sequence[Sample],
    responses: Sequence[str | None],
    checker: AstChecker | None = None,
) -> tuple[PartResult, list[Verdict]]:
    """Judge every response of one part (same order as ``samples``)."""
    if len(samples) != len(responses):
        raise ValueError(f"part {name!r}: {len(responses)} responses for {len(samples)} samples")
    verdicts = [judge(name, s, r, checker) for s, r in zip(samples, responses, strict=True)]
    return summarize_part(name, verdicts), verdicts


# ---- multi-turn parts ----------------------------------------------------------------------

_NOT_PARSE_ERRORS = frozenset({None, "prose", "empty", "not a string"})


def judge_multi_turn(entry: MultiTurnEntry, run: MultiTurnRun) -> Verdict:
    """BFCL's multi-turn verdict on one decoded entry (:func:`itool_ray.envs.score_entry`).

    ``called``: some step executed calls; ``parse_error``: the first step that began a call
    list but is not a valid one; ``partial``: the share of turns passed before the first
    wrong one. Never raises on any run of this entry.
    """
    if run.entry_id != entry.id:
        raise ValueError(f"run of {run.entry_id!r} judged against entry {entry.id!r}")
    verdict = score_entry(entry, run.outputs)
    reasons = (decode_step(text)[1] for turn in run.outputs for text in turn)
    parse_error = next((r for r in reasons if r not in _NOT_PARSE_ERRORS), None)
    if verdict.valid:
        partial, error = 1.0, None
    else:
        partial = verdict.turn / entry.num_turns if verdict.turn is not None else 0.0
        where = f" at turn {verdict.turn}" if verdict.turn is not None else ""
        error = f"{verdict.error_type}{where}: {verdict.error_message}"
        if run.stopped is not None:
            error = f"stopped ({run.stopped}); {error}"
    return Verdict(
        sample_id=entry.id,
        response=json.dumps([list(t) for t in run.outputs], ensure_ascii=False),
        correct=verdict.valid,
        called=run.calls > 0,
        parse_error=parse_error,
        partial=partial,
        error=error,
        multi_turn={**run.to_json(), **verdict.to_json()},
    )


def score_multi_turn_part(
    name: str, entries: Sequence[MultiTurnEntry], runs: Sequence[MultiTurnRun]
) -> tuple[PartResult, list[Verdict]]:
    """Judge every run of one multi-turn part (same order as ``entries``)."""
    if len(entries) != len(runs):
        raise ValueError(f"part {name!r}: {len(runs)} runs for {len(entries)} entries")
    verdicts = [judge_multi_turn(e, r) for e, r in zip(entries, runs, strict=True)]
    return summarize_part(name, verdicts), verdicts


def oracle_response(part: str, sample: Sample) -> str:
    """The gold answer of a single-turn entry: its gold call list (BFCL: the first allowed
    value of each argument) or text. ``bfcl/live_relevance`` has no gold (any call is
    right): one call of the entry's first function, without arguments."""
    if part == "bfcl/live_relevance":
        return render_calls([Call(sample.tools[0]["name"], {})])
    return sample.gold
