"""BFCL's multi-turn verdict for one entry, on the safe executor (model output is never eval'd).

:func:`score_entry` follows BFCL's ``multi_turn_runner`` + ``multi_turn_checker``
(``bfcl/eval_checker/``) step for step, with :class:`~itool_ray.envs.bfcl_exec.World` in place
of ``execute_multi_turn_func_call`` for both the model's calls and the gold's, and BFCL's own
``state_checker`` and ``response_checker`` applied to the instances built here:

1. ``outputs`` is one list per user turn of the assistant's messages (steps) in that turn.
   Not a list of lists: ``multi_turn:inference_error``; another number of turns than the
   gold (BFCL's handler stopped early): ``multi_turn:force_terminated``.
2. Each step is decoded with ``parse_calls``; prose, ``[]`` and a text that does not parse
   are *skipped*, as BFCL's runner skips a step its decoder rejects (a turn normally ends
   with such a text message). A turn whose gold has calls and whose steps all decode to
   nothing is wrong (``multi_turn:empty_turn_model_response``), never an exception. The
   decoding is the project's ToolACE syntax, strict: BFCL's prompting decoder also strips
   backticks and adds missing brackets, this one reads ``f(a=1)`` without ``[...]`` as prose.
   The step count per turn is not bounded here (BFCL's handler stops a turn after
   :data:`MAX_STEPS_PER_TURN` steps while generating, not while scoring).
3. Per turn: every decoded step is executed on the model's world, then the turn's gold on
   the gold world. A turn with no gold calls (miss_param / miss_func: the model should ask
   or refuse) is not checked, though the model's calls in it are executed. Otherwise the
   public attributes of every instance must be equal (``multi_turn:instance_state_mismatch``)
   and the gold's results must all be among the model's results of all turns so far, in
   any order (``multi_turn:execution_response_mismatch``).

BFCL's runner has the irrelevance check (no call in a turn without gold calls) and the call
order check commented out, so the verdict leaves them out too; ``check_irrelevance=True``
applies BFCL's ``multi_turn_irrelevance_checker`` after the main check.

:func:`oracle_outputs` answers an entry with its gold; :func:`gold_defects` says why a gold
cannot be answered at all (a few ``multi_turn_composite`` gold calls are not valid Python:
BFCL's decoder rejects them too, and their gold result is the ``SyntaxError`` text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bfcl.eval_checker.multi_turn_eval.multi_turn_checker import (
    multi_turn_irrelevance_checker,
    response_checker,
    state_checker,
)

from itool_ray.calls import Call, CallParseError, parse_calls, render_calls
from itool_ray.envs.bfcl_data import MultiTurnEntry
from itool_ray.envs.bfcl_exec import GoldCallError, World, gold_calls

MAX_STEPS_PER_TURN = 20
"""BFCL's ``MAXIMUM_STEP_LIMIT``: its handler force-quits a turn after this many steps."""

NO_CALL_TEXT = "I cannot do this with the functions and information I have."
"""The oracle's answer to a turn without gold calls (any text without calls would do)."""

_CLIP = 300


@dataclass(frozen=True)
class Undecoded:
    """A step that contributed no call: ``reason`` is ``prose``, ``empty``, ``not a string``
    or the parse error."""

    turn: int
    step: int
    reason: str


@dataclass(frozen=True)
class MultiTurnVerdict:
    """BFCL's verdict on one entry.

    Attributes:
        entry_id: the entry.
        valid: BFCL's ``valid``.
        error_type: BFCL's ``error_type`` (``multi_turn:instance_state_mismatch``, ...) or None.
        error_message: BFCL's ``error_message`` or None.
        turn: the turn that failed, or None.
        details: a JSON-ready summary (differing attribute names, missing results, clipped).
        undecoded: the steps that contributed no call.
    """

    entry_id: str
    valid: bool
    error_type: str | None = None
    error_message: str | None = None
    turn: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    undecoded: tuple[Undecoded, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.entry_id,
            "valid": self.valid,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "turn": self.turn,
            "details": dict(self.details),
            "undecoded": [[u.turn, u.step, u.reason] for u in self.undecoded],
        }


