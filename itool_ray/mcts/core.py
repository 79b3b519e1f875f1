"""The one simulation core both drivers run: reward composition, requests, and the cycle.

The one-process ``Searcher`` (rounds) and the Ray ``TreeManager`` (many calls in flight) only
schedule; what a simulation *does* is here, over an injected reward (mctx's way: the search
takes the model and the dynamics as functions):

    leaves = core.leaves(tree)                  # PUCT selections (terminal revisits backed up)
    req = core.request(tree, leaf)              # what the policy is asked (token-exact prefix)
    cands = core.stage(tree, leaf, steps, v)    # merge duplicates, priors; staged on the leaf
    nxt = core.commit(tree, leaf, confidences)  # R = w_o O + w_c C per candidate, backup;
                                                # nxt: the same simulation's next leaf (terminal
                                                # rollouts) or None when it ended

``Reward`` is the only place R(s) is composed from its terms (eq. 6); its weights come from
``MCTSConfig``. Pure: no ray, vllm or torch.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from itool_ray.mcts.config import MCTSConfig
from itool_ray.mcts.step import Step
from itool_ray.mcts.tree import Leaf, Tree

OutcomeFn = Callable[[Any, str, bool], float]
"""Outcome score O(s): ``(sample, partial_response_text, terminal) -> float``."""


def no_outcome(sample: Any, response: str, terminal: bool) -> float:
    """Outcome function giving O = 0 everywhere (self-evaluation only)."""
    return 0.0


class ExpandRequest(NamedTuple):
    """Ask the policy for ``k`` candidate next steps after ``prefix``.

    Immutable plain data. A NamedTuple rather than a frozen dataclass because the driver and
    the tree manager build one per expansion: it is about 3x cheaper to construct.

    Attributes:
        tree_id, node_id: the leaf being expanded (for routing and bookkeeping).
        messages, tools: the sample's prompt (the engine renders the chat template).
        prefix: the partial assistant response so far (step texts from the root joined).
        k: number of candidates to sample.
        max_tokens: token limit for one step.
        seed: sampling seed, a function of (config seed, tree id, prefix) only.
        prefix_ids: the token ids of ``prefix`` as the policy generated them (the steps'
            token ids joined), so the engine continues from exact tokens instead of
            re-tokenising the text; None when unknown.
        unit: what one step is (``itool_ray.envs.base``): ``"call"`` or ``"message"``.
    """

    tree_id: str
    node_id: int
    messages: tuple[dict[str, str], ...]
    tools: tuple[dict[str, Any], ...]
    prefix: str
    k: int
    max_tokens: int
    seed: int
    prefix_ids: tuple[int, ...] | None = None
    unit: str = "call"  # "call": cut at call / sentence boundaries; "message": a whole message


class EvalRequest(NamedTuple):
    """Ask the policy for its self-evaluation confidence C(s) (eq. 7) of a partial response.

    Attributes:
        tree_id, node_id: the tree and the expanded leaf the candidate hangs from.
        messages, tools: the sample's prompt.
        response: the partial response of the candidate state (prefix + step text).
        terminal: the candidate ends the response.
    """

    tree_id: str
    node_id: int
    messages: tuple[dict[str, str], ...]
    tools: tuple[dict[str, Any], ...]
    response: str
    terminal: bool


def tree_seed(seed: int, tree_id: str) -> int:
    """The per-tree part of ``request_seed`` (cached by the core per tree)."""
    import hashlib

    digest = hashlib.blake2b(f"{seed}\x1f{tree_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def request_seed(seed: int, tree_id: str, prefix: str) -> int:
    """32-bit sampling seed from (seed, tree id, path text); stable across processes."""
    return zlib.crc32(prefix.encode(), tree_seed(seed, tree_id))


@dataclass(frozen=True)
class Reward:
    """R(s) = w_outcome * O(s) + w_confidence * C(s) (eq. 6), composed here and nowhere else.

    Attributes:
        outcome: O(s), ``(sample, response, terminal) -> float``.
        w_outcome, w_confidence: the weights (``MCTSConfig.w_outcome`` / ``w_confidence``).
    """

    outcome: OutcomeFn = no_outcome
    w_outcome: float = 1.0
    w_confidence: float = 1.0

    @classmethod
    def from_config(cls, config: MCTSConfig, outcome: OutcomeFn | None = None) -> Reward:
        return cls(outcome or no_outcome, config.w_outcome, config.w_confidence)

    def __call__(
        self, sample: Any, response: str, terminal: bool, confidence: float
    ) -> tuple[float, float, float]:
        """``(R, O, C)`` of the state whose partial response is ``response``."""
        return self.of(self.outcome(sample, response, terminal), confidence)

    def of(self, outcome: float, confidence: float) -> tuple[float, float, float]:
        """``(R, O, C)`` from the two terms (an environment computed O)."""
        o, c = float(outcome), float(confidence)
        return self.w_outcome * o + self.w_confidence * c, o, c


class SimulationCore:
    """What one simulation does, for any driver (module docstring).

    Args:
        config: the search settings (k, step tokens, seed...).
        reward: composes R from O and C.
        samples: tree id -> sample (needs ``messages`` and ``tools`` without ``env``).
        env: the task (``itool_ray.envs.base.Environment``): what the policy sees at a node,
            when a state is terminal, and O. None: the single-turn task with
            ``reward.outcome`` as O (today's fast path; ``envs.SingleTurnCalls`` is the same
            task as an environment).
    """

    def __init__(
        self, config: MCTSConfig, reward: Reward, samples: Mapping[str, Any], env: Any = None
    ) -> None:
        self.config = config
        self.reward = reward
        self.samples = samples
        self.env = env
        self._prompts: dict[str, tuple[tuple, tuple]] = {}
        self._seeds: dict[str, int] = {}
        self.terminal_hits = 0

    def _prompt(self, tid: str) -> tuple[tuple, tuple]:
        p = self._prompts.get(tid)
        if p is None:
            s = self.samples[tid]
            p = self._prompts[tid] = (tuple(s.messages), tuple(s.tools))
        return p

    def forget(self, tid: str) -> None:
        """Drop the per-tree caches of a finished tree."""
        self._prompts.pop(tid, None)
        self._seeds.pop(tid, None)

    # ---- the cycle -----------------------------------------------------------------------
    def leaves(self, tree: Tree, limit: int | None = None) -> list[Leaf]:
        """New simulations' leaves (PUCT), at most ``limit``; terminal leaves reached again
        (``revisit_terminals``) are backed up on the spot and not returned."""
        out: list[Leaf] = []
        while (limit is None or len(out) < limit) and (leaf := tree.select()) is not None:
            if leaf.terminal:
                tree.backup(leaf)
                self.terminal_hits += 1
                continue
            out.append(leaf)
        return out

    def request(self, tree: Tree, leaf: Leaf) -> ExpandRequest:
        """The expansion request of a selected leaf: the prefix as the policy's own ids."""
        tid = tree.tree_id
        unit = "call"
        if self.env is None:
            messages, tools = self._prompt(tid)
            prefix = tree.prefix(leaf.node)
            prefix_ids = tree.prefix_token_ids(leaf.node)
        else:
            p = self.env.prompt(self.samples[tid], tree.path_texts(leaf.node))
            messages, tools, prefix, unit = p.messages, p.tools, p.prefix, self.env.unit
            prefix_ids = tree.prefix_token_ids(leaf.node) if unit == "call" else ()
        base = self._seeds.get(tid)
        if base is None:
            base = self._seeds[tid] = tree_seed(self.config.seed, tid)
        cfg = self.config
        seed_text = prefix if unit == "call" else "\x1e".join(tree.path_texts(leaf.node))
        return ExpandRequest(
            tid,
            leaf.node,
            messages,
            tools,
            prefix,
            cfg.k,
            cfg.max_step_tokens,
            zlib.crc32(seed_text.encode(), base),
            prefix_ids,
            unit,
        )

    def stage(
        self, tree: Tree, leaf: Leaf, steps: Sequence[Step], version: int | None = None
    ) -> list[Step]:
        """Merge the policy's steps onto the leaf; returns the candidates to score. With an
        environment, it decides which candidates end the episode."""
        if self.env is not None:
            sample, path = self.samples[tree.tree_id], tree.path_texts(leaf.node)
            steps = [
                replace(s, terminal=bool(self.env.terminal(sample, [*path, s.text], s.terminal)))
                for s in steps
            ]
        return tree.expand(leaf, steps, policy_version=version)

    def eval_requests(self, tree: Tree, leaf: Leaf) -> list[EvalRequest]:
        """Self-evaluation requests of the staged candidates (for engines that score apart)."""
        if self.env is None:
            messages, tools = self._prompt(tree.tree_id)
            prefix = tree.prefix(leaf.node)
        else:
            p = self.env.prompt(self.samples[tree.tree_id], tree.path_texts(leaf.node))
            messages, tools, prefix = p.messages, p.tools, p.prefix
        return [
            EvalRequest(tree.tree_id, leaf.node, messages, tools, prefix + s.text, s.terminal)
            for s in leaf.steps
        ]

    def commit(self, tree: Tree, leaf: Leaf, confidences: Sequence[float]) -> Leaf | None:
        """Score the staged candidates (R from O and the given C) and back up; returns the
        simulation's next leaf (terminal rollouts) or None when the simulation ended."""
        sample = self.samples[tree.tree_id]
        cands = leaf.steps
        if len(confidences) != len(cands):
            raise ValueError(f"commit: {len(cands)} candidates, {len(confidences)} confidences")
        rewards, terms = [], []
        if self.env is None:
            prefix = tree.prefix(leaf.node)
            scored = [
                self.reward(sample, prefix + s.text, s.terminal, c)
                for s, c in zip(cands, confidences, strict=True)
            ]
        else:
            path = tree.path_texts(leaf.node)
            scored = [
                self.reward.of(self.env.outcome(sample, [*path, s.text], s.terminal), c)
                for s, c in zip(cands, confidences, strict=True)
            ]
        for r, o, c in scored:
            rewards.append(r)
            terms.append((o, c))
        tree.backup(leaf, rewards, terms)
        return leaf.next

    def root_request(self, tree: Tree) -> EvalRequest:
        """The self-evaluation request of a new tree's root (the empty response)."""
        if self.env is None:
            messages, tools = self._prompt(tree.tree_id)
        else:
            p = self.env.prompt(self.samples[tree.tree_id], [])
            messages, tools = p.messages, p.tools
        return EvalRequest(tree.tree_id, 0, messages, tools, "", False)

    def root(self, tree: Tree, confidence: float) -> None:
        """R(s_0) of a new tree from the empty response's outcome and the given C."""
        sample = self.samples[tree.tree_id]
        if self.env is None:
            r, o, c = self.reward(sample, "", False, confidence)
        else:
            r, o, c = self.reward.of(self.env.outcome(sample, [], False), confidence)
        tree.set_root_reward(r, o, c)
