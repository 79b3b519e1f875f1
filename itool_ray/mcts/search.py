"""The engine protocol and a one-process driver that runs the simulation core to a budget.

One round of ``Searcher.step``: every tree contributes its simulations' next leaves (terminal
rollouts that are still going down) and new PUCT selections (``SimulationCore.leaves``), the
leaves of all trees go to ``engine.expand`` in one batch, each leaf's candidates (merged by
``SimulationCore.stage``) go to ``engine.evaluate`` in one batch, and every leaf is committed
(``SimulationCore.commit``: R = w_outcome * O + w_confidence * C, backup). The Ray tree
manager drives the same core asynchronously instead of in rounds.

Child evaluation policy: all candidates of an expansion are evaluated (as the paper's code
does), so every child enters the tree with its own Q and pairs are meaningful after a single
expansion of a node; the cost is k evaluation prompts per expansion, which batch well.

Resumption: between rounds the state is the trees and the rollouts still going down (their
next leaves), both in ``checkpoint()``; selection is deterministic, so ``restore()``
continues exactly as an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from itool_ray.mcts.config import MCTSConfig
from itool_ray.mcts.core import (
    EvalRequest,
    ExpandRequest,
    OutcomeFn,
    Reward,
    SimulationCore,
    no_outcome,
    request_seed,
    tree_seed,
)
from itool_ray.mcts.pairs import Pair, extract_pairs
from itool_ray.mcts.step import Step
from itool_ray.mcts.tree import DONE, Leaf, Tree

RewardFn = OutcomeFn
"""Outcome score O(s): ``(sample, partial_response_text, terminal) -> float``."""

__all__ = [
    "Engine",
    "EvalRequest",
    "ExpandRequest",
    "RewardFn",
    "SearchResult",
    "SearchStats",
    "Searcher",
    "no_outcome",
    "request_seed",
    "search",
    "tree_seed",
]


class Engine(Protocol):
    """The policy as seen by the search (vLLM replicas in production, ``FakeEngine`` in tests)."""

    def expand(self, requests: Sequence[ExpandRequest]) -> list[list[Step] | None]:
        """One list of candidate steps per request; None for a request that failed."""
        ...

    def evaluate(self, requests: Sequence[EvalRequest]) -> list[float]:
        """Self-evaluation confidence C in [0, 1] per request."""
        ...


@dataclass
class SearchStats:
    rounds: int = 0
    simulations: int = 0  # completed backups (expansions + terminal revisits)
    expansions: int = 0
    terminal_hits: int = 0
    abandoned: int = 0
    expand_requests: int = 0
    eval_requests: int = 0
    engine_seconds: float = 0.0
    seconds: float = 0.0


@dataclass
class SearchResult:
    trees: list[Tree]
    pairs: list[Pair]
    stats: SearchStats = field(default_factory=SearchStats)


class Searcher:
    """Runs simulations for many samples against one engine, in rounds (module doc).

    ``samples`` need ``id``, ``messages`` and ``tools`` (``itool_ray.data.Sample``), or what
    ``env`` (an ``itool_ray.envs`` environment) reads. ``trees`` (restored from a checkpoint,
    same order as ``samples``) continue an earlier search; new trees get R(s_0) from the reward
    and the engine on the first round.
    """

    def __init__(
        self,
        samples: Sequence[Any],
        engine: Engine,
        config: MCTSConfig,
        *,
        reward_fn: RewardFn | None = None,
        trees: Sequence[Tree] | None = None,
        policy_version: int | None = None,
        roots_pending: Sequence[int] | None = None,
        rollouts: Sequence[tuple[int, int]] = (),
        env: Any = None,
    ) -> None:
        self.samples = list(samples)
        self.engine = engine
        self.config = config
        self.reward_fn = reward_fn or no_outcome
        self.stats = SearchStats()
        if trees is None:
            version = policy_version or 0
            self.trees = [Tree(str(s.id), config, policy_version=version) for s in samples]
            self._roots_pending = list(range(len(self.trees)))
        else:
            if len(trees) != len(self.samples):
                raise ValueError("Searcher: trees and samples differ in length")
            for t, s in zip(trees, self.samples, strict=True):
                if t.tree_id != str(s.id):
                    raise ValueError(f"Searcher: tree {t.tree_id!r} does not match {s.id!r}")
                old = t.config
                if (old.gamma, old.revisit_terminals) != (config.gamma, config.revisit_terminals):
                    raise ValueError(
                        "Searcher: gamma / revisit_terminals differ from the trees' config; "
                        "rebuild the trees with Tree.from_dict(tree.to_dict(), config)"
                    )
                t.config = config  # budget, c_puct, k... may change between runs
                if policy_version is not None:
                    t.policy_version = policy_version
            self.trees = list(trees)
            self._roots_pending = list(roots_pending or [])
        by_id = {str(s.id): s for s in self.samples}
        if len(by_id) != len(self.samples):
            raise ValueError("Searcher: sample ids must be unique")
        reward = Reward.from_config(config, self.reward_fn)
        self.core = SimulationCore(config, reward, by_id, env=env)
        # rollouts going down: (tree index, next leaf), carried from one round to the next
        self._next: list[tuple[int, Leaf]] = [(i, self.trees[i].claim(x)) for i, x in rollouts]

    @property
    def done(self) -> bool:
        return not self._next and all(t.done for t in self.trees)

    def run(self, max_rounds: int | None = None) -> SearchResult:
        """Rounds until every tree is done (or ``max_rounds``); returns trees, pairs, stats."""
        rounds = 0
        while not self.done and (max_rounds is None or rounds < max_rounds):
            self.step()
            rounds += 1
        return SearchResult(self.trees, self.pairs(), self.stats)

    def pairs(self) -> list[Pair]:
        out: list[Pair] = []
        for t, s in zip(self.trees, self.samples, strict=True):
            out.extend(extract_pairs(t, s, env=self.core.env))
        return out

    def checkpoint(self) -> dict[str, Any]:
        """JSON-safe state between rounds: config, trees (in-flight marks cleared) and the
        rollouts still going down (restored in flight by ``restore``)."""
        return {
            "config": self.config.to_dict(),
            "sample_ids": [str(s.id) for s in self.samples],
            "roots_pending": list(self._roots_pending),
            "rollouts": [[i, leaf.node] for i, leaf in self._next],
            "trees": [t.to_dict() for t in self.trees],
        }

    @classmethod
    def restore(
        cls,
        state: dict[str, Any],
        samples: Sequence[Any],
        engine: Engine,
        *,
        config: MCTSConfig | None = None,
        reward_fn: RewardFn | None = None,
        policy_version: int | None = None,
    ) -> Searcher:
        """A searcher continuing ``state``; ``config`` (e.g. a larger budget) overrides it;
        ``policy_version`` None keeps the trees' versions."""
        cfg = config or MCTSConfig.from_dict(state["config"])
        if [str(s.id) for s in samples] != state["sample_ids"]:
            raise ValueError("Searcher.restore: samples do not match the checkpoint's sample ids")
        trees = [Tree.from_dict(d, cfg) for d in state["trees"]]
        return cls(
            samples,
            engine,
            cfg,
            reward_fn=reward_fn,
            trees=trees,
            policy_version=policy_version,
            roots_pending=state.get("roots_pending", []),
            rollouts=[(int(i), int(x)) for i, x in state.get("rollouts", [])],
        )

    # ------------------------------------------------------------------ one round
    def step(self) -> int:
        """One round (module doc); returns the simulations completed in it."""
        t0 = time.perf_counter()
        trees, core, st = self.trees, self.core, self.stats
        before = sum(t.simulations for t in trees)
        hits = core.terminal_hits
        if self._roots_pending:
            self._evaluate_roots()
        leaves, self._next = self._next, []
        for i, tree in enumerate(trees):
            leaves.extend((i, leaf) for leaf in core.leaves(tree))
        if leaves:
            try:
                self._expand_and_commit(leaves)
            except BaseException:  # engine or reward failure: leave no selection in flight
                for i, leaf in leaves:
                    if leaf.state != DONE:
                        trees[i].abandon(leaf)
                        st.abandoned += 1
                for i, leaf in self._next:
                    trees[i].abandon(leaf)
                    st.abandoned += 1
                self._next = []
                raise
        done = sum(t.simulations for t in trees) - before
        st.terminal_hits += core.terminal_hits - hits
        st.simulations += done
        st.rounds += 1
        st.seconds += time.perf_counter() - t0
        return done

    def _expand_and_commit(self, leaves: list[tuple[int, Leaf]]) -> None:
        st, trees, core = self.stats, self.trees, self.core
        requests = [core.request(trees[i], leaf) for i, leaf in leaves]
        results = self._call(self.engine.expand, requests)
        st.expand_requests += len(requests)
        evals: list[EvalRequest] = []
        staged: list[tuple[int, Leaf, int]] = []
        for (i, leaf), steps in zip(leaves, results, strict=True):
            tree = trees[i]
            if steps is None:
                tree.abandon(leaf)
                st.abandoned += 1
                continue
            core.stage(tree, leaf, steps)
            reqs = core.eval_requests(tree, leaf)
            evals.extend(reqs)
            staged.append((i, leaf, len(reqs)))
        confidences = self._call(self.engine.evaluate, evals) if evals else []
        st.eval_requests += len(evals)
        j = 0
        for i, leaf, m in staged:
            nxt = core.commit(trees[i], leaf, confidences[j : j + m])
            j += m
            if nxt is not None:
                self._next.append((i, nxt))
        st.expansions += len(staged)

    def _call(self, fn: Callable[[list], list], requests: list) -> list:
        t0 = time.perf_counter()
        try:
            out = fn(requests)
        finally:
            self.stats.engine_seconds += time.perf_counter() - t0
        if len(out) != len(requests):
            raise ValueError(f"engine returned {len(out)} results for {len(requests)} requests")
        return out

    def _evaluate_roots(self) -> None:
        idx = self._roots_pending
        reqs = [self.core.root_request(self.trees[i]) for i in idx]
        conf = self._call(self.engine.evaluate, reqs)
        self.stats.eval_requests += len(reqs)
        for i, c in zip(idx, conf, strict=True):
            self.core.root(self.trees[i], c)
        self._roots_pending = []


def search(
    samples: Sequence[Any],
    engine: Engine,
    config: MCTSConfig,
    *,
    reward_fn: RewardFn | None = None,
    trees: Sequence[Tree] | None = None,
    policy_version: int | None = None,
    max_rounds: int | None = None,
    env: Any = None,
) -> SearchResult:
    """Search every sample to ``config.simulations`` (see ``Searcher``)."""
    searcher = Searcher(
        samples,
        engine,
        config,
        reward_fn=reward_fn,
        trees=trees,
        policy_version=policy_version,
        env=env,
    )
    return searcher.run(max_rounds=max_rounds)
