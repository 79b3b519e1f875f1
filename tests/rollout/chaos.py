"""Faults on the real rollout service, for the chaos test (``tests/rollout/test_chaos.py``) and
the soak benchmark (``jobs/bench_soak.py``).

``ChaosReplica`` is a ``PolicyReplica`` (real vLLM engine) that can be told, through the pool
(``pool.call(i, "arm_poison")``, ``pool.call(i, "hang", seconds)``), to misbehave:

- **poison**: the first candidate of its next expansion is :data:`POISON` (the model output
  that once raised ``RecursionError`` out of the call parser), as if the engine had sampled
  it: the real step cutting, self-evaluation and call checking see it;
- **hang**: its engine stops answering for ``seconds`` (a stuck engine call holds the engine
  lock), so every expansion sent to it waits past the manager's ``call_timeout_s``.

A killed replica (``pool.kill(i)``) and a killed manager (:func:`kill_manager`) need no
help from the replica. :func:`account` reads a rollout folder back: every tree finished once,
every pair of a finished tree in ``pairs.jsonl``.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import cloudpickle

from itool_ray.rollout.journal import read_jsonl
from itool_ray.rollout.replica import PolicyReplica

POISON = "[f(a=" + "-" * 3000 + "1)]"
"""55 tokens under SmolLM2's tokenizer, 3,006 under the tiny model's."""

# the replica class travels by value: Ray workers need not import this test package
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class ChaosReplica(PolicyReplica):
    """A ``PolicyReplica`` that poisons or hangs on request (module docstring). A restarted
    actor is a fresh one: whatever was armed is gone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.poison_left = 0
        self.poisoned = 0
        self.hangs_injected = 0
        self._hold: asyncio.Task | None = None
        generate = self.policy.generate

        def generate_maybe_poisoned(prompts, **kw):
            outs = generate(prompts, **kw)
            if self.poison_left and kw.get("stop") and outs and outs[0]:  # an expansion
                self.poison_left -= 1
                self.poisoned += 1
                first = outs[0][0]
                ids = tuple(self.engine.encode(POISON))
                fake = type(first)(ids, POISON, (-0.5,) * len(ids), "stop", None)  # EOS
                outs[0] = [fake, *outs[0][1:]]
            return outs

        self.policy.generate = generate_maybe_poisoned

    def arm_poison(self, n: int = 1) -> None:
        self.poison_left += n

    async def hang(self, seconds: float) -> None:
        """Hold the engine for ``seconds`` from now (returns at once)."""

        async def hold() -> None:
            async with self._engine_lock:
                await asyncio.sleep(seconds)

        self.hangs_injected += 1
        self._hold = asyncio.ensure_future(hold())

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "poisoned": self.poisoned,
            "hangs_injected": self.hangs_injected,
        }


def kill_manager(name: str) -> None:
    """Kill the tree manager actor called ``name``; Ray restarts it (the rollout driver calls
    ``run`` again and the new incarnation resumes from its checkpoint)."""
    import ray

    ray.kill(ray.get_actor(name), no_restart=False)


def manager_progress(name: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """The named manager's progress record; None while it is missing or restarting."""
    import ray

    try:
        return ray.get(ray.get_actor(name).progress.remote(), timeout=timeout)
    except Exception:
        return None


@dataclass(frozen=True)
class Accounting:
    """A rollout folder read back: ``finished.jsonl`` ids and pair counts, ``pairs.jsonl``."""

    finished_ids: list[str]
    pair_counts: dict[str, int]
    pair_lines: int
    pair_tree_ids: set[str]

    @property
    def duplicate_trees(self) -> int:
        return len(self.finished_ids) - len(set(self.finished_ids))

    @property
    def pairs_lost(self) -> int:
        """Pairs the finished trees emitted that ``pairs.jsonl`` does not hold."""
        return max(0, sum(self.pair_counts.values()) - self.pair_lines)

    @property
    def pairs_extra(self) -> int:
        """Lines of ``pairs.jsonl`` beyond the finished trees' counts (doubled or orphaned)."""
        return max(0, self.pair_lines - sum(self.pair_counts.values()))

    @property
    def orphan_pairs(self) -> bool:
        return not self.pair_tree_ids <= set(self.pair_counts)


def account(out: str | Path) -> Accounting:
    out = Path(out)
    finished = read_jsonl(out / "finished.jsonl")[0]
    pairs = read_jsonl(out / "pairs.jsonl")[0]
    return Accounting(
        finished_ids=[r["tree_id"] for r in finished],
        pair_counts={r["tree_id"]: r["pairs"] for r in finished},
        pair_lines=len(pairs),
        pair_tree_ids={p["tree_id"] for p in pairs},
    )
