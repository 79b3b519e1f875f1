"""PUCT selection (iTool eq. 5) as pure functions.

``Tree.select`` inlines exactly these formulas in its hot loop; ``tests/mcts`` checks that the
tree and ``select_child`` agree on random trees.

Unvisited children: ``puct_score`` takes ``child_visits = 0`` as is, giving
``q + c * prior * sqrt(parent_visits)``; the ``q`` of an unvisited child is whatever the caller
passes (there is no hidden first-play value). In ``Tree`` every child is evaluated when it is
created, so it enters the tree with N = 1 and a real Q; unvisited children never reach the
formula there. With ``parent_visits = 0`` the bonus is 0 and the score is ``q`` alone.

Ties: ``select_child`` returns the lowest index among the maximal scores. ``Tree`` stores
siblings in decreasing prior order, so a tie goes to the child with the larger prior, then to
the one the policy produced first. No randomness is involved, so a search is reproducible and
a checkpoint needs no RNG state.

In-flight visits (WU-UCT, Liu et al. 2020) and virtual loss: a child with ``n`` completed and
``o`` in-flight visits is scored as ``puct_score(effective_q(q, n, o, vl), prior,
N_parent + O_parent, n + o, c)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def puct_score(
    q: float, prior: float, parent_visits: float, child_visits: float, c: float
) -> float:
    """Q(s, a) + c * p(a|s) * sqrt(N(s)) / (1 + N(s'))  (eq. 5).

    Evaluated as ``q + c * sqrt(N(s)) * p / (1 + N(s'))``, the operation order ``Tree.select``
    uses, so both give bit-identical scores.
    """
    return q + c * math.sqrt(parent_visits) * prior / (1.0 + child_visits)


def effective_q(q: float, visits: int, inflight: int, virtual_loss: float) -> float:
    """Q seen by selection while ``inflight`` visits are pending.

    Each pending visit counts as if it had returned ``q - virtual_loss``:
    ``(visits * q + inflight * (q - virtual_loss)) / (visits + inflight)``, which is
    ``q - virtual_loss * inflight / (visits + inflight)``. ``q`` itself when nothing is pending.
    """
    if inflight <= 0:
        return q
    return q - virtual_loss * inflight / (visits + inflight)


def select_child(
    qs: Sequence[float],
    priors: Sequence[float],
    parent_visits: float,
    child_visits: Sequence[float],
    c: float,
) -> int:
    """Index of the child maximising ``puct_score``; the lowest index wins ties.

    Raises ValueError when there are no children or the sequences differ in length.
    """
    n = len(qs)
    if n == 0:
        raise ValueError("select_child: no children")
    if len(priors) != n or len(child_visits) != n:
        raise ValueError("select_child: qs, priors and child_visits differ in length")
    best_i = 0
    best = puct_score(qs[0], priors[0], parent_visits, child_visits[0], c)
    for i in range(1, n):
        u = puct_score(qs[i], priors[i], parent_visits, child_visits[i], c)
        if u > best:
            best, best_i = u, i
    return best_i
