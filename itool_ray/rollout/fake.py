"""FAKE policy replicas, in process: stand-ins for ``PolicyReplica`` (no Ray, no engine) for
the benchmark that isolates the tree manager (``jobs/bench_manager.py``) and the tests of its
scheduling and fault handling. Named fake: nothing here serves a model.

A ``FakeReplica`` has the methods the manager and pool call (``expand``, ``evaluate``,
``info``, ``load_policy``), each with a ``.remote(...)`` returning an asyncio task, like a Ray
actor handle. It models one engine as ``PolicyReplica`` drives vLLM: calls queue while the
engine is busy, the engine takes whole queued calls up to ``batch`` requests into one step,
sleeps ``latency`` seconds (times a uniform factor in [1 - jitter, 1 + jitter], mean 1)
whatever the step's size, and answers with ``itool_ray.mcts.fake.FakeEngine`` (deterministic
steps and confidences). A root self-evaluation counts ``eval_cost`` of an expansion toward a
step's ``batch``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from itool_ray.mcts import FakeEngine
from itool_ray.mcts.search import EvalRequest, ExpandRequest
from itool_ray.rollout.replica import Expansion


@dataclass(frozen=True)
class FakeLatency:
    """The fake engine's cost model (module docstring)."""

    latency: float = 4.0
    batch: int = 64
    jitter: float = 0.2
    eval_cost: float = 0.25

    def ideal(self, replicas: int) -> float:
        return replicas * self.batch / self.latency


class FakeMethod:
    """``handle.method.remote(*args)`` -> an asyncio task, as a Ray actor method returns a ref."""

    def __init__(self, fn) -> None:
        self._fn = fn

    def remote(self, *args: Any) -> asyncio.Task:
        return asyncio.ensure_future(self._fn(*args))


@dataclass
class FakeStats:
    steps: int = 0
    expansions: int = 0
    evaluations: int = 0
    busy_seconds: float = 0.0
    requests_in_steps: int = 0
    answer_cpu_seconds: float = 0.0  # thread CPU spent building the fake answers


class FakeReplica:
    """A FAKE policy replica: the ``PolicyReplica`` methods the manager and pool call
    (``expand``, ``evaluate``, ``info``, ``load_policy``), each with ``.remote``."""

    def __init__(self, name: str, cost: FakeLatency, seed: int = 0) -> None:
        self.name = name
        self.cost = cost
        self.engine = FakeEngine(seed=0)  # same answers on every replica: routing-independent
        self.version = 0
        self.stats = FakeStats()
        self._rng = random.Random(seed)
        self._queue: deque[tuple[str, list, asyncio.Future]] = deque()
        self._worker: asyncio.Task | None = None
        self.expand = FakeMethod(self._expand)
        self.evaluate = FakeMethod(self._evaluate)
        self.info = FakeMethod(self._info)
        self.load_policy = FakeMethod(self._load_policy)

    async def _info(self) -> dict[str, Any]:
        return {"version": self.version, "incarnation": self.name, "expansions": 0}

    async def _load_policy(self, version: int, adapter: Any) -> int:
        self.version = version
        return version

    async def _expand(self, requests: list[ExpandRequest]) -> list[Expansion]:
        return await self._submit("expand", list(requests))

    async def _evaluate(self, requests: list[EvalRequest]) -> list[float]:
        return await self._submit("evaluate", list(requests))

    def _submit(self, kind: str, requests: list) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((kind, requests, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._run())
        return fut

    def _units(self, kind: str, requests: list) -> float:
        return len(requests) * (1.0 if kind == "expand" else self.cost.eval_cost)

    async def _run(self) -> None:
        cost, st = self.cost, self.stats
        while self._queue:
            step = [self._queue.popleft()]
            units = self._units(*step[0][:2])
            while self._queue and units + self._units(*self._queue[0][:2]) <= cost.batch:
                step.append(self._queue.popleft())
                units += self._units(*step[-1][:2])
            j = cost.jitter
            seconds = (
                cost.latency
                * self._rng.uniform(1 - j, 1 + j)
                * max(1, math.ceil(units / cost.batch - 1e-9))
            )
            await asyncio.sleep(seconds)
            st.busy_seconds += seconds
            st.steps += 1
            st.requests_in_steps += sum(len(r) for k, r, _ in step if k == "expand")
            t0 = time.thread_time()
            for kind, requests, fut in step:
                out = self._answer(kind, requests)
                if not fut.done():
                    fut.set_result(out)
            st.answer_cpu_seconds += time.thread_time() - t0

    def _answer(self, kind: str, requests: list) -> list:
        if kind == "evaluate":
            self.stats.evaluations += len(requests)
            return self.engine.evaluate(requests)
        self.stats.expansions += len(requests)
        out = []
        for r, steps in zip(requests, self.engine.expand(requests), strict=True):
            texts = list(dict.fromkeys(s.text for s in steps))
            evals = [EvalRequest(r.tree_id, r.node_id, (), (), r.prefix + t, False) for t in texts]
            out.append(
                Expansion(
                    steps, dict(zip(texts, self.engine.evaluate(evals), strict=True)), self.version
                )
            )
        return out
