"""Search hyper-parameters, validated when built."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

ROLLOUTS = ("terminal", "one_step")
OUTCOMES = ("exact", "graded")


@dataclass(frozen=True)
class MCTSConfig:
    """Step-level MCTS settings (iTool section 4, eq. 5-9).

    Attributes:
        c_puct: exploration constant c of eq. 5.
        k: candidate steps asked of the policy per expansion (before duplicates are merged).
        gamma: discount of eq. 8, Q(s, a) = r(s, a) + gamma * V(s').
        max_depth: a node at this depth (number of steps from the root) is terminal.
        max_step_tokens: token limit for one step (passed to the engine with each request).
        max_tokens: a node whose response so far has this many tokens or more is terminal.
        simulations: budget per tree; one simulation is one select + expand (+ the rollout's
            further expansions, see ``rollout``) + backup, or one select + backup when a
            terminal leaf is reached again.
        max_inflight: selections of one tree allowed in flight (selected, not yet backed up
            or abandoned) at the same time.
        virtual_loss: extra pessimism for in-flight children: a child with N completed and O
            in-flight visits is scored with Q - virtual_loss * O / (N + O). 0 gives pure
            WU-UCT (in-flight visits only shrink the exploration bonus).
        w_outcome: weight of the outcome score O in R(s) = w_outcome * O + w_confidence * C.
        w_confidence: weight of the self-evaluation confidence C.
        pair_min_margin: a pair needs Q(chosen) - Q(rejected) >= this (and > 0 always).
        pair_min_visits: both steps of a pair need at least this many visits N.
        seed: search seed; mixed with the tree id and the path text into each expansion
            request's ``seed`` so a seeded engine reproduces the same steps.
        revisit_terminals: False (default): a terminal leaf is never selected again (its
            reward is already in its parent's V, since children are evaluated when created),
            so every simulation expands a new node and a tree whose leaves are all terminal
            is finished. True: classic MCTS, a terminal leaf stays selectable and each
            revisit is backed up with its stored value, costing no engine call but a
            simulation of the budget (visits then concentrate on the best terminals).
        rollout: ``"terminal"`` (default, the paper's eq. 5-9): a simulation selects a leaf
            by PUCT, expands it, then keeps choosing (PUCT) and expanding among the new
            children until it reaches a terminal state (complete response, ``max_depth``,
            ``max_tokens``), so every simulation ends in an outcome-scored terminal.
            ``"one_step"``: a simulation ends after one expansion (each child's Q is then
            mostly its one-step reward); kept to compare the two.
        outcome: the task's O: ``"exact"`` (default, the paper's: single-turn, 1/0 for a
            finished response, the fraction of gold calls matched so far before the end, 0
            once a call is wrong; multi-turn, BFCL's verdict, the fraction of turns passed
            before the end) or ``"graded"``, for a policy that rarely reaches a correct
            terminal: a wrong answer still earns credit, up to half of a correct one's, for
            its right functions and arguments (single-turn,
            ``itool_ray.mcts.rewards.GradedCallsOutcome``) or for its turns passed and gold
            calls matched (multi-turn, ``itool_ray.envs.multi_turn.MultiTurnEnv``).
    """

    c_puct: float = 1.0
    k: int = 4
    gamma: float = 0.9
    max_depth: int = 16
    max_step_tokens: int = 256
    max_tokens: int = 2048
    simulations: int = 64
    max_inflight: int = 8
    virtual_loss: float = 0.0
    w_outcome: float = 1.0
    w_confidence: float = 1.0
    pair_min_margin: float = 0.0
    pair_min_visits: int = 1
    seed: int = 0
    revisit_terminals: bool = False
    rollout: str = "terminal"
    outcome: str = "exact"

    def __post_init__(self) -> None:
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"MCTSConfig.rollout must be one of {ROLLOUTS}, got {self.rollout!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"MCTSConfig.outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if not isinstance(self.revisit_terminals, bool):
            raise TypeError(
                f"MCTSConfig.revisit_terminals must be a bool, got {self.revisit_terminals!r}"
            )
        for f in fields(self):
            if f.name in ("revisit_terminals", "rollout", "outcome"):
                continue
            value = getattr(self, f.name)
            want = int if f.type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"MCTSConfig.{f.name} must be a number, got {value!r}")
            if want is int and not isinstance(value, int):
                raise TypeError(f"MCTSConfig.{f.name} must be an int, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"MCTSConfig.{f.name} must be finite, got {value!r}")
        _check(self.c_puct >= 0, "c_puct", self.c_puct, ">= 0")
        _check(self.k >= 1, "k", self.k, ">= 1")
        _check(0.0 <= self.gamma <= 1.0, "gamma", self.gamma, "in [0, 1]")
        _check(self.max_depth >= 1, "max_depth", self.max_depth, ">= 1")
        _check(self.max_step_tokens >= 1, "max_step_tokens", self.max_step_tokens, ">= 1")
        _check(self.max_tokens >= 1, "max_tokens", self.max_tokens, ">= 1")
        _check(self.simulations >= 0, "simulations", self.simulations, ">= 0")
        _check(self.max_inflight >= 1, "max_inflight", self.max_inflight, ">= 1")
        _check(self.virtual_loss >= 0, "virtual_loss", self.virtual_loss, ">= 0")
        _check(self.w_outcome >= 0, "w_outcome", self.w_outcome, ">= 0")
        _check(self.w_confidence >= 0, "w_confidence", self.w_confidence, ">= 0")
        _check(self.pair_min_margin >= 0, "pair_min_margin", self.pair_min_margin, ">= 0")
        _check(self.pair_min_visits >= 0, "pair_min_visits", self.pair_min_visits, ">= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MCTSConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"MCTSConfig: unknown field(s) {unknown}")
        return cls(**d)


def _check(ok: bool, name: str, value: object, rule: str) -> None:
    if not ok:
        raise ValueError(f"MCTSConfig.{name} must be {rule}, got {value!r}")
