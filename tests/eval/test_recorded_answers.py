"""A stopped evaluation decodes again only what it had not finished (eval.generate.recorded)."""

from __future__ import annotations

import pytest

from itool_ray.data import Sample
from itool_ray.eval.generate import recorded, request_key


def _sample(i: int, sid: str | None = None) -> Sample:
    msgs = ({"role": "user", "content": f"question {i}"},)
    return Sample(id=sid or f"s{i}", tools=(), messages=msgs, gold=f"[f(x={i})]")


def test_answers_recorded_before_a_stop_are_not_decoded_again(tmp_path):
    path = tmp_path / "answers.partial.jsonl"
    asked: list[str] = []

    def respond(samples):
        asked.extend(s.id for s in samples)
        if any(s.id == "s5" for s in samples):
            raise KeyboardInterrupt  # the run stops during the second chunk
        return [None if s.id == "s1" else f"answer {s.id}" for s in samples]

    samples = [_sample(i) for i in range(8)]
    first = recorded(respond, path)
    assert first(samples[:4]) == [None if i == 1 else f"answer s{i}" for i in range(4)]
    with pytest.raises(KeyboardInterrupt):
        first(samples[4:])
    with path.open("a") as f:
        f.write('{"key": "torn')  # a stop mid-write

    asked.clear()

    def respond_again(samples):
        asked.extend(s.id for s in samples)
        return [f"again {s.id}" for s in samples]

    again = recorded(respond_again, path)
    got = again(samples)
    assert asked == [f"s{i}" for i in range(4, 8)]  # only the unfinished chunk
    assert got[:4] == [None if i == 1 else f"answer s{i}" for i in range(4)]  # None is kept
    assert got[4:] == [f"again s{i}" for i in range(4, 8)]


def test_the_key_is_the_prompt_not_the_id_or_gold():
    a, b = _sample(1, "x"), _sample(1, "y")
    assert request_key(a) == request_key(b)
    assert request_key(a) != request_key(_sample(2, "x"))
    tools = Sample(id="x", tools=({"name": "f", "parameters": {}},), messages=a.messages, gold="")
    assert request_key(tools) != request_key(a)


def test_a_stopped_multi_turn_evaluation_replays_its_recorded_steps(tmp_path):
    """The multi-turn loop resumed over recorded steps (executing the tools again) reaches the
    same conversations, asks the engine only for the steps it had not finished, and ends
    with the uninterrupted run's verdicts."""
    from itool_ray.envs import load_multi_turn
    from itool_ray.eval.generate import score_multi_turn_sets
    from itool_ray.eval.multi_turn import oracle_chat_responder

    entries = load_multi_turn("multi_turn_base")[:3]
    sets = {"bfcl/multi_turn_base": entries}
    gold = oracle_chat_responder(entries)
    path = tmp_path / "turns.partial.jsonl"
    calls = {"n": 0}

    def stops_in_round_3(prompts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return gold(prompts)

    with pytest.raises(KeyboardInterrupt):
        score_multi_turn_sets(sets, recorded(stops_in_round_3, path))
    kept = len(path.read_text().splitlines())
    assert kept > 0

    asked = []

    def counting(prompts):
        asked.extend(prompts)
        return gold(prompts)

    resumed = score_multi_turn_sets(sets, recorded(counting, path))
    everything: list = []
    full = score_multi_turn_sets(sets, lambda ps: everything.extend(ps) or gold(ps))
    assert len(asked) == len(everything) - kept  # only the unfinished steps
    assert [(s.name, s.accuracy, s.n) for s in resumed] == [(s.name, s.accuracy, s.n) for s in full]
    assert resumed[0].accuracy == 1.0  # the gold, replayed and decoded, is right on all 3
