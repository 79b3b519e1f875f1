"""Tree bookkeeping: backup against eq. 8-9 by hand, merging, terminals, dead ends, errors."""

from __future__ import annotations

import math

import pytest

from itool_ray.mcts import MCTSConfig, Step, Tree, merge_steps
from itool_ray.mcts.testing import check_tree
from itool_ray.mcts.testing import make_step as step
from itool_ray.mcts.testing import run_cycle as cycle


def three_level_tree() -> Tree:
    """Root -> A -> A1 -> {A1a, A1b}, with gamma = 0.9, c = 1 (values in the test below)."""
    t = Tree("three", MCTSConfig(rollout="one_step", gamma=0.9, c_puct=1.0), root_reward=0.5)
    # cycle 1: expand the root: A (R = 1.0), B (R = 0.2). A: 2 tokens, logprob -0.2;
    # B: 1 token, logprob -0.5 -> masses e^-0.1 = 0.904837, e^-0.5 = 0.606531.
    cycle(t, [step("A, ", -0.2, 2), step("B, ", -0.5, 1)], [1.0, 0.2])
    # cycle 2: selects A (see test), expands A1 (R 1.5), A2 (R 0.8), A3 (R 1.0), equal priors.
    cycle(t, [step("A1, ", -1.0), step("A2, ", -1.0), step("A3, ", -1.0)], [1.5, 0.8, 1.0])
    # cycle 3: selects A then A1, expands A1a (R 2.0), A1b (R 1.2).
    cycle(t, [step("A1a]", -1.0, terminal=True), step("A1b, ", -1.0)], [2.0, 1.2])
    return t


def test_three_level_backup_by_hand():
    t = three_level_tree()
    root, A, B, A1, A2, A3, A1a, A1b = range(8)
    assert [t.text(x) for x in range(1, 8)] == [
        "A, ",
        "B, ",
        "A1, ",
        "A2, ",
        "A3, ",
        "A1a]",
        "A1b, ",
    ]
    assert [t.parent(x) for x in range(8)] == [-1, 0, 0, 1, 1, 1, 3, 3]
    # priors of A, B: 0.904837 / 1.511368 = 0.598688 and 0.606531 / 1.511368 = 0.401312
    assert t.prior(A) == pytest.approx(0.598688, abs=1e-6)
    assert t.prior(B) == pytest.approx(0.401312, abs=1e-6)
    assert t.prior(A1) == t.prior(A2) == t.prior(A3) == pytest.approx(1 / 3)

    # r(s, a) = R(s') - R(s)
    assert t.step_reward(A) == pytest.approx(0.5)  # 1.0 - 0.5
    assert t.step_reward(B) == pytest.approx(-0.3)  # 0.2 - 0.5
    assert t.step_reward(A1) == pytest.approx(0.5)  # 1.5 - 1.0
    assert t.step_reward(A2) == pytest.approx(-0.2)  # 0.8 - 1.0
    assert t.step_reward(A3) == pytest.approx(0.0)  # 1.0 - 1.0
    assert t.step_reward(A1a) == pytest.approx(0.5)  # 2.0 - 1.5
    assert t.step_reward(A1b) == pytest.approx(-0.3)  # 1.2 - 1.5

    # Leaves: N = 1, V = 0, Q = r.
    for x, q in ((B, -0.3), (A2, -0.2), (A3, 0.0), (A1a, 0.5), (A1b, -0.3)):
        assert t.visits(x) == 1 and t.value(x) == 0.0 and t.q(x) == pytest.approx(q)

    # A1: N = 1 + 1 + 1 = 3; V = (1 * 0.5 + 1 * -0.3) / 2 = 0.1; Q = 0.5 + 0.9 * 0.1 = 0.59
    assert t.visits(A1) == 3
    assert t.value(A1) == pytest.approx(0.1)
    assert t.q(A1) == pytest.approx(0.59)
    # A: N = 1 + 3 + 1 + 1 = 6; V = (3 * 0.59 + 1 * -0.2 + 1 * 0.0) / 5 = 1.57 / 5 = 0.314;
    #    Q = 0.5 + 0.9 * 0.314 = 0.7826
    assert t.visits(A) == 6
    assert t.value(A) == pytest.approx(0.314)
    assert t.q(A) == pytest.approx(0.7826)
    # root: N = 6 + 1 = 7; V = (6 * 0.7826 + 1 * -0.3) / 7 = 4.3956 / 7 = 0.627943
    assert t.visits(root) == 7
    assert t.value(root) == pytest.approx(0.627943, abs=1e-6)
    assert t.q(root) == 0.0
    assert t.simulations == 3 and t.outstanding == 0
    assert t.depth(A1a) == 3 and t.terminal(A1a) and not t.terminal(A1b)
    assert t.prefix(A1b) == "A, A1, A1b, "
    assert t.prefix_token_ids(A1b) == t.token_ids(A) + t.token_ids(A1) + t.token_ids(A1b)
    check_tree(t)