def decode_step(text: Any) -> tuple[list[Call] | None, str | None]:
    """``(calls, None)`` for a non-empty call list, else ``(None, why it has no calls)``."""
    if not isinstance(text, str):
        return None, "not a string"
    try:
        calls = parse_calls(text)
    except CallParseError as exc:
        return None, _clip(f"{exc.reason}: {exc}")
    if calls is None:
        return None, "prose"
    if not calls:
        return None, "empty"
    return calls, None


def score_entry(
    entry: MultiTurnEntry, outputs: Any, *, check_irrelevance: bool = False
) -> MultiTurnVerdict:
    """BFCL's multi-turn verdict for the model's ``outputs`` on ``entry`` (see the module
    docstring); never raises on any ``outputs``."""
    shape = _shape_error(entry, outputs)
    if shape is not None:
        return shape
    model, gold = World.from_entry(entry), World.from_entry(entry)
    model_results: list[str] = []
    decoded_turns: list[list[list[Call]]] = []
    undecoded: list[Undecoded] = []
    for turn, gold_texts in enumerate(entry.gold):
        steps = _decode_turn(turn, outputs[turn], undecoded)
        decoded_turns.append(steps)
        for calls in steps:
            model_results.extend(model.execute(calls))
        gold_results = gold.execute_gold(gold_texts)
        failure = _check_turn(entry, turn, steps, model, gold, model_results, gold_results)
        if failure is not None:
            return _verdict(entry, failure, turn, undecoded)
    if check_irrelevance:
        irrelevance = multi_turn_irrelevance_checker(decoded_turns, [list(g) for g in entry.gold])
        if not irrelevance["valid"]:
            turn = _failed_turn(entry, decoded_turns)
            return _verdict(entry, irrelevance, turn, undecoded)
    return MultiTurnVerdict(entry.id, True, undecoded=tuple(undecoded))


def turn_progress(entry: MultiTurnEntry, outputs: Sequence[Sequence[Any]], finished: int) -> float:
    """How far ``outputs`` (the assistant's messages of the first ``len(outputs)`` turns, the
    first ``finished`` of them ended) got: the turns that pass BFCL's checks
    (:func:`score_entry`'s, turn by turn) before the first that does not, plus that turn's
    share of gold calls matched, in ``[0, len(outputs)]``.

    A gold call is matched by a call of the same turn with the same function name and the
    same result (each model call matches at most one gold call); the share is the matches
    over the gold's calls or the turn's calls, whichever is more (an extra call costs as a
    missing one), so right functions earn credit before the whole turn is right; a turn
    without gold calls passes once it has ended (BFCL does not check it). The turn still
    being played (``finished < len(outputs)``) only earns its share. Never raises on any
    string outputs.
    """
    model, gold = World.from_entry(entry), World.from_entry(entry)
    model_results: list[str] = []
    done = 0.0
    for turn, texts in enumerate(outputs[: entry.num_turns]):
        made: list[tuple[str, str]] = []
        steps = _decode_turn(turn, texts, [])
        for calls in steps:
            results = model.execute(calls)
            model_results.extend(results)
            made.extend((c.name, r) for c, r in zip(calls, results, strict=True))
        gold_texts = entry.gold[turn]
        gold_results = gold.execute_gold(gold_texts)
        if turn < finished and (
            _check_turn(entry, turn, steps, model, gold, model_results, gold_results) is None
        ):
            done += 1.0
            continue
        if not gold_texts:
            return done
        wanted = [(_gold_name(t), r) for t, r in zip(gold_texts, gold_results, strict=True)]
        tried, matched = len(made), 0
        for item in wanted:
            if item in made:
                made.remove(item)
                matched += 1
        return done + matched / max(len(wanted), tried)
    return done


def _gold_name(text: str) -> str:
    return text.split("(", 1)[0].strip()


