"""Checkpoints: lossless round trip, in-flight state cleared, resume == uninterrupted."""

from __future__ import annotations

import json

import pytest

from itool_ray.mcts import (
    FakeEngine,
    MCTSConfig,
    Searcher,
    Tree,
    fake_outcome,
    make_fake_samples,
    search,
)
from itool_ray.mcts.testing import check_tree, snapshot
from itool_ray.mcts.testing import make_step as step
from itool_ray.mcts.testing import run_cycle as cycle

CFG = MCTSConfig(simulations=24, k=4, max_inflight=4, seed=3)


def _json(d):
    return json.loads(json.dumps(d))


def _state(t: Tree) -> dict:
    s = snapshot(t)
    s["depth"] = [t.depth(x) for x in range(len(t))]
    s["tokens"] = [t.token_ids(x) for x in range(len(t))]
    s["text"] = [t.text(x) for x in range(len(t))]
    s["version"] = [t.version(x) for x in range(len(t))]
    s["ntok"] = [t.tokens_so_far(x) for x in range(len(t))]
    return s


def test_round_trip_is_lossless():
    res = search(make_fake_samples(5, seed=1), FakeEngine(seed=1), CFG, reward_fn=fake_outcome)
    for t in res.trees:
        d = t.to_dict()
        assert d["parent"][:1] == [-1] and isinstance(d["tokens"], list)  # arrays, not objects
        back = Tree.from_dict(_json(d), CFG)
        assert _state(back) == _state(t)  # bit-identical N, Q, W, priors, ...
        assert back.to_dict() == d
        check_tree(back)


def test_inflight_state_is_cleared():
    t = Tree("f", MCTSConfig(max_inflight=8, rollout="one_step"))
    cycle(t, [step(f"s{i}, ") for i in range(3)], [0.1, 0.2, 0.3])
    clean = snapshot(t)
    leaves = [t.select(), t.select()]
    t.expand(leaves[0], [step("x, ")])
    back = Tree.from_dict(_json(t.to_dict()), t.config)
    assert snapshot(back) == clean  # as if both selections had been abandoned
    for leaf in leaves:
        t.abandon(leaf)
    assert snapshot(t) == clean


def test_from_dict_rejects_bad_input():
    t = Tree("g", MCTSConfig(gamma=0.9))
    cycle(t, [step("a, "), step("b, ")], [0.0, 1.0])
    d = t.to_dict()
    with pytest.raises(ValueError, match="gamma"):
        Tree.from_dict(d, MCTSConfig(gamma=0.5))
    with pytest.raises(ValueError, match="format"):
        Tree.from_dict({**d, "format": "other"}, t.config)
    with pytest.raises(ValueError, match="entries"):
        Tree.from_dict({**d, "visits": d["visits"][:-1]}, t.config)
    with pytest.raises(ValueError, match="parent"):
        Tree.from_dict({**d, "parent": [-1, 0, 5]}, t.config)


def _run_resumed(samples, rounds_first: int) -> tuple[list[dict], list[dict]]:
    first = Searcher(samples, FakeEngine(seed=2), CFG, reward_fn=fake_outcome)
    first.run(max_rounds=rounds_first)
    state = _json(first.checkpoint())
    again = Searcher.restore(state, samples, FakeEngine(seed=2), reward_fn=fake_outcome)
    res = again.run()
    return [t.to_dict() for t in res.trees], [p.to_dict() for p in res.pairs]


def test_resume_equals_uninterrupted():
    samples = make_fake_samples(12, seed=5)
    full = search(samples, FakeEngine(seed=2), CFG, reward_fn=fake_outcome)
    want = ([t.to_dict() for t in full.trees], [p.to_dict() for p in full.pairs])
    assert len(want[1]) > 0
    for rounds in (0, 1, 2, 4):  # 0: checkpoint before the roots were even evaluated
        assert _run_resumed(samples, rounds) == want


def test_resume_with_a_larger_budget_continues():
    samples = make_fake_samples(4, seed=6)
    small = search(samples, FakeEngine(), CFG, reward_fn=fake_outcome)
    assert all(t.done for t in small.trees)
    state = _json(Searcher(samples, FakeEngine(), CFG, trees=small.trees).checkpoint())
    bigger = MCTSConfig(**{**CFG.to_dict(), "simulations": 40})
    res = Searcher.restore(
        state, samples, FakeEngine(), config=bigger, reward_fn=fake_outcome
    ).run()
    for t in res.trees:
        assert t.simulations == 40 or t.exhausted
        check_tree(t)
    with pytest.raises(ValueError, match="sample ids"):
        Searcher.restore(state, samples[::-1], FakeEngine())
    with pytest.raises(ValueError, match="gamma"):
        Searcher(samples, FakeEngine(), MCTSConfig(gamma=0.5), trees=res.trees)
