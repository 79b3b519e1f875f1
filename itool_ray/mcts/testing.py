"""Test helpers for the search core and its users: a tree consistency check and builders.

``check_tree`` is O(nodes); use it in tests or a debug mode, not per simulation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from itool_ray.mcts.step import Step
from itool_ray.mcts.tree import DONE, Leaf, Tree


def make_step(text: str, logprob: float = -1.0, n_tokens: int = 2, terminal: bool = False) -> Step:
    """A step with ``n_tokens`` token ids derived from its text (same text, same ids)."""
    base = sum(map(ord, text)) * 10
    return Step(text, tuple(base + i for i in range(n_tokens)), logprob, terminal, "step")


def run_cycle(tree: Tree, steps: list[Step], rewards: list[float]) -> tuple[Leaf, range]:
    """One select + expand + backup with the given candidates and rewards."""
    leaf = tree.select()
    if leaf is None or leaf.terminal:
        raise AssertionError(f"run_cycle: selected {leaf!r}, expected a non-terminal leaf")
    cands = tree.expand(leaf, steps)
    if len(cands) != len(rewards):
        raise AssertionError(f"run_cycle: {len(cands)} candidates, {len(rewards)} rewards")
    return leaf, tree.backup(leaf, rewards)


def snapshot(tree: Tree) -> dict[str, Any]:
    """Copies of every mutable per-node array, for exact before/after comparisons."""
    names = ("_parent", "_prior", "_R", "_r", "_N", "_Q", "_W", "_infl", "_open", "_kids", "_term")
    out: dict[str, Any] = {name: list(getattr(tree, name)) for name in names}
    out["simulations"] = tree.simulations
    out["outstanding"] = tree.outstanding
    return out


def check_tree(tree: Tree, leaves: Iterable[Leaf] = (), rel: float = 1e-9) -> None:
    """Raise AssertionError at the first broken invariant.

    ``leaves`` are the selections still in flight (neither backed up nor abandoned); the
    in-flight and selectable counts are recomputed from them. Checked: parents precede
    children, siblings contiguous with priors summing to 1 in decreasing order;
    ``r = R - R(parent)``; for nodes with children ``N = own + sum N(children)`` (own = 0
    for the root, 1 otherwise), ``W = sum N Q`` and ``Q = r + gamma * W / (N - own)``; leaves
    have N >= 1 (N == 1 unless terminal) and Q = r; every value finite; in-flight counts equal
    the number of in-flight selections whose path crosses the node; selectable counts match.
    """
    t = tree
    n = len(t)
    g = t.config.gamma
    pending = [leaf for leaf in leaves if leaf.state != DONE]
    assert t.outstanding == len(pending), f"outstanding {t.outstanding} != {len(pending)}"
    infl = [0] * n
    blocked = set()
    for leaf in pending:
        assert leaf.tree_id == t.tree_id, "leaf of another tree"
        if not leaf.terminal:
            assert leaf.node not in blocked, f"two selections of non-terminal leaf {leaf.node}"
            blocked.add(leaf.node)
        for y in t.path(leaf.node):
            infl[y] += 1
    revisit = t.config.revisit_terminals
    opn = [0] * n
    for x in range(n - 1, -1, -1):
        kids = t.children(x)
        if not kids:
            if x in blocked:
                opn[x] = 0
            else:
                opn[x] = 1 if (revisit or not t.terminal(x)) else 0
        else:
            opn[x] = sum(opn[c] for c in kids)
    for x in range(n):
        _check_node(t, x, g, rel)
        assert t.inflight(x) == infl[x], f"node {x}: in-flight {t.inflight(x)} != {infl[x]}"
        assert t.selectable(x) == opn[x], f"node {x}: selectable {t.selectable(x)} != {opn[x]}"


def _check_node(t: Tree, x: int, g: float, rel: float) -> None:
    kids = t.children(x)
    p = t.parent(x)
    for v in (t.q(x), t.value(x), t.reward(x), t.prior(x)):
        assert math.isfinite(v), f"node {x}: non-finite value {v}"
    if x:
        assert 0 <= p < x, f"node {x}: parent {p}"
        assert x in t.children(p), f"node {x} not among its parent's children"
        assert t.depth(x) == t.depth(p) + 1, f"node {x}: depth"
        assert t.step_reward(x) == t.reward(x) - t.reward(p), f"node {x}: r != R - R(parent)"
    if kids:
        assert kids.start > x, f"node {x}: children before parent"
        priors = [t.prior(c) for c in kids]
        assert math.isclose(sum(priors), 1.0, rel_tol=1e-9), f"node {x}: priors sum {sum(priors)}"
        assert priors == sorted(priors, reverse=True), f"node {x}: priors not decreasing"
        own = 1 if x else 0
        nsum = sum(t.visits(c) for c in kids)
        assert t.visits(x) == own + nsum, f"node {x}: N {t.visits(x)} != {own} + {nsum}"
        v = math.fsum(t.visits(c) * t.q(c) for c in kids) / nsum
        assert math.isclose(t.value(x), v, rel_tol=rel, abs_tol=rel), (
            f"node {x}: V {t.value(x)} != {v}"
        )
        if x:
            q = t.step_reward(x) + g * v
            assert math.isclose(t.q(x), q, rel_tol=rel, abs_tol=rel), f"node {x}: Q {t.q(x)} != {q}"
    elif x:
        assert t.visits(x) >= 1, f"leaf {x}: N {t.visits(x)}"
        if not t.terminal(x):
            assert t.visits(x) == 1, f"non-terminal leaf {x}: N {t.visits(x)} != 1"
        assert t.q(x) == t.step_reward(x), f"leaf {x}: Q {t.q(x)} != r {t.step_reward(x)}"
