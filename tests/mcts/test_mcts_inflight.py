"""Several selections in flight per tree: they spread, and backup / abandon undo them exactly."""

from __future__ import annotations

import pytest

from itool_ray.mcts import MCTSConfig, Tree
from itool_ray.mcts.testing import check_tree, snapshot
from itool_ray.mcts.testing import make_step as step
from itool_ray.mcts.testing import run_cycle as cycle


def symmetric_tree(virtual_loss: float = 0.0) -> Tree:
    """Root with 4 children, each with 4 children: 16 equal leaves (equal priors and Q)."""
    t = Tree(
        "sym",
        MCTSConfig(
            rollout="one_step", max_inflight=64, simulations=1000, virtual_loss=virtual_loss
        ),
    )
    cycle(t, [step(f"c{i}, ") for i in range(4)], [0.0] * 4)
    for _ in range(4):  # each root child in turn: the expanded one now has N 5 > 1
        cycle(t, [step(f"g{i}, ") for i in range(4)], [0.0] * 4)
    # every root child expanded once: N(root) = 4 * 5 = 20, all Q = 0
    assert [len(t.children(c)) for c in t.children(0)] == [4, 4, 4, 4]
    assert t.visits(0) == 20 and all(t.q(x) == 0.0 for x in range(len(t)))
    return t


@pytest.mark.parametrize("virtual_loss", [0.0, 1.0])
def test_eight_concurrent_selections_spread(virtual_loss):
    t = symmetric_tree(virtual_loss)
    before = snapshot(t)
    leaves = [t.select() for _ in range(8)]
    assert all(leaf is not None for leaf in leaves)
    nodes = [leaf.node for leaf in leaves]
    assert len(set(nodes)) == 8  # >= 4 required; blocking in-flight leaves gives 8
    # WU-UCT counts spread them over the root's children too: 2 under each.
    tops = [t.path(x)[1] for x in nodes]
    assert sorted(tops) == sorted(list(t.children(0)) * 2)
    assert t.inflight(0) == 8 and t.selectable(0) == 16 - 8
    check_tree(t, leaves)
    # Abandoning every selection restores the tree exactly.
    for leaf in reversed(leaves):
        t.abandon(leaf)
    assert snapshot(t) == before
    check_tree(t)


def test_wu_uct_alone_spreads_over_root_children():
    # Without blocking being needed (each root child still has 4 free leaves), the in-flight
    # visits alone move consecutive selections to different root children.
    t = symmetric_tree()
    leaves = [t.select() for _ in range(4)]
    assert len({t.path(leaf.node)[1] for leaf in leaves}) == 4
    for leaf in leaves:
        t.abandon(leaf)


def test_virtual_loss_changes_the_score():
    # Root with two children, Q 0.2 (p high) and 0.1: with vl = 0 a second selection may still
    # prefer the in-flight child's subtree; a large virtual loss pushes it to the other one.
    for vl, expect_same in ((0.0, True), (5.0, False)):
        t = Tree("vl", MCTSConfig(rollout="one_step", virtual_loss=vl, c_puct=0.1, max_inflight=8))
        cycle(t, [step("a, ", -0.1), step("b, ", -3.0)], [0.9, 0.1])
        cycle(t, [step("a1, "), step("a2, "), step("a3, ")], [0.9, 0.9, 0.9])  # under a
        first = t.select()
        second = t.select()
        assert t.path(first.node)[1] == 1
        assert (t.path(second.node)[1] == 1) == expect_same
        check_tree(t, [first, second])


def test_none_when_everything_is_in_flight():
    t = Tree("busy", MCTSConfig(rollout="one_step", max_inflight=8))
    leaf = t.select()
    assert leaf.node == 0
    assert t.select() is None  # the root itself is being expanded
    t.expand(leaf, [step("a, "), step("b, ")])
    assert t.select() is None  # children exist only after backup
    t.backup(leaf, [0.0, 0.0])
    a, b = t.select(), t.select()
    assert {a.node, b.node} == {1, 2}
    assert t.select() is None
    assert not t.done
    check_tree(t, [a, b])


def test_backups_in_any_order_with_abandons():
    t = symmetric_tree()
    leaves = [t.select() for _ in range(8)]
    order = [5, 0, 7, 2, 6, 1, 3, 4]
    for n, i in enumerate(order):
        leaf = leaves[i]
        if n % 3 == 2:
            t.abandon(leaf)
        else:
            t.expand(leaf, [step(f"x{i}, "), step(f"y{i}]", terminal=True)])
            t.backup(leaf, [0.1 * i, -0.1 * i])
        check_tree(t, leaves)
    assert all(t.inflight(x) == 0 for x in range(len(t)))
    assert t.outstanding == 0 and t.simulations == 5 + 6


def test_abandon_after_expand_is_exact():
    t = symmetric_tree()
    before = snapshot(t)
    leaf = t.select()
    t.expand(leaf, [step("z, ")])
    t.abandon(leaf)  # a replica died between expansion and evaluation
    assert snapshot(t) == before
