"""The multi-turn scorer: the oracle scores 100% wherever BFCL's gold can be answered, the
verdicts agree with BFCL's own ``multi_turn_checker`` (run on trusted, gold-derived strings),
and no model output makes it raise."""

from __future__ import annotations

import json
from collections import Counter

from bfcl.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker

from itool_ray.calls import Call, render_calls
from itool_ray.envs import (
    MULTI_TURN_CATEGORIES,
    NO_CALL_TEXT,
    gold_calls,
    gold_defects,
    oracle_outputs,
    score_entry,
)
from tests.envs.bfcl_helpers import SYNTAX_ERROR_GOLD, bfcl_text, clear_bfcl_instances, new_tag


def _bfcl_verdict(entry, steps_per_turn: list[list[list[str]]]) -> tuple[bool, str | None]:
    """BFCL's own checker on already decoded steps (what its decoder would hand it)."""
    tag = new_tag()
    test_entry = {
        "id": entry.id,
        "initial_config": entry.initial_config,
        "involved_classes": list(entry.involved_classes),
    }
    gold = [list(g) for g in entry.gold]
    result = multi_turn_checker(steps_per_turn, gold, test_entry, entry.category, tag)
    clear_bfcl_instances(tag)
    return result["valid"], result.get("error_type")


def _bfcl_oracle_steps(entry) -> list[list[list[str]]]:
    """The oracle's turns as BFCL decodes them: a turn whose text does not parse is skipped."""
    steps = []
    for turn in range(entry.num_turns):
        try:
            calls = gold_calls(entry, turn)
        except SyntaxError:
            calls = []
        steps.append([[bfcl_text(c) for c in calls]] if calls else [])
    return steps


def _texts(turns: list[list[Call]]) -> list[list[str]]:
    """Model outputs: each turn's calls in steps of at most 32 calls, or a sentence."""
    out = []
    for calls in turns:
        chunks = [calls[i : i + 32] for i in range(0, len(calls), 32)]
        out.append([render_calls(c) for c in chunks] or [NO_CALL_TEXT])
    return out


def _bfcl_steps(turns: list[list[Call]]) -> list[list[list[str]]]:
    return [
        [[bfcl_text(c) for c in calls[i : i + 32]] for i in range(0, len(calls), 32)]
        for calls in turns
    ]


def test_oracle_is_100_percent_and_agrees_with_bfcl_on_all_1000(all_entries, restore_class_globals):
    accuracy, disagreements, failures = {}, [], {}
    for category, entries in all_entries.items():
        valid = 0
        for entry in entries:
            verdict = score_entry(entry, oracle_outputs(entry))
            valid += verdict.valid
            if not verdict.valid:
                failures[entry.id] = verdict
            if (verdict.valid, verdict.error_type) != _bfcl_verdict(
                entry, _bfcl_oracle_steps(entry)
            ):
                disagreements.append(entry.id)
        accuracy[category] = valid / len(entries)
    assert disagreements == []
    # every gold BFCL can run is answered; the 16 composite golds that are not Python are not
    assert accuracy == {**dict.fromkeys(MULTI_TURN_CATEGORIES, 1.0), "multi_turn_composite": 0.92}
    assert set(failures) == set(SYNTAX_ERROR_GOLD)
    for entry_id, verdict in failures.items():
        assert verdict.error_type == "multi_turn:empty_turn_model_response", entry_id
        unparsed = [u.turn for u in verdict.undecoded if u.reason != "prose"]
        assert unparsed == [verdict.turn], entry_id  # the turn whose gold is not Python


def _mutations(entry) -> dict[str, list[list[Call]]]:
    calls = [gold_calls(entry, t) for t in range(entry.num_turns)]
    last = max(t for t in range(entry.num_turns) if calls[t])
    return {
        "drop the last call": [c[:-1] if t == last else c for t, c in enumerate(calls)],
        "answer the previous turn": [[], *calls[:-1]],
        "every call twice": [[x for x in c for _ in (0, 1)] for c in calls],
        "all calls at once": [[x for c in calls for x in c], *([[]] * (len(calls) - 1))],
    }


