"""One search tree per sample, stored as struct-of-arrays, with an asynchronous cycle.

Node 0 is the root s_0 (the prompt, empty response). Node ``x > 0`` is the state reached by
appending step ``text(x)`` to ``prefix(parent(x))``; the fields of the incoming edge (prior,
Q, r) are stored on ``x``. All per-node fields are Python lists (or compact arrays: flags in a
bytearray, token ids in one flat ``array('i')``) indexed by node id, not one object per node:
fewer objects for the garbage collector, about half the memory. Siblings are contiguous,
``children(x)`` is a ``range`` of node ids, sorted by decreasing prior.

The cycle, driven by ``search.Searcher`` in one process or by the Ray tree manager:

    leaf = tree.select()                      # PUCT descent; marks the path in flight
    steps = tree.expand(leaf, engine_steps)   # merge duplicates, priors; staged on the leaf
    ids = tree.backup(leaf, rewards)          # commit children with R = rewards, back up
    tree.abandon(leaf)                        # instead of backup: undo the selection exactly

Several selections may be in flight per tree (up to ``max_inflight``); ``backup`` and
``abandon`` may come in any order. A terminal leaf needs no engine: ``backup(leaf)`` at once.
``expand`` only stages the candidates on the leaf; nodes are created by ``backup`` together
with their rewards, so a replica lost between expansion and evaluation leaves no half-built
nodes behind and ``abandon`` is exact at every stage.

Visits and values (eq. 8-9). Every child is evaluated when it is committed, so it enters with
N = 1 (its own evaluation counts as one visit) and Q = r(s, a) = R(s') - R(s), V(s') = 0.
Backing up an expansion with m children adds m visits to the leaf and to each ancestor; a
terminal leaf reached again adds 1. Hence, for every node with children,
``N(x) = own(x) + sum N(children)`` with own = 0 for the root and 1 otherwise, and
``V(x) = sum N(c) Q(c) / sum N(c)``, ``Q(x) = r(x) + gamma * V(x)``; V = 0 at leaves and
terminals. ``W(x) = sum N(c) Q(c)`` is kept incrementally so a backup costs O(depth).

In flight. ``select`` adds 1 to the in-flight count O of every node on the path (WU-UCT: the
score of a child uses N + O visits and N_parent + O_parent, plus an optional virtual loss, see
``puct.py``). A selected non-terminal leaf is blocked until it is backed up or abandoned, so
concurrent selections never pile onto one leaf: ``open(x)`` counts the selectable leaves in
x's subtree (non-terminal leaves not in flight, plus terminal leaves when
``config.revisit_terminals``) and descent skips subtrees with none. ``select`` returns None
when the root has none (everything is in flight, or the tree is exhausted: all leaves
terminal), when ``max_inflight`` selections are out, or when the simulation budget is used up
(completed + in flight).

Terminal leaves. By default they are never selected again: their reward already reached
their parent's V when they were created, so a revisit would spend a simulation without new
information. With ``revisit_terminals`` (classic MCTS) a revisit is backed up with the stored
value: N += 1 along the path, the terminal's Q unchanged, the ancestors' V re-weighted.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from itool_ray.mcts.config import MCTSConfig
from itool_ray.mcts.step import Step, merge_steps

SELECTED, EXPANDED, DONE = 0, 1, 2


class Leaf:
    """Handle on one in-flight selection (mutable; stays in the process that selected it).

    Attributes:
        tree_id: the tree it belongs to.
        node: the selected leaf's node id.
        terminal: the leaf is terminal: back it up without expanding.
        state: ``SELECTED`` -> ``EXPANDED`` (steps staged) -> ``DONE`` (backed up/abandoned).
        steps: after ``expand``: the merged candidate steps, in commit order.
        priors: after ``expand``: their priors.
        version: after ``expand``: the policy version that produced the steps.
        next: after ``backup`` in ``rollout="terminal"`` mode: the same simulation's next
            leaf (a new child chosen by PUCT, already marked in flight), or None when the
            simulation ended (a terminal child was chosen, a dead end, or one-step mode).
    """

    __slots__ = ("tree_id", "node", "terminal", "state", "steps", "priors", "version", "next")

    def __init__(self, tree_id: str, node: int, terminal: bool) -> None:
        self.tree_id = tree_id
        self.node = node
        self.terminal = terminal
        self.state = SELECTED
        self.steps: list[Step] = []
        self.priors: list[float] = []
        self.version = 0
        self.next: Leaf | None = None

    def __repr__(self) -> str:
        return f"Leaf(tree_id={self.tree_id!r}, node={self.node}, terminal={self.terminal}, state={self.state})"


_NO_KIDS = range(0)


class Tree:
    """A step-level search tree; see the module docstring for the model and the cycle."""

    __slots__ = (
        "tree_id",
        "config",
        "policy_version",
        "simulations",
        "outstanding",
        "expansions",
        "_O",
        "_C",
        "_parent",
        "_depth",
        "_ntok",
        "_prior",
        "_R",
        "_r",
        "_N",
        "_Q",
        "_W",
        "_infl",
        "_open",
        "_kids",
        "_term",
        "_ver",
        "_text",
        "_tok",
        "_tok_off",
    )

    def __init__(
        self,
        tree_id: str,
        config: MCTSConfig,
        *,
        root_reward: float = 0.0,
        policy_version: int = 0,
    ) -> None:
        _check_finite(root_reward, "root_reward")
        self.tree_id = tree_id
        self.config = config
        self.policy_version = policy_version
        self.simulations = 0  # completed simulations
        self.outstanding = 0  # simulations in flight
        self.expansions = 0  # committed expansions (one per backup of a non-terminal leaf)
        self._O: list[float | None] = [None]  # outcome term O(s) of R(s), when known
        self._C: list[float | None] = [None]  # confidence term C(s) of R(s), when known
        self._parent = [-1]
        self._depth = [0]
        self._ntok = [0]  # tokens in the response so far
        self._prior = [1.0]
        self._R = [float(root_reward)]  # R(s)
        self._r = [0.0]  # r(s, a) = R(s') - R(s) of the incoming edge
        self._N = [0]
        self._Q = [0.0]
        self._W = [0.0]  # sum over children of N * Q
        self._infl = [0]  # in-flight visits
        self._open = [1]  # selectable leaves in the subtree
        self._kids = [_NO_KIDS]  # children as a range of node ids
        self._term = bytearray(1)
        self._ver = [policy_version]
        self._text = [""]
        self._tok = array("i")  # token ids of all steps, in node order
        self._tok_off = array("q", [0, 0])  # node x's tokens: _tok[_tok_off[x]:_tok_off[x + 1]]

    # ---------------------------------------------------------------- read access
    def __len__(self) -> int:
        return len(self._parent)

    @property
    def root_reward(self) -> float:
        return self._R[0]

    def set_root_reward(
        self, value: float, outcome: float | None = None, confidence: float | None = None
    ) -> None:
        """Set R(s_0) (and its terms); allowed only before the root is expanded (children's
        r depend on it)."""
        _check_finite(value, "root_reward")
        if self._kids[0] or self.outstanding:
            raise ValueError("set_root_reward: the root is already expanded or in flight")
        self._R[0] = float(value)
        self._O[0], self._C[0] = outcome, confidence

    @property
    def exhausted(self) -> bool:
        """No selectable leaf and nothing in flight: every leaf is terminal."""
        return not self._open[0] and not self.outstanding

    @property
    def done(self) -> bool:
        """Nothing in flight, and the budget is used up or the tree is exhausted."""
        if self.outstanding:
            return False
        return self.simulations >= self.config.simulations or not self._open[0]

    def parent(self, x: int) -> int:
        return self._parent[x]

    def children(self, x: int) -> range:
        return self._kids[x]

    def depth(self, x: int) -> int:
        return self._depth[x]

    def tokens_so_far(self, x: int) -> int:
        return self._ntok[x]

    def prior(self, x: int) -> float:
        return self._prior[x]

    def reward(self, x: int) -> float:
        """R(s) of the state."""
        return self._R[x]

    def outcome(self, x: int) -> float | None:
        """The outcome term O(s) of R(s), None when the tree was built without terms."""
        return self._O[x]

    def confidence(self, x: int) -> float | None:
        """The self-evaluation term C(s) of R(s), None when unknown."""
        return self._C[x]

    def step_reward(self, x: int) -> float:
        """r(s, a) = R(s') - R(s) of the incoming edge (0 for the root)."""
        return self._r[x]

    def visits(self, x: int) -> int:
        return self._N[x]

    def q(self, x: int) -> float:
        """Q(s, a) of the incoming edge (0 for the root)."""
        return self._Q[x]

    def value(self, x: int) -> float:
        """V(s) = sum N(c) Q(c) / sum N(c) over the children; 0 without children."""
        if not self._kids[x]:
            return 0.0
        return self._W[x] / (self._N[x] - (1 if x else 0))

    def inflight(self, x: int) -> int:
        return self._infl[x]

    def selectable(self, x: int) -> int:
        """Number of selectable leaves in the subtree of x."""
        return self._open[x]

    def terminal(self, x: int) -> bool:
        return bool(self._term[x])

    def version(self, x: int) -> int:
        return self._ver[x]

    def text(self, x: int) -> str:
        return self._text[x]

    def token_ids(self, x: int) -> tuple[int, ...]:
        return tuple(self._tok[self._tok_off[x] : self._tok_off[x + 1]])

    def path(self, x: int) -> list[int]:
        """Node ids from the root to x."""
        out = []
        while x >= 0:
            out.append(x)
            x = self._parent[x]
        out.reverse()
        return out

    def prefix(self, x: int) -> str:
        """The partial response at x: step texts from the root joined."""
        return "".join(self.path_texts(x))

    def path_texts(self, x: int) -> list[str]:
        """The step texts from the root to x (an environment replays a node from them)."""
        text, parent = self._text, self._parent
        parts = []
        while x > 0:
            parts.append(text[x])
            x = parent[x]
        parts.reverse()
        return parts

    def prefix_token_ids(self, x: int) -> tuple[int, ...]:
        """The token ids of ``prefix(x)``: the steps' token ids from the root joined."""
        tok, off, parent = self._tok, self._tok_off, self._parent
        spans = []
        while x > 0:
            spans.append(x)
            x = parent[x]
        out = array("i")
        for y in reversed(spans):
            out.extend(tok[off[y] : off[y + 1]])
        return tuple(out)

    # ---------------------------------------------------------------- checkpoint
    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-safe form, in-flight state cleared (see ``checkpoint.py``)."""
        from itool_ray.mcts.checkpoint import tree_to_dict

        return tree_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: MCTSConfig) -> Tree:
        from itool_ray.mcts.checkpoint import tree_from_dict

        return tree_from_dict(d, config)

    # ---------------------------------------------------------------- the cycle
    def select(self, c_puct: float | None = None) -> Leaf | None:
        """Descend by PUCT to a selectable leaf and mark the path in flight (see module doc).

        The score of child ``ch`` of ``x`` is ``puct.puct_score(puct.effective_q(Q, N, O,
        virtual_loss), prior, N(x) + O(x), N + O, c)`` with O the in-flight visits, inlined
        with the same operation order. Children with no selectable leaf are skipped; ties go
        to the lowest node id, i.e. the larger prior.
        """
        cfg = self.config
        if self.outstanding >= cfg.max_inflight:
            return None
        if self.simulations + self.outstanding >= cfg.simulations:
            return None
        opn = self._open
        if not opn[0]:
            return None
        c = cfg.c_puct if c_puct is None else c_puct
        vl = cfg.virtual_loss
        N, Q, P, infl, kids = self._N, self._Q, self._prior, self._infl, self._kids
        sqrt = math.sqrt
        ninf = -math.inf
        x = 0
        while kids_x := kids[x]:
            csq = c * sqrt(N[x] + infl[x])
            best = ninf
            at = x
            for ch in kids_x:
                if opn[ch]:
                    o = infl[ch]
                    if o:
                        n = N[ch]
                        u = Q[ch] - vl * o / (n + o) + csq * P[ch] / (1.0 + n + o)
                    else:
                        u = Q[ch] + csq * P[ch] / (1.0 + N[ch])
                    if u > best:
                        best = u
                        x = ch
            if x == at:  # open(x) > 0 guarantees an open child
                raise RuntimeError(f"tree {self.tree_id!r}: selectable counts broken at {x}")
        parent = self._parent
        y = x
        if self._term[x]:
            while y >= 0:
                infl[y] += 1
                y = parent[y]
            self.outstanding += 1
            return Leaf(self.tree_id, x, True)
        while y >= 0:
            infl[y] += 1
            opn[y] -= 1
            y = parent[y]
        self.outstanding += 1
        return Leaf(self.tree_id, x, False)

    def expand(
        self, leaf: Leaf, steps: Sequence[Step], policy_version: int | None = None
    ) -> list[Step]:
        """Stage the policy's candidate steps for a selected non-terminal leaf.

        Duplicates are merged and priors computed by ``merge_steps``; a step is marked
        terminal here when its depth reaches ``max_depth`` or the response reaches
        ``max_tokens``. Returns the candidates in commit order; the caller evaluates each
        (R of ``prefix(leaf.node) + step.text``) and passes the rewards to ``backup``. The tree
        itself is unchanged until ``backup``, so ``abandon`` stays exact. An empty list makes
        the leaf a terminal dead end at backup.
        """
        if leaf.state != SELECTED or leaf.tree_id != self.tree_id:
            self._own(leaf, SELECTED)
        if leaf.terminal:
            raise ValueError(f"expand: node {leaf.node} is terminal; back it up directly")
        merged, priors = merge_steps(steps)
        x = leaf.node
        cfg = self.config
        at_max_depth = self._depth[x] + 1 >= cfg.max_depth
        room = cfg.max_tokens - self._ntok[x]
        for i, s in enumerate(merged):
            if not s.terminal and (at_max_depth or len(s.token_ids) >= room):
                merged[i] = replace(s, terminal=True)
        leaf.steps = merged
        leaf.priors = priors
        leaf.version = self.policy_version if policy_version is None else policy_version
        leaf.state = EXPANDED
        return merged

    def backup(
        self,
        leaf: Leaf,
        rewards: Sequence[float] | None = None,
        terms: Sequence[tuple[float, float]] | None = None,
    ) -> range:
        """Commit an expansion (``rewards[i]`` = R of candidate i) or a terminal revisit.

        Updates N, W, Q from the leaf to the root (eq. 8-9), undoes the in-flight marks, and
        returns the new children's node ids as a range (empty for a terminal leaf or a
        dead end). ``terms[i]`` = (O, C) of candidate i, stored beside R for reports.

        With ``config.rollout == "terminal"`` the simulation goes on below the new children
        (see ``_continue``): ``leaf.next`` is its next leaf, or None when it ended.
        """
        N, Q, W, r = self._N, self._Q, self._W, self._r
        infl, opn, parent = self._infl, self._open, self._parent
        g = self.config.gamma
        x = leaf.node
        new = _NO_KIDS
        if leaf.terminal:
            self._own(leaf, SELECTED)
            if rewards:
                raise ValueError("backup: a terminal leaf takes no rewards")
            dn, d_open = 1, 0
            nold, qold = N[x], Q[x]
            N[x] = nold + 1
        else:
            if leaf.state != EXPANDED or leaf.tree_id != self.tree_id:
                self._own(leaf, EXPANDED)
            m = len(leaf.steps)
            if rewards is None or len(rewards) != m:
                got = None if rewards is None else len(rewards)
                raise ValueError(f"backup: expected {m} rewards, got {got}")
            nold, qold = N[x], Q[x]
            dn = m
            if m == 0:  # dead end: the policy had nothing to add
                self._term[x] = 1
                d_open = 1 if self.config.revisit_terminals else 0
                N[x] = nold + 1
                dn = 1
            else:
                if not math.isfinite(sum(rewards)):
                    for v in rewards:
                        _check_finite(v, "reward")
                if terms is not None and len(terms) != m:
                    raise ValueError(f"backup: expected {m} reward terms, got {len(terms)}")
                new, w, d_open = self._append_children(x, leaf, rewards, terms)
                W[x] = w
                N[x] = n = nold + m
                if x:
                    Q[x] = r[x] + g * (w / (n - 1))
        infl[x] -= 1
        opn[x] += d_open
        c = x
        y = parent[x]
        while y >= 0:
            W[y] += N[c] * Q[c] - nold * qold
            nold = N[y]
            qold = Q[y]
            N[y] = n = nold + dn
            if y:
                Q[y] = r[y] + g * (W[y] / (n - 1))
            infl[y] -= 1
            opn[y] += d_open
            c = y
            y = parent[y]
        leaf.state = DONE
        if not leaf.terminal:
            self.expansions += 1
        leaf.next = self._continue(x) if new and self.config.rollout == "terminal" else None
        if leaf.next is None:  # the simulation ended here
            self.simulations += 1
            self.outstanding -= 1
        return new

    def _continue(self, x: int) -> Leaf | None:
        """The rollout step of a terminal simulation (paper section 4.3: "following the
        selection and expansion process until reaching a terminal state").

        Among the children x just received, the one PUCT prefers (the ``select`` score, ties
        to the larger prior); if it is a non-terminal leaf, its path is marked in flight and
        it is the simulation's next leaf. If PUCT prefers a terminal child, the simulation
        has reached a terminal state and ends (its value is already backed up: the terminal
        entered with its own reward). Every expansion along the way is backed up when it is
        committed; the values after the last one equal a single bottom-up backup of the whole
        path (eq. 8-9 depend on the final tree alone), and the tree stays consistent at every
        moment, so checkpoints and concurrent selections never see half-applied statistics.
        """
        N, Q, P, infl = self._N, self._Q, self._prior, self._infl
        csq = self.config.c_puct * math.sqrt(N[x] + infl[x])
        best, at = -math.inf, -1
        for ch in self._kids[x]:
            u = Q[ch] + csq * P[ch] / (1.0 + N[ch] + infl[ch])
            if u > best:
                best, at = u, ch
        if at < 0 or self._term[at] or not self._open[at]:
            return None
        y = at
        opn, parent = self._open, self._parent
        while y >= 0:
            infl[y] += 1
            opn[y] -= 1
            y = parent[y]
        return Leaf(self.tree_id, at, False)

    def claim(self, x: int) -> Leaf:
        """Mark the open, non-terminal leaf x in flight as a simulation's next leaf, as
        ``_continue`` does (a searcher restored from a checkpoint resumes its rollouts)."""
        if self._kids[x] or self._term[x] or not self._open[x] or self._infl[x]:
            raise ValueError(f"claim: node {x} is not an open leaf")
        infl, opn, parent = self._infl, self._open, self._parent
        y = x
        while y >= 0:
            infl[y] += 1
            opn[y] -= 1
            y = parent[y]
        self.outstanding += 1
        return Leaf(self.tree_id, x, False)

    def abandon(self, leaf: Leaf) -> None:
        """Drop an in-flight selection (e.g. its replica died): undo its marks exactly."""
        self._own(leaf, None)
        d_open = 0 if leaf.terminal else 1  # a terminal selection never closed its leaf
        infl, opn, parent = self._infl, self._open, self._parent
        y = leaf.node
        while y >= 0:
            infl[y] -= 1
            opn[y] += d_open
            y = parent[y]
        self.outstanding -= 1
        leaf.state = DONE

    # ---------------------------------------------------------------- internals
    def _own(self, leaf: Leaf, state: int | None) -> None:
        """Check the leaf is this tree's and in ``state`` (None: any state but DONE)."""
        if leaf.tree_id != self.tree_id:
            raise ValueError(f"leaf of tree {leaf.tree_id!r} given to tree {self.tree_id!r}")
        if state is None and leaf.state == DONE:
            raise ValueError(f"leaf at node {leaf.node} was already backed up or abandoned")
        if state is not None and leaf.state != state:
            names = {SELECTED: "selected", EXPANDED: "expanded", DONE: "done"}
            raise ValueError(
                f"leaf at node {leaf.node} is {names[leaf.state]}, expected {names[state]}"
            )

    def _append_children(
        self,
        x: int,
        leaf: Leaf,
        rewards: Sequence[float],
        terms: Sequence[tuple[float, float]] | None = None,
    ) -> tuple[range, float, int]:
        """Append the staged candidates as children of x; returns (ids, sum of Q, open)."""
        steps = leaf.steps
        start = len(self._parent)
        kids = range(start, start + len(steps))
        self._kids[x] = kids
        rx = self._R[x]
        ntx = self._ntok[x]
        d = self._depth[x] + 1
        v = leaf.version
        parent, depth, n, w_, infl, kids_, ver = (
            self._parent,
            self._depth,
            self._N,
            self._W,
            self._infl,
            self._kids,
            self._ver,
        )
        R, r, Q, opn, ntok = self._R, self._r, self._Q, self._open, self._ntok
        text, term, tok, tok_off = self._text, self._term, self._tok, self._tok_off
        open_terminal = 1 if self.config.revisit_terminals else 0
        self._prior.extend(leaf.priors)
        if terms is None:
            self._O.extend([None] * len(steps))
            self._C.extend([None] * len(steps))
        else:
            self._O.extend(float(o) for o, _ in terms)
            self._C.extend(float(c) for _, c in terms)
        w = 0.0
        d_open = 0
        for s, rv in zip(steps, rewards, strict=True):  # appends beat extend([v] * m) here
            parent.append(x)
            depth.append(d)
            n.append(1)
            w_.append(0.0)
            infl.append(0)
            kids_.append(_NO_KIDS)
            ver.append(v)
            rv = float(rv)
            R.append(rv)
            q = rv - rx  # r(s, a); V(s') = 0 for a new node
            r.append(q)
            Q.append(q)
            w += q
            ids = s.token_ids
            tok.extend(ids)
            tok_off.append(len(tok))
            ntok.append(ntx + len(ids))
            text.append(s.text)
            if s.terminal:
                term.append(1)
                opn.append(open_terminal)
                d_open += open_terminal
            else:
                term.append(0)
                opn.append(1)
                d_open += 1
        return kids, w, d_open


def _check_finite(v: Any, name: str) -> None:
    try:
        ok = math.isfinite(v)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number, got {v!r}")
