"""Pair extraction on a known tree (the three-level tree of test_mcts_tree)."""

from __future__ import annotations

import json

import pytest

from itool_ray.data.sample import Sample
from itool_ray.mcts import MCTSConfig, Pair, Tree, extract_pairs
from itool_ray.mcts.testing import make_step as step
from itool_ray.mcts.testing import run_cycle as cycle

SAMPLE = Sample(
    id="three",
    tools=({"name": "f", "description": "", "parameters": {"type": "dict", "properties": {}}},),
    messages=({"role": "user", "content": "do it"},),
    gold="[f()]",
)


def known_tree(**cfg) -> Tree:
    """Q values (gamma 0.9): A 0.7826 (N 6), B -0.3 (N 1); under A: A1 0.59 (N 3), A2 -0.2,
    A3 0.0; under A1: A1a 0.5, A1b -0.3 (N 1 each). Root children from policy version 1,
    the rest from version 2."""
    t = Tree("three", MCTSConfig(rollout="one_step", gamma=0.9, c_puct=1.0, **cfg), root_reward=0.5)
    leaf = t.select()
    t.expand(leaf, [step("A, ", -0.2, 2), step("B, ", -0.5, 1)], policy_version=1)
    t.backup(leaf, [1.0, 0.2])
    t.policy_version = 2
    cycle(t, [step("A1, ", -1.0), step("A2, ", -1.0), step("A3, ", -1.0)], [1.5, 0.8, 1.0])
    cycle(t, [step("A1a]", -1.0, terminal=True), step("A1b, ", -1.0)], [2.0, 1.2])
    return t


def test_pairs_on_a_known_tree():
    t = known_tree()
    pairs = extract_pairs(t, SAMPLE)
    assert [(p.node_id, p.chosen, p.rejected) for p in pairs] == [
        (0, "A, ", "B, "),  # 0.7826 vs -0.3
        (1, "A1, ", "A2, "),  # 0.59 vs -0.2 (A3 0.0 is in between)
        (3, "A1a]", "A1b, "),  # 0.5 vs -0.3
    ]
    root, a, a1 = pairs
    assert (root.prefix, a.prefix, a1.prefix) == ("", "A, ", "A, A1, ")
    assert (root.depth, a.depth, a1.depth) == (0, 1, 2)
    assert (root.chosen_q, root.rejected_q) == (pytest.approx(0.7826), pytest.approx(-0.3))
    assert (root.chosen_n, root.rejected_n) == (6, 1)
    assert (a.chosen_q, a.rejected_q, a.chosen_n, a.rejected_n) == (
        pytest.approx(0.59),
        pytest.approx(-0.2),
        3,
        1,
    )
    assert a1.margin == pytest.approx(0.8)
    assert (root.policy_version, a.policy_version, a1.policy_version) == (1, 2, 2)
    assert root.chosen_token_ids == t.token_ids(1) and root.rejected_token_ids == t.token_ids(2)
    assert root.prompt_messages == SAMPLE.messages and root.tools == SAMPLE.tools
    assert all(p.tree_id == "three" for p in pairs)


def test_pair_filters():
    t = known_tree()
    # margins: root 1.0826, A 0.79, A1 0.8
    assert [p.node_id for p in extract_pairs(t, min_margin=0.795)] == [0, 3]
    assert [p.node_id for p in extract_pairs(t, min_margin=2.0)] == []
    # min_visits 2: only A (6) and A1 (3) qualify, never two siblings together
    assert extract_pairs(t, min_visits=2) == []
    # thresholds come from the config by default
    t2 = known_tree(pair_min_margin=0.795)
    assert [p.node_id for p in extract_pairs(t2)] == [0, 3]
    # equal Q siblings make no pair
    t3 = Tree("eq", MCTSConfig(rollout="one_step"))
    cycle(t3, [step("a, "), step("b, ")], [0.3, 0.3])
    assert extract_pairs(t3) == []


def test_pair_round_trip():
    pairs = extract_pairs(known_tree(), SAMPLE)
    for p in pairs:
        d = json.loads(json.dumps(p.to_dict()))
        assert Pair.from_dict(d) == p
