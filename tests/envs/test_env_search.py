"""The search over an injected environment: the single-turn environment reproduces the
default search exactly; the multi-turn environment replays paths (executed calls answered by
tool messages, user turns advancing), scores terminals with BFCL's verdict, and keeps memory
bounded."""

from __future__ import annotations

from collections.abc import Sequence

from itool_ray.envs import load_multi_turn, oracle_outputs
from itool_ray.envs.multi_turn import MultiTurnEnv
from itool_ray.envs.single_turn import SingleTurnCalls
from itool_ray.mcts import CallsOutcome, FakeEngine, MCTSConfig, search
from itool_ray.mcts.core import EvalRequest, ExpandRequest
from itool_ray.mcts.step import Step
from itool_ray.mcts.testing import check_tree


def _real_samples(n):
    from itool_ray.datasets import load_named

    return load_named("synth", limit=n, seed=3)


def test_single_turn_environment_equals_the_default_search():
    samples = _real_samples(6)
    cfg = MCTSConfig(simulations=6, k=3, max_depth=5)
    plain = search(samples, FakeEngine(seed=2), cfg, reward_fn=CallsOutcome())
    env = search(samples, FakeEngine(seed=2), cfg, env=SingleTurnCalls())
    assert [t.to_dict() for t in env.trees] == [t.to_dict() for t in plain.trees]
    assert [p.to_dict() for p in env.pairs] == [p.to_dict() for p in plain.pairs]


class GoldOrNot:
    """A FAKE engine for multi-turn entries: at each point it offers the gold message of the
    current turn (its calls, then a closing text) and a wrong text answer."""

    def __init__(self, entries):
        self.gold = {e.id: oracle_outputs(e) for e in entries}
        self.requests: list[ExpandRequest] = []

    def expand(self, requests: Sequence[ExpandRequest]):
        out = []
        for r in requests:
            self.requests.append(r)
            assert r.unit == "message" and r.prefix == "" and r.prefix_ids == ()
            turn = sum(m["role"] == "user" for m in r.messages) - 1
            since = 0
            for m in reversed(r.messages):
                if m["role"] == "user":
                    break
                since += m["role"] == "assistant"
            gold = self.gold[r.tree_id][turn]
            right = gold[since] if since < len(gold) else "Done."
            out.append([Step(right, (1, 2), -1.0, False), Step("I cannot do that.", (3,), -1.0)])
        return out

    def evaluate(self, requests: Sequence[EvalRequest]):
        return [0.5] * len(requests)


def test_multi_turn_search_finds_the_gold_path_and_pairs_carry_the_conversation():
    entries = [e for e in load_multi_turn("multi_turn_base")[:3]]
    env = MultiTurnEnv(cache_worlds=32)
    engine = GoldOrNot(entries)
    cfg = MCTSConfig(simulations=12, k=2, max_depth=12, w_confidence=0.0, max_inflight=1)
    res = search(entries, engine, cfg, env=env)
    for t, entry in zip(res.trees, entries, strict=True):
        check_tree(t)
        best = max(t.outcome(x) or 0.0 for x in range(len(t)) if t.terminal(x))
        assert best == 1.0, f"{entry.id}: the gold path was not found"
        # a wrong answer at the first turn fails it: every terminal below it scores 0
        assert min(t.outcome(x) for x in range(len(t)) if t.terminal(x)) == 0.0
    assert env.cached <= 32
    # later requests carry executed calls' results as tool messages and the next user turn
    deep = [r for r in engine.requests if any(m["role"] == "tool" for m in r.messages)]
    assert deep and all(r.messages[0]["role"] == "user" for r in deep)
    assert any(sum(m["role"] == "user" for m in r.messages) > 1 for r in deep)
    pairs = res.pairs
    assert pairs and all(p.prefix == "" and p.prefix_token_ids == () for p in pairs)
    assert any(any(m["role"] == "tool" for m in p.prompt_messages) for p in pairs)
    assert all(p.chosen_q > p.rejected_q for p in pairs)


def test_multi_turn_outcome_terms():
    entry = load_multi_turn("multi_turn_base")[0]
    env = MultiTurnEnv()
    gold = [m for turn in oracle_outputs(entry) for m in (*turn, "Done.")]
    assert env.outcome(entry, [], False) == 0.0
    assert env.outcome(entry, gold[:2], False) == 1 / entry.num_turns  # one turn right
    assert not env.terminal(entry, gold[:-1], True) and env.terminal(entry, gold, False)
    assert env.outcome(entry, gold, True) == 1.0
    wrong = ["No.", *gold[2:]]  # turn 0 answered with text: failed for good
    assert env.outcome(entry, wrong[:3], False) == 0.0
    d = env.dialogue(entry, gold[:1])
    assert [m["role"] for m in d.messages][:2] == ["user", "assistant"]
    assert d.messages[2]["role"] == "tool" and d.turn == 0 and not d.done


def test_the_search_sees_the_prompts_the_benchmark_asks():
    """The environment plays the evaluation loop's own dialogue: same messages and tools at
    every step of the gold path, for entries that reveal withheld functions too."""
    from itool_ray.envs.steps import gold_path
    from itool_ray.eval.multi_turn import run_multi_turn

    entries = [load_multi_turn("multi_turn_miss_func")[0], load_multi_turn("multi_turn_base")[2]]
    env = MultiTurnEnv()
    for entry in entries:
        path = gold_path(entry)
        seen = []

        def respond(prompts, path=path, seen=seen):
            seen.extend(prompts)
            return [path[len(seen) - 1]]

        (run,) = run_multi_turn([entry], respond)
        assert run.stopped is None and len(seen) == len(path)
        for i, p in enumerate(seen):
            mine = env.prompt(entry, path[:i])
            assert mine.messages == p.messages and mine.tools == tuple(p.tools)
        assert env.terminal(entry, path, True) and env.outcome(entry, path, True) == 1.0


def test_bfcl_step_limit_force_quits_the_episode():
    entry = load_multi_turn("multi_turn_base")[0]
    env = MultiTurnEnv(max_steps_per_turn=3)
    calls = ["[ls(a=False)]"] * 4  # four call messages in turn 0: past the limit of 3
    assert not env.terminal(entry, calls[:3], False)
    assert env.terminal(entry, calls, False) and env.outcome(entry, calls, True) == 0.0


def test_an_entry_as_step_samples_replays_the_gold():
    from itool_ray.envs.steps import TURN_CLOSE, gold_path, step_samples

    entry = load_multi_turn("multi_turn_base")[1]
    env = MultiTurnEnv()
    path = gold_path(entry)
    assert env.terminal(entry, path, True) and env.outcome(entry, path, True) == 1.0
    samples = step_samples(entry, env)
    assert [s.gold for s in samples] == path and TURN_CLOSE in path
    assert samples[0].messages == tuple(dict(m) for m in entry.turns[0])
    # the second message sees the first one's executed calls as tool results
    roles = [m["role"] for m in samples[1].messages]
    assert roles[:2] == ["user", "assistant"] and "tool" in roles
    assert len({s.id for s in samples}) == len(samples)
