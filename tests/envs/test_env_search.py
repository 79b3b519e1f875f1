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


def test_graded_multi_turn_outcome_credits_turns_and_matched_calls():
    """``outcome="graded"``, values derived by hand on multi_turn_base_0 (4 turns; turn 0's
    gold: cd(document), mkdir(temp), mv(final_report.pdf -> temp)): scale 0.5 times the turns
    done over 4, a turn's share being its gold calls matched by name and result over the
    gold's calls or the turn's calls, whichever is more."""
    entry = load_multi_turn("multi_turn_base")[0]
    env = MultiTurnEnv(outcome="graded")
    gold = [m for turn in oracle_outputs(entry) for m in (*turn, "Done.")]
    cd, mkdir = 'cd(folder="document")', 'mkdir(dir_name="temp")'

    def o(steps):
        return env.outcome(entry, steps, env.terminal(entry, steps, True))

    assert o([]) == 0.0
    assert o([f"[{cd}]"]) == 0.5 * (1 / 3) / 4  # one of turn 0's three calls, mid-turn
    assert o([f"[{cd}, {mkdir}]"]) == 0.5 * (2 / 3) / 4
    assert o([f"[{cd}]", f"[{mkdir}]"]) == 0.5 * (2 / 3) / 4  # over two messages alike
    assert o(['[cd(folder="nowhere")]']) == 0.0  # an error result matches no gold call
    assert o(gold[:2]) == 0.5 * 1 / 4  # turn 0 passed, turn 1 not begun
    # turn 0 passed, turn 1 answered with text: it fails with nothing matched
    assert o([*gold[:2], "No."]) == 0.5 * 1 / 4
    assert o([*gold[:2], "No.", "No.", "No."]) == 0.5 * 1 / 4 and env.terminal(
        entry, [*gold[:2], "No.", "No.", "No."], True
    )
    assert o(gold) == 1.0  # BFCL accepts the entry
    # every gold call of turn 0 plus an extra one: the turn fails BFCL's state check, its
    # share is 3 of the turn's 4 calls
    extra = gold[0][:-1] + ', touch(file_name="extra.txt")]'
    assert o([extra, "Done."]) == 0.5 * (3 / 4) / 4
    # the exact O of the same paths: 0 until a turn passes
    exact = MultiTurnEnv()
    assert exact.outcome(entry, [f"[{cd}, {mkdir}]"], False) == 0.0
    assert exact.outcome(entry, [extra, "Done."], False) == 0.0


def test_graded_multi_turn_search_ranks_siblings_the_exact_outcome_ties():
    """A policy that never finishes an entry: with the exact O every terminal is 0; graded,
    the sibling that made a right call has the higher Q, and the pair says so."""
    entry = load_multi_turn("multi_turn_base")[0]
    first = 'cd(folder="document")'

    class OneRightCall:
        """A FAKE engine: at the first step a right call or a wrong one; then text."""

        def expand(self, requests):
            out = []
            for r in requests:
                if len(r.messages) == 1:
                    out.append([Step(f"[{first}]", (1,), -1.0), Step("[ls(a=False)]", (2,), -1.0)])
                else:
                    out.append([Step("No.", (3,), -1.0), Step("Sorry.", (4,), -1.0)])
            return out

        def evaluate(self, requests):
            return [0.5] * len(requests)

    cfg = MCTSConfig(simulations=4, k=2, max_depth=3, w_confidence=0.0, max_inflight=1)
    exact = search([entry], OneRightCall(), cfg, env=MultiTurnEnv())
    graded = search([entry], OneRightCall(), cfg, env=MultiTurnEnv(outcome="graded"))
    t = exact.trees[0]
    assert all((t.outcome(x) or 0.0) == 0.0 for x in range(len(t)))
    top = [p for p in graded.pairs if p.prompt_messages == tuple(dict(m) for m in entry.turns[0])]
    assert top and top[0].chosen == f"[{first}]" and top[0].chosen_q > top[0].rejected_q


def test_environment_for_picks_the_task_from_the_samples():
    import pytest

    from itool_ray.envs.registry import environment_for

    entries = load_multi_turn("multi_turn_base")[:2]
    env = environment_for(entries, "graded")
    assert isinstance(env, MultiTurnEnv) and env.outcome_mode == "graded"
    assert environment_for(entries).outcome_mode == "exact"
    assert environment_for(_real_samples(2), "graded") is None  # the single-turn fast path
    with pytest.raises(ValueError, match="mix"):
        environment_for([*entries, *_real_samples(1)])
    with pytest.raises(ValueError, match="outcome"):
        MultiTurnEnv(outcome="fuzzy")