def _shape_error(entry: MultiTurnEntry, outputs: Any) -> MultiTurnVerdict | None:
    is_list = isinstance(outputs, Sequence) and not isinstance(outputs, str | bytes)
    turns_ok = is_list and all(
        isinstance(t, Sequence) and not isinstance(t, str | bytes) for t in outputs
    )
    if not turns_ok:
        message = "Error during inference phase. Model did not output a list of model responses."
        return MultiTurnVerdict(entry.id, False, "multi_turn:inference_error", message)
    if len(outputs) != entry.num_turns:
        message = (
            "Model was force-terminated during inference phase. The length of the model "
            f"result turns ({len(outputs)}) does not match the length of the ground truth "
            f"turns ({entry.num_turns})."
        )
        return MultiTurnVerdict(entry.id, False, "multi_turn:force_terminated", message)
    return None


def _decode_turn(turn: int, texts: Sequence[Any], undecoded: list[Undecoded]) -> list[list[Call]]:
    steps = []
    for step, text in enumerate(texts):
        calls, why = decode_step(text)
        if calls is None:
            undecoded.append(Undecoded(turn, step, why or ""))
        else:
            steps.append(calls)
    return steps


def _check_turn(
    entry: MultiTurnEntry,
    turn: int,
    steps: list[list[Call]],
    model: World,
    gold: World,
    model_results: list[str],
    gold_results: list[str],
) -> dict[str, Any] | None:
    """BFCL's per-turn checks; the failing check's result dict, or None."""
    if not entry.gold[turn]:
        return None
    if not steps:
        return {
            "valid": False,
            "error_message": f"Model response list is empty for turn {turn}",
            "error_type": "multi_turn:empty_turn_model_response",
        }
    state = state_checker(model.instances, gold.instances)
    if not state["valid"]:
        return state
    response = response_checker(model_results, gold_results, turn)
    return None if response["valid"] else response


def _failed_turn(entry: MultiTurnEntry, decoded_turns: list[list[list[Call]]]) -> int | None:
    for turn, steps in enumerate(decoded_turns):
        if not entry.gold[turn] and steps:
            return turn
    return None


def _verdict(
    entry: MultiTurnEntry, result: Mapping[str, Any], turn: int | None, undecoded: list[Undecoded]
) -> MultiTurnVerdict:
    return MultiTurnVerdict(
        entry.id,
        False,
        result.get("error_type"),
        result.get("error_message"),
        turn,
        _summary(result.get("details") or {}),
        tuple(undecoded),
    )


def _summary(details: Mapping[str, Any]) -> dict[str, Any]:
    """BFCL's details made small and JSON-ready (its instance dumps are dropped)."""
    out: dict[str, Any] = {}
    if "differences" in details:
        out["differing_attributes"] = sorted(details["differences"])
    if "missing_items" in details:
        out["missing_results"] = [_clip(str(m)) for m in details["missing_items"]]
    return out


def _clip(text: str) -> str:
    return text if len(text) <= _CLIP else text[:_CLIP] + "..."


def oracle_outputs(entry: MultiTurnEntry) -> list[list[str]]:
    """The entry answered with its gold: per turn one message with the gold calls rendered
    in ToolACE syntax (keyword arguments), or :data:`NO_CALL_TEXT` for a turn without gold
    calls. A turn whose gold is not valid Python is answered with the gold as written (it
    does not parse, as BFCL's decoder does not decode it)."""
    outputs = []
    for turn, texts in enumerate(entry.gold):
        if not texts:
            outputs.append([NO_CALL_TEXT])
            continue
        try:
            outputs.append([render_calls(gold_calls(entry, turn))])
        except (SyntaxError, GoldCallError):
            outputs.append(["[" + ", ".join(texts) + "]"])
    return outputs


def gold_defects(entry: MultiTurnEntry) -> list[str]:
    """Why the gold of ``entry`` cannot be answered by any model: its calls that are not
    valid Python or not literal-only calls, one message each (empty when it can)."""
    defects = []
    for turn in range(entry.num_turns):
        try:
            gold_calls(entry, turn)
        except (SyntaxError, GoldCallError) as exc:
            defects.append(str(exc))
    return defects
