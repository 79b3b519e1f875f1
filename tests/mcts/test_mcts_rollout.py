"""Terminal simulations (paper eq. 5-9): a simulation expands, then keeps choosing and expanding
among the new children until a terminal state, and its values equal one bottom-up backup of
the whole path, derived here by hand."""

from __future__ import annotations

import pytest

from itool_ray.mcts import (
    FakeEngine,
    MCTSConfig,
    Reward,
    SimulationCore,
    Tree,
    extract_pairs,
    fake_outcome,
    make_fake_samples,
    pair_stats,
    search,
    terminal_reach,
)
from itool_ray.mcts.testing import check_tree, make_step


def test_one_terminal_simulation_by_hand():
    t = Tree("hand", MCTSConfig(gamma=0.5, c_puct=1.0, simulations=4), root_reward=0.0)
    leaf = t.select()
    assert leaf.node == 0
    t.expand(leaf, [make_step("a, ", -1.0), make_step("b, ", -1.0)])  # equal priors 0.5
    assert list(t.backup(leaf, [0.4, 0.2])) == [1, 2]
    # PUCT among the new children: u(a) = 0.4 + sqrt(2) * 0.5 / 2 > u(b) = 0.2 + same
    nxt = leaf.next
    assert nxt is not None and nxt.node == 1
    assert t.simulations == 0 and t.outstanding == 1  # the same simulation goes on
    other = t.select()  # a concurrent simulation may take b (a is this one's, in flight)
    assert other.node == 2
    check_tree(t, [nxt, other])
    t.abandon(other)
    check_tree(t, [nxt])

    t.expand(nxt, [make_step("c]", -1.0, terminal=True), make_step("d, ", -1.0)])
    assert list(t.backup(nxt, [1.0, 0.3])) == [3, 4]
    # u(c) = (1.0 - 0.4) + sqrt(3) * 0.5 / 2 > u(d) = (0.3 - 0.4) + same: c is terminal, end
    assert nxt.next is None
    assert t.simulations == 1 and t.outstanding == 0
    check_tree(t)

    # one bottom-up backup from the terminal c, eq. 8-9 (children enter with N = 1, V = 0)
    g = 0.5
    r_c, r_d, r_a, r_b = 1.0 - 0.4, 0.3 - 0.4, 0.4 - 0.0, 0.2 - 0.0
    v_a = (1 * r_c + 1 * r_d) / 2
    q_a = r_a + g * v_a
    v_root = (3 * q_a + 1 * r_b) / 4
    assert t.q(3) == pytest.approx(r_c) and t.q(4) == pytest.approx(r_d)
    assert t.value(1) == pytest.approx(v_a) and t.q(1) == pytest.approx(q_a)
    assert t.visits(1) == 3 and t.visits(0) == 4
    assert t.value(0) == pytest.approx(v_root)
    pairs = {p.node_id: (p.chosen, p.rejected) for p in extract_pairs(t)}
    assert pairs == {0: ("a, ", "b, "), 1: ("c]", "d, ")}


def test_terminal_reach_and_pair_stats():
    cfg = MCTSConfig(gamma=0.5)
    t = Tree("reach", cfg, root_reward=0.0)
    leaf = t.select()
    t.expand(leaf, [make_step("a, ", -1.0), make_step("b, ", -1.0)])
    t.backup(leaf, [0.4, 0.2], [(0.4, 0.0), (0.2, 0.0)])
    nxt = leaf.next
    t.expand(nxt, [make_step("c]", -1.0, terminal=True), make_step("d]", -1.0, terminal=True)])
    t.backup(nxt, [1.0, 0.0], [(1.0, 0.0), (0.0, 0.0)])
    assert terminal_reach(t) == [1.0, 1.0, None, 1.0, 0.0]
    pairs = extract_pairs(t)
    by_node = {p.node_id: p for p in pairs}
    assert (by_node[0].chosen_reach, by_node[0].rejected_reach) == (1.0, None)
    assert (by_node[1].chosen_reach, by_node[1].rejected_reach) == (1.0, 0.0)
    assert by_node[1].chosen_o == 1.0 and by_node[1].rejected_o == 0.0
    stats = pair_stats(pairs)
    assert stats["pairs"] == 2 and stats["chosen_only_reaches_correct"] == 1.0
    assert stats["rejected_only_reaches_correct"] == 0.0
    assert stats["mean_q_gap"] == pytest.approx(sum(p.margin for p in pairs) / 2)
    back = type(pairs[0]).from_dict(pairs[0].to_dict())
    assert back == pairs[0]


