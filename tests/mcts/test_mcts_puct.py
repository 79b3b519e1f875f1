"""PUCT (eq. 5): hand-computed scores, zero visits, ties, in-flight counts, virtual loss."""

from __future__ import annotations

import math
import random

import pytest

from itool_ray.mcts import MCTSConfig, Tree, effective_q, puct_score, select_child
from itool_ray.mcts.testing import make_step as step
from itool_ray.mcts.testing import run_cycle as cycle


def test_puct_three_children_hand_computed():
    # Parent N(s) = 9 -> sqrt = 3; c = 1.5 -> c * sqrt(N) = 4.5.
    #   a: Q = 0.5, p = 0.5, N = 2: 0.5 + 4.5 * 0.5 / 3 = 0.5 + 0.75  = 1.25
    #   b: Q = 0.8, p = 0.3, N = 5: 0.8 + 4.5 * 0.3 / 6 = 0.8 + 0.225 = 1.025
    #   c: Q = 0.0, p = 0.2, N = 0: 0.0 + 4.5 * 0.2 / 1 = 0.0 + 0.9   = 0.9
    qs, ps, ns = [0.5, 0.8, 0.0], [0.5, 0.3, 0.2], [2, 5, 0]
    scores = [puct_score(q, p, 9, n, 1.5) for q, p, n in zip(qs, ps, ns, strict=True)]
    assert scores == pytest.approx([1.25, 1.025, 0.9], abs=1e-12)
    assert select_child(qs, ps, 9, ns, 1.5) == 0
    # With c = 0.5 exploitation wins: a 0.5 + 0.25 = 0.75, b 0.8 + 0.075 = 0.875, c 0.3.
    assert select_child(qs, ps, 9, ns, 0.5) == 1
    # With c = 10 the unvisited child wins: a 0.5 + 5 = 5.5, b 0.8 + 1.5 = 2.3, c 6.0.
    assert select_child(qs, ps, 9, ns, 10.0) == 2


def test_zero_visits():
    # Unvisited child: the bonus is c * p * sqrt(N(s)) / 1, the q passed in is used as is.
    assert puct_score(0.0, 0.25, 16, 0, 2.0) == 2.0  # 2 * 4 * 0.25 / 1
    assert puct_score(-0.5, 0.25, 16, 0, 2.0) == 1.5
    # Unvisited parent: sqrt(0) = 0, no bonus; the score is Q alone, priors do not matter.
    assert puct_score(0.3, 0.9, 0, 0, 5.0) == 0.3
    assert select_child([0.1, 0.2], [0.9, 0.1], 0, [0, 0], 5.0) == 1


def test_ties_go_to_the_lowest_index():
    assert select_child([0.0, 0.0, 0.0], [1 / 3] * 3, 4, [0, 0, 0], 1.0) == 0
    assert select_child([0.1, 0.5, 0.5], [0.2, 0.4, 0.4], 4, [1, 1, 1], 1.0) == 1
    with pytest.raises(ValueError, match="no children"):
        select_child([], [], 1, [], 1.0)
    with pytest.raises(ValueError, match="length"):
        select_child([0.0], [1.0, 0.0], 1, [0], 1.0)


def test_effective_q_virtual_loss():
    assert effective_q(0.6, 3, 0, 1.0) == 0.6  # nothing in flight
    # N = 3, O = 1, vl = 1: (3 * 0.6 + 1 * (0.6 - 1)) / 4 = (1.8 - 0.4) / 4 = 0.35
    assert effective_q(0.6, 3, 1, 1.0) == pytest.approx(0.35)
    assert effective_q(0.6, 3, 1, 0.0) == 0.6  # vl = 0: pure WU-UCT leaves Q alone


def _root_with_children(c_puct: float = 1.0, **cfg) -> Tree:
    # Root R = 0; three children with rewards 0.2, 0.5, 0.1 and masses e^-0.5, e^-1, e^-1.5.
    t = Tree("t", MCTSConfig(rollout="one_step", c_puct=c_puct, **cfg))
    steps = [step("a, ", -1.0), step("b, ", -2.0), step("c, ", -3.0)]  # 2 tokens each
    cycle(t, steps, [0.2, 0.5, 0.1])
    return t


def test_tree_select_matches_the_formula():
    t = _root_with_children()
    # N(root) = 3, each child N = 1, Q = R - 0; priors m_i / sum m, m = e^-0.5, e^-1, e^-1.5.
    m = [math.exp(-0.5), math.exp(-1.0), math.exp(-1.5)]
    priors = [v / sum(m) for v in m]  # 0.50648, 0.30720, 0.18632
    assert [t.prior(c) for c in t.children(0)] == pytest.approx(priors)
    # scores: 0.2 + sqrt(3) * 0.50648 / 2 = 0.63862; 0.5 + sqrt(3) * 0.30720 / 2 = 0.76604;
    #         0.1 + sqrt(3) * 0.18632 / 2 = 0.26136  -> child "b" (node 2)
    scores = [puct_score(t.q(c), t.prior(c), 3, 1, 1.0) for c in t.children(0)]
    assert scores == pytest.approx([0.63862, 0.76604, 0.26136], abs=1e-5)
    leaf = t.select()
    assert leaf is not None and leaf.node == 2


def test_tree_select_agrees_with_select_child_on_random_trees():
    rng = random.Random(7)
    for trial in range(30):
        t = Tree(
            f"r{trial}",
            MCTSConfig(
                rollout="one_step",
                c_puct=rng.uniform(0.1, 3.0),
                simulations=10**6,
                max_inflight=10**6,
                virtual_loss=rng.choice([0.0, 1.0]),
            ),
        )
        for _ in range(rng.randint(1, 25)):
            leaf = t.select()
            if leaf is None:
                break
            steps = [
                step(f"s{rng.randint(0, 5)}, ", -rng.uniform(0.1, 3))
                for _ in range(rng.randint(1, 4))
            ]
            cands = t.expand(leaf, steps)
            t.backup(leaf, [rng.uniform(-1, 1) for _ in cands])
        held = [t.select() for _ in range(rng.randint(0, 3))]
        # Replay the descent with select_child on the public accessors.
        x = 0
        while t.children(x):
            kids = [c for c in t.children(x) if t.selectable(c)]
            if not kids:
                break
            cfg = t.config
            qs = [effective_q(t.q(c), t.visits(c), t.inflight(c), cfg.virtual_loss) for c in kids]
            i = select_child(
                qs,
                [t.prior(c) for c in kids],
                t.visits(x) + t.inflight(x),
                [t.visits(c) + t.inflight(c) for c in kids],
                cfg.c_puct,
            )
            x = kids[i]
        leaf = t.select()
        if leaf is not None:
            assert leaf.node == x
        for h in held:
            if h is not None:
                t.abandon(h)
