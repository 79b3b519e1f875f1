"""ReplicaPool: starts PolicyReplica actors, routes requests, tracks health and versions.

Routing: every request of a tree goes to the replica that served the tree before (its KV
blocks for the tree's prompt are in that replica's prefix cache) while that replica is
healthy and not overloaded; otherwise to the least-loaded healthy replica, which then owns
the tree. A replica whose call fails is marked down and its trees move; Ray restarts the
actor (``max_restarts``), and the pool brings the new incarnation to the current policy
version before routing to it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class ReplicaState:
    handle: Any
    name: str
    healthy: bool = True
    load: int = 0  # requests sent and not answered
    incarnation: str | None = None
    version: int = -1
    failures: int = 0
    down_since: float | None = None


class ReplicaPool:
    """A set of replica actor handles plus the routing and version state of one process.

    Args:
        handles: replica actor handles (or ``(name, handle)`` pairs).
        version, adapter: the policy every replica must serve (adapter: path, payload or
            an ``ObjectRef`` to a payload published once with ``ray.put``).
        overload: a tree leaves its replica when that replica has this many more requests
            in flight than the least-loaded one.
    """

    def __init__(self, handles: Sequence[Any], *, version: int = 0, adapter: Any = None,
                 overload: int = 64) -> None:  # fmt: skip
        self.replicas: list[ReplicaState] = []
        for i, h in enumerate(handles):
            name, handle = h if isinstance(h, tuple) else (f"replica-{i}", h)
            self.replicas.append(ReplicaState(handle, name))
        self.version = version
        self.adapter = adapter
        self.overload = overload
        self._owner: dict[str, int] = {}
        self._owned = [0] * len(self.replicas)
        self.moves = 0

    # ---- launching -------------------------------------------------------------------
    @classmethod
    def start(cls, n: int, engine_config, *, num_cpus: float = 1, num_gpus: float = 0,
              resources: dict[str, float] | None = None, max_restarts: int = 3,
              temperature: float = 1.0, name_prefix: str | None = None,
              env: dict[str, str] | None = None, **kwargs: Any) -> ReplicaPool:  # fmt: skip
        """Launch ``n`` replica actors (each builds its own vLLM engine)."""
        import ray

        from itool_ray.rollout.replica import PolicyReplica

        actor = ray.remote(PolicyReplica)
        handles = []
        for i in range(n):
            name = f"{name_prefix or 'itool-replica'}-{i}"
            opts: dict[str, Any] = dict(
                num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts,
                max_task_retries=0, max_concurrency=1000,
                runtime_env={"env_vars": dict(env or {})},
            )  # fmt: skip
            if resources:
                opts["resources"] = dict(resources)
            if name_prefix:
                opts["name"] = name
            handles.append(
                (name, actor.options(**opts).remote(engine_config, name, temperature=temperature))
            )
        return cls(handles, **kwargs)

    async def wait_ready(self, timeout: float = 600.0) -> None:
        """Wait until every replica answers, and bring each to the current version."""
        await asyncio.wait_for(
            asyncio.gather(*(self.sync(i) for i in range(len(self.replicas)))), timeout
        )

    # ---- versions ----------------------------------------------------------------------
    async def sync(self, i: int) -> None:
        """Make replica ``i`` serve the pool's policy version (after a start or a restart)."""
        st = self.replicas[i]
        info = await st.handle.info.remote()
        if info["version"] != self.version:
            await st.handle.load_policy.remote(self.version, self.adapter)
            info = await st.handle.info.remote()
        st.incarnation, st.version = info["incarnation"], info["version"]
        st.healthy, st.down_since, st.load = True, None, 0

    async def broadcast(self, version: int, adapter: Any) -> float:
        """Switch every healthy replica to ``version`` without restarting engines; seconds."""
        start = time.perf_counter()
        self.version, self.adapter = version, adapter
        live = [i for i, r in enumerate(self.replicas) if r.healthy]
        await asyncio.gather(
            *(self.replicas[i].handle.load_policy.remote(version, adapter) for i in live)
        )
        for i in live:
            self.replicas[i].version = version
        return time.perf_counter() - start

    # ---- routing -----------------------------------------------------------------------
    def healthy(self) -> list[int]:
        return [i for i, r in enumerate(self.replicas) if r.healthy]

    def route(self, tree_id: str) -> int | None:
        """The replica for the next request of ``tree_id`` (None when none is healthy).

        A new (or moving) tree goes to the least-loaded healthy replica, ties broken by the
        fewest trees owned, so trees spread evenly before any load exists.
        """
        reps = self.replicas
        owner = self._owner.get(tree_id)
        if owner is not None and reps[owner].healthy and reps[owner].load < self.overload:
            return owner  # fast path: loads are >= 0, so the gap to the least loaded is smaller
        live = self.healthy()
        if not live:
            return None
        if owner is not None and reps[owner].healthy:
            if reps[owner].load - min(reps[i].load for i in live) < self.overload:
                return owner
            self.moves += 1
        least = min(live, key=lambda i: (reps[i].load, self._owned[i]))
        if owner is not None:
            self._owned[owner] -= 1
        self._owner[tree_id] = least
        self._owned[least] += 1
        return least

    def forget(self, tree_id: str) -> None:
        owner = self._owner.pop(tree_id, None)
        if owner is not None:
            self._owned[owner] -= 1

    def mark_down(self, i: int, reason: str) -> None:
        st = self.replicas[i]
        if st.healthy:
            log.warning("replica %s down: %s", st.name, reason)
        st.healthy, st.failures, st.down_since = False, st.failures + 1, time.monotonic()

    async def revive(self, timeout: float = 2.0) -> list[int]:
        """Try every down replica (Ray restarts dead actors; a restarting one does not answer
        within ``timeout``) and bring the revived ones to the current version."""
        revived = []
        for i, st in enumerate(self.replicas):
            if st.healthy:
                continue
            try:
                await asyncio.wait_for(st.handle.info.remote(), timeout)
                await self.sync(i)
            except Exception:  # still restarting, or gone for good
                continue
            log.info(
                "replica %s back (incarnation %s, version %d)", st.name, st.incarnation, st.version
            )
            revived.append(i)
        return revived

    async def infos(self, timeout: float = 5.0) -> list[dict | None]:
        async def one(st: ReplicaState):
            try:
                return await asyncio.wait_for(st.handle.info.remote(), timeout)
            except Exception:
                return None

        return list(await asyncio.gather(*(one(st) for st in self.replicas)))

    def kill(self, i: int, no_restart: bool = False) -> None:
        import ray

        ray.kill(self.replicas[i].handle, no_restart=no_restart)

    def shutdown(self) -> None:
        import ray

        for st in self.replicas:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(st.handle, no_restart=True)