def test_one_step_mode_ends_after_one_expansion():
    t = Tree("one", MCTSConfig(gamma=0.5, rollout="one_step"), root_reward=0.0)
    leaf = t.select()
    t.expand(leaf, [make_step("a, "), make_step("b, ")])
    t.backup(leaf, [0.4, 0.2])
    assert leaf.next is None and t.simulations == 1 and t.outstanding == 0


def test_every_terminal_simulation_ends_in_a_terminal_node():
    """With fresh trees and no revisits, each simulation's last expansion is where a
    terminal was chosen or the depth limit was hit: every expanded path reaches a terminal."""
    cfg = MCTSConfig(simulations=6, k=3, max_depth=6, max_inflight=2)
    res = search(make_fake_samples(8, seed=1), FakeEngine(seed=3), cfg, reward_fn=fake_outcome)
    for t in res.trees:
        check_tree(t)
        assert t.simulations == 6 or t.exhausted
        terminals = [x for x in range(1, len(t)) if t.terminal(x)]
        assert len(terminals) >= t.simulations  # >= one terminal created per simulation
        # every expanded node's subtree holds a terminal (the rollout went down to one)
        for x in range(len(t)):
            if t.children(x):
                stack, found = list(t.children(x)), False
                while stack and not found:
                    y = stack.pop()
                    found = t.terminal(y)
                    stack.extend(t.children(y))
                assert found, f"tree {t.tree_id}: node {x} expanded but no terminal below"


def test_terminal_rollouts_reach_deeper_than_one_step():
    samples = make_fake_samples(12, seed=4)
    depth = {}
    for mode in ("terminal", "one_step"):
        cfg = MCTSConfig(simulations=8, k=3, max_depth=8, rollout=mode)
        res = search(samples, FakeEngine(seed=5, p_close=0.2), cfg, reward_fn=fake_outcome)
        depth[mode] = sum(max(t.depth(x) for x in range(len(t))) for t in res.trees)
    assert depth["terminal"] > depth["one_step"]


def test_reward_is_composed_once_with_its_terms():
    cfg = MCTSConfig(w_outcome=2.0, w_confidence=0.5)
    reward = Reward.from_config(cfg, lambda sample, text, terminal: 1.0 if terminal else 0.25)
    assert reward(None, "x", True, 0.4) == (2.0 * 1.0 + 0.5 * 0.4, 1.0, 0.4)
    samples = {s.id: s for s in make_fake_samples(1)}
    (tid,) = samples
    core = SimulationCore(cfg, reward, samples)
    t = Tree(tid, cfg)
    core.root(t, 0.8)
    assert t.root_reward == pytest.approx(2.0 * 0.25 + 0.5 * 0.8)
    assert (t.outcome(0), t.confidence(0)) == (0.25, 0.8)
    (leaf,) = core.leaves(t, limit=1)
    req = core.request(t, leaf)
    assert req.prefix == "" and req.prefix_ids == () and req.k == cfg.k
    core.stage(t, leaf, [make_step("[f(x=1)]", terminal=True), make_step("[g(y=2), ")])
    core.commit(t, leaf, [0.9, 0.1])
    by_text = {t.text(x): x for x in t.children(0)}
    x = by_text["[f(x=1)]"]
    assert (t.outcome(x), t.confidence(x)) == (1.0, 0.9)
    assert t.reward(x) == pytest.approx(2.0 + 0.45)
    back = Tree.from_dict(t.to_dict(), cfg)
    assert [back.outcome(i) for i in range(len(back))] == [t.outcome(i) for i in range(len(t))]