def test_three_level_intermediate_values_and_selections():
    t = Tree("three", MCTSConfig(rollout="one_step", gamma=0.9, c_puct=1.0), root_reward=0.5)
    cycle(t, [step("A, ", -0.2, 2), step("B, ", -0.5, 1)], [1.0, 0.2])
    # root: W = 0.5 - 0.3 = 0.2, N = 2, V = 0.1
    assert (t.visits(0), t.value(0)) == (2, pytest.approx(0.1))
    # selection at the root: A 0.5 + sqrt(2) * 0.598688 / 2 = 0.9233; B -0.3 + sqrt(2) * 0.401312 / 2 = -0.0162
    leaf = t.select()
    assert leaf is not None and leaf.node == 1
    t.expand(leaf, [step("A1, ", -1.0), step("A2, ", -1.0), step("A3, ", -1.0)])
    t.backup(leaf, [1.5, 0.8, 1.0])
    # A: W = 0.3, N = 4, V = 0.1, Q = 0.59; root: W = 4 * 0.59 - 0.3 = 2.06, N = 5, V = 0.412
    assert (t.visits(1), t.value(1), t.q(1)) == (4, pytest.approx(0.1), pytest.approx(0.59))
    assert (t.visits(0), t.value(0)) == (5, pytest.approx(0.412))
    # root: A 0.59 + sqrt(5) * 0.598688 / 5 = 0.8577 > B -0.3 + sqrt(5) * 0.401312 / 2 = 0.1487
    # at A (N = 4): A1 0.5 + 2 * (1/3) / 2 = 0.8333 > A3 0.3333 > A2 0.1333
    leaf = t.select()
    assert leaf is not None and leaf.node == 3 and t.path(3) == [0, 1, 3]
    t.abandon(leaf)
    check_tree(t)


def test_merging_duplicate_steps():
    steps = [
        step("f(x=1), ", -0.4, 2),  # mean -0.2 -> mass e^-0.2 = 0.818731
        step("g(y=2)]", -2.0, 4, terminal=True),  # mean -0.5 -> 0.606531
        Step("f(x=1), ", (99, 98), -0.6, False),  # duplicate text: mean -0.3 -> + 0.740818
        step("h(x=0), ", -1.2, 1),  # mean -1.2 -> 0.301194
    ]
    merged, priors = merge_steps(steps)
    # masses: f 0.818731 + 0.740818 = 1.559549, g 0.606531, h 0.301194; total 2.467274
    # priors: 1.559549 / 2.467274 = 0.632094, 0.606531 / 2.467274 = 0.245830, 0.122076
    assert [s.text for s in merged] == ["f(x=1), ", "g(y=2)]", "h(x=0), "]
    assert priors == pytest.approx([0.632094, 0.245830, 0.122076], abs=1e-6)
    assert merged[0] is steps[0]  # the first occurrence (its token ids) is kept
    assert merged[1].terminal
    # In a tree: three children, priors as above.
    t = Tree("m", MCTSConfig(rollout="one_step"))
    _, ids = cycle(t, steps, [0.1, 0.2, 0.3])
    assert list(ids) == [1, 2, 3]
    assert [t.prior(x) for x in ids] == pytest.approx([0.632094, 0.245830, 0.122076], abs=1e-6)
    assert t.token_ids(1) == steps[0].token_ids
    assert t.terminal(2) and not t.terminal(1)
    check_tree(t)


def test_length_normalised_priors_and_edge_cases():
    # Same per-token log-prob, 1 vs 20 tokens: equal masses, equal priors.
    _, p = merge_steps([step("a", -0.5, 1), step("b", -10.0, 20)])
    assert p == pytest.approx([0.5, 0.5])
    # Equal priors keep sampling order.
    m, _ = merge_steps([step("z", -1.0), step("y", -1.0)])
    assert [s.text for s in m] == ["z", "y"]
    assert merge_steps([]) == ([], [])
    # All-zero probability: uniform.
    _, p = merge_steps([step("a", -math.inf, 1), step("b", -math.inf, 1)])
    assert p == [0.5, 0.5]
    with pytest.raises(ValueError, match="NaN"):
        merge_steps([step("a", math.nan)])
    # No token ids: the whole log-prob is used.
    _, p = merge_steps([Step("a", (), -1.0), Step("b", (), -1.0)])
    assert p == [0.5, 0.5]