def test_wrong_answers_get_bfcl_s_verdict(all_entries, restore_class_globals):
    seen, disagreements = Counter(), []
    for entries in all_entries.values():
        for entry in entries[::5]:
            if gold_defects(entry):
                continue
            for name, turns in _mutations(entry).items():
                ours = score_entry(entry, _texts(turns))
                theirs = _bfcl_verdict(entry, _bfcl_steps(turns))
                seen[theirs] += 1
                if (ours.valid, ours.error_type) != theirs:
                    disagreements.append((entry.id, name, ours.error_type, theirs))
    assert disagreements == []
    assert {error for _, error in seen} == {
        None,
        "multi_turn:empty_turn_model_response",
        "multi_turn:instance_state_mismatch",
        "multi_turn:execution_response_mismatch",
    }
    assert sum(seen.values()) > 700


def test_outputs_of_the_wrong_shape_are_verdicts(entries_by_id):
    entry = entries_by_id["multi_turn_base_0"]
    for outputs in [None, "text", 3, [["[ls()]"], "[ls()]", [], []], [{"a": 1}] * 4]:
        verdict = score_entry(entry, outputs)
        assert (verdict.valid, verdict.error_type) == (False, "multi_turn:inference_error")
    short = score_entry(entry, oracle_outputs(entry)[:-1])
    assert (short.valid, short.error_type) == (False, "multi_turn:force_terminated")
    assert "(3)" in short.error_message and "(4)" in short.error_message


def test_output_that_does_not_parse_is_a_wrong_turn(entries_by_id):
    entry = entries_by_id["multi_turn_base_0"]
    good = oracle_outputs(entry)
    poison = [
        "[cd(folder='document')",  # never closed
        "[cd('document')]",  # positional
        "[mean(numbers=" + "[" * 100_000 + "]" * 100_000 + ")]",
        "[cd(folder=" + "9" * 5000 + ")]",
        "[__import__(name='os').system(command='true')]",
        "I moved the file.",
        "[]",
        None,
        42,
    ]
    verdict = score_entry(entry, [poison, *good[1:]])
    assert (verdict.valid, verdict.error_type, verdict.turn) == (
        False,
        "multi_turn:empty_turn_model_response",
        0,
    )
    reasons = [u.reason for u in verdict.undecoded]
    assert len(reasons) == len(poison)
    assert reasons[1].startswith("positional_argument") and reasons[5:] == [
        "prose",
        "empty",
        "not a string",
        "not a string",
    ]
    json.dumps(verdict.to_json())


def test_text_steps_around_the_calls_are_skipped_as_bfcl_does(all_entries):
    for entry in all_entries["multi_turn_base"][:40]:
        chatty = [
            ["Let me look.", *turn, "[cd(folder=)]", "Done."] for turn in oracle_outputs(entry)
        ]
        assert score_entry(entry, chatty).valid, entry.id
        one_per_step = [
            [render_calls([c]) for c in gold_calls(entry, t)] or [NO_CALL_TEXT]
            for t in range(entry.num_turns)
        ]
        assert score_entry(entry, one_per_step).valid, entry.id


def test_calls_in_a_turn_without_gold_and_the_irrelevance_option(entries_by_id):
    entry = entries_by_id["multi_turn_miss_param_0"]
    assert entry.gold[3] == ()
    outputs = oracle_outputs(entry)
    outputs[3] = ["[pwd()]"]  # a read-only call where the model should have asked
    assert score_entry(entry, outputs).valid  # BFCL's runner does not check it
    strict = score_entry(entry, outputs, check_irrelevance=True)
    assert (strict.valid, strict.error_type, strict.turn) == (
        False,
        "multi_turn:irrelevance_error:decoder_success",
        3,
    )
    assert score_entry(entry, oracle_outputs(entry), check_irrelevance=True).valid


def test_state_and_response_mismatches_are_explained(entries_by_id):
    entry = entries_by_id["multi_turn_base_0"]
    outputs = oracle_outputs(entry)
    no_mkdir = [c for c in gold_calls(entry, 0) if c.name != "mkdir"]
    state = score_entry(entry, [[render_calls(no_mkdir)], *outputs[1:]])
    assert (state.error_type, state.turn) == ("multi_turn:instance_state_mismatch", 0)
    assert state.details == {"differing_attributes": ["root"]}
    no_grep = [c for c in gold_calls(entry, 1) if c.name != "grep"]
    response = score_entry(entry, [outputs[0], [render_calls(no_grep)], *outputs[2:]])
    assert (response.error_type, response.turn) == ("multi_turn:execution_response_mismatch", 1)
    assert "budget analysis" in response.details["missing_results"][0]
    for verdict in (state, response):
        assert not verdict.valid and json.loads(json.dumps(verdict.to_json()))["id"] == entry.id