def test_terminal_limits_max_depth_and_max_tokens():
    t = Tree("lim", MCTSConfig(rollout="one_step", max_depth=2, max_tokens=5))
    # depth 1: a 2-token step stays open; a 5-token step reaches max_tokens -> terminal.
    leaf = t.select()
    cands = t.expand(leaf, [step("a, ", -1.0, 2), step("b, ", -2.5, 5)])  # equal priors
    assert [c.terminal for c in cands] == [False, True]
    t.backup(leaf, [0.0, 0.0])
    # depth 2 = max_depth: every child is terminal.
    leaf = t.select()
    assert leaf.node == 1
    cands = t.expand(leaf, [step("c, ", -1.0, 1), step("d, ", -1.0, 1)])
    assert all(c.terminal for c in cands)
    t.backup(leaf, [0.0, 0.0])
    assert t.exhausted and t.done and t.select() is None
    check_tree(t)


def test_dead_end_and_terminal_revisits():
    cfg = MCTSConfig(rollout="one_step", revisit_terminals=True, gamma=0.5)
    t = Tree("dead", cfg)
    cycle(t, [step("a, ", -1.0), step("b]", -1.0, terminal=True)], [1.0, 0.4])
    # root: N 2, V = (1.0 + 0.4) / 2 = 0.7. c = 1: a 1.0 + sqrt(2) * p / 2 wins (higher Q, same p)
    leaf = t.select()
    assert leaf.node == 1
    assert t.expand(leaf, []) == []
    assert list(t.backup(leaf, [])) == []  # dead end: node 1 becomes terminal, N 1 -> 2
    assert t.terminal(1) and t.visits(1) == 2 and t.q(1) == 1.0
    assert t.visits(0) == 3 and t.value(0) == pytest.approx((2 * 1.0 + 0.4) / 3)
    # With revisits, terminal leaves stay selectable and are backed up with their value.
    leaf = t.select()
    assert leaf.terminal and leaf.node == 1
    with pytest.raises(ValueError, match="terminal"):
        t.expand(leaf, [step("x")])
    t.backup(leaf)
    assert t.visits(1) == 3 and t.q(1) == 1.0
    assert t.value(0) == pytest.approx((3 * 1.0 + 0.4) / 4)
    check_tree(t)
    # Without revisits the same tree is exhausted after the dead end.
    t2 = Tree("dead2", MCTSConfig(rollout="one_step"))
    cycle(t2, [step("a, ", -1.0), step("b]", -1.0, terminal=True)], [1.0, 0.4])
    leaf = t2.select()
    t2.expand(leaf, [])
    t2.backup(leaf, [])
    assert t2.exhausted and t2.select() is None
    check_tree(t2)


def test_budget_and_inflight_limits():
    t = Tree("b", MCTSConfig(rollout="one_step", simulations=3, max_inflight=2))
    cycle(t, [step(f"s{i}, ") for i in range(4)], [0.0] * 4)
    a, b = t.select(), t.select()
    assert a is not None and b is not None and a.node != b.node
    assert t.select() is None  # max_inflight = 2 reached
    t.abandon(a)
    c = t.select()  # 1 done + 1 in flight < 3
    assert c is not None
    t.expand(b, [step("x, ")])
    t.backup(b, [0.0])
    assert t.simulations == 2 and t.outstanding == 1
    assert t.select() is None  # 2 done + 1 in flight = budget 3
    assert not t.done
    t.expand(c, [step("y, ")])
    t.backup(c, [0.0])
    assert t.done and not t.exhausted
    check_tree(t)


def test_misuse_is_rejected():
    t = Tree("e", MCTSConfig(rollout="one_step"))
    other = Tree("other", MCTSConfig(rollout="one_step"))
    leaf = t.select()
    with pytest.raises(ValueError, match="expected expanded"):
        t.backup(leaf, [])
    with pytest.raises(ValueError, match="given to tree"):
        other.expand(leaf, [step("a")])
    t.expand(leaf, [step("a, "), step("b, ")])
    with pytest.raises(ValueError, match="expected selected"):
        t.expand(leaf, [step("a")])
    with pytest.raises(ValueError, match="expected 2 rewards"):
        t.backup(leaf, [1.0])
    with pytest.raises(ValueError, match="finite"):
        t.backup(leaf, [1.0, math.nan])
    with pytest.raises(ValueError, match="finite"):
        t.backup(leaf, [math.inf, -math.inf])
    check_tree(t, [leaf])  # failed calls changed nothing
    t.backup(leaf, [1.0, 0.0])
    with pytest.raises(ValueError, match="already"):
        t.abandon(leaf)
    with pytest.raises(ValueError, match="expected expanded"):
        t.backup(leaf, [1.0, 0.0])
    with pytest.raises(ValueError, match="root is already expanded"):
        t.set_root_reward(1.0)
    with pytest.raises(ValueError, match="finite"):
        Tree("x", MCTSConfig(rollout="one_step"), root_reward=math.nan)
    check_tree(t)
