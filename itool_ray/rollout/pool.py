"""ReplicaPool: starts PolicyReplica actors, routes requests, tracks health and versions.

Routing: every request of a tree goes to the replica that served the tree before (its KV
blocks for the tree's prompt are in that replica's prefix cache) while that replica is
healthy and not overloaded; otherwise to the least-loaded healthy replica, which then owns
the tree. A replica whose call fails is marked down and its trees move; Ray restarts the
actor (``max_restarts``), and the pool brings the new incarnation to the current policy
version before routing to it again.

One owner of replica state: a ``ReplicaPool`` is the only record of its replicas' health,
incarnations, versions and of the replicas autoscaling added. Callers act on replicas through
its methods (:meth:`ReplicaPool.call` for a replica method), never through the actor handles.
A rollout lends the pool to the tree manager: in-process the manager holds the same object;
as a Ray actor it receives the pool with its construction and hands it back when the rollout
ends (``TreeManager.release_pool``), and the driver's pool takes that state over
(:meth:`ReplicaPool.adopt`), so what the manager learned (a replica down, restarted, added or
retired) is what the driver sees next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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
    launched: bool = False  # started by this pool (autoscaling): this pool may stop it
    starting: bool = False  # launched, engine not answering yet
    retired: bool = False  # stopped on purpose: never routed to or revived again
    since: float = 0.0  # when it was launched
    idle_since: float | None = None  # nothing in flight since
    restarted: bool = False  # killed for a restart (hung) and not back yet


def _actor_died(exc: BaseException) -> bool:
    try:
        import ray
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, ray.exceptions.RayActorError)


def _restarting(exc: BaseException) -> bool:
    """Ray is restarting the actor (killed, crashed): it answers again once it is back."""
    try:
        import ray
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, ray.exceptions.ActorUnavailableError)


@dataclass(frozen=True)
class ReplicaSpec:
    """What one replica actor is made of: enough to launch more of them later (autoscaling)
    from any process, e.g. the tree manager's actor."""

    engine_config: Any
    num_cpus: float = 1
    num_gpus: float = 0
    resources: dict[str, float] | None = None
    max_restarts: int = 3
    temperature: float = 1.0
    env: dict[str, str] | None = None
    name_prefix: str | None = None
    replica_cls: type | None = None  # a PolicyReplica subclass (None: PolicyReplica)

    def launch(self, name: str, *, named: bool | None = None) -> Any:
        """Start one ``PolicyReplica`` actor called ``name``; returns its handle at once (the
        engine builds in the actor; an actor waiting for a node is pending, not failed)."""
        import ray

        from itool_ray.actors import actor_options
        from itool_ray.rollout.replica import PolicyReplica

        opts = actor_options(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            resources=self.resources,
            env=self.env or {},
            max_restarts=self.max_restarts,
            name=name if (self.name_prefix if named is None else named) else None,
            max_task_retries=0,
            max_concurrency=1000,
        )
        actor = ray.remote(self.replica_cls or PolicyReplica).options(**opts)
        return actor.remote(self.engine_config, name, temperature=self.temperature)

    @staticmethod
    def stop(handle: Any) -> None:
        """Stop a replica actor for good (no restart)."""
        import ray

        with contextlib.suppress(Exception):  # already gone
            ray.kill(handle, no_restart=True)


class ReplicaPool:
    """A set of replica actor handles plus the routing and version state of one process.

    Args:
        handles: replica actor handles (or ``(name, handle)`` pairs).
        version, adapter: the policy every replica must serve (adapter: path, payload or
            an ``ObjectRef`` to a payload published once with ``ray.put``).
        overload: a tree leaves its replica when that replica has this many more requests
            in flight than the least-loaded one.
        spec: how to launch more replicas (:meth:`add`); None: the pool cannot grow.
        weights: full-weight bucket references of ``version`` (instead of ``adapter``).
    """

    def __init__(
        self,
        handles: Sequence[Any],
        *,
        version: int = 0,
        adapter: Any = None,
        overload: int = 64,
        spec: ReplicaSpec | None = None,
        weights: list | None = None,
    ) -> None:
        self.spec = spec
        self.weights = weights  # full-weight buckets of `version` (broadcast_weights), or None
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

    # ---- ownership -------------------------------------------------------------------
    def adopt(self, other: ReplicaPool) -> None:
        """Take over the replica state of ``other``, this pool as handed back by the tree
        manager that ran a rollout on it (module docstring): health, incarnations, versions,
        failures, and the replicas it added (retired by the end of a rollout). Routing state
        (loads, which replica serves which tree) starts afresh; ``overload`` stays."""
        if other is self:
            return
        self.replicas = [replace(st, load=0) for st in other.replicas]
        self.version, self.adapter, self.weights = other.version, other.adapter, other.weights
        self.spec = other.spec if other.spec is not None else self.spec
        self._owner = {}
        self._owned = [0] * len(self.replicas)
        self.moves = other.moves  # counted on from this pool's own (lent as a copy)

    def call(self, i: int, method: str, *args: Any) -> Any:
        """``PolicyReplica.<method>(*args)`` on replica ``i``; returns the call's reference
        (an ``ObjectRef``: awaitable, or read with ``ray.get``). The pool's health and load
        bookkeeping is the caller's (``mark_down`` on a failure)."""
        return getattr(self.replicas[i].handle, method).remote(*args)

    # ---- launching -------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        n: int,
        engine_config,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        resources: dict[str, float] | None = None,
        max_restarts: int = 3,
        temperature: float = 1.0,
        name_prefix: str | None = None,
        env: dict[str, str] | None = None,
        replica_cls: type | None = None,
        **kwargs: Any,
    ) -> ReplicaPool:
        """Launch ``n`` replica actors (each builds its own vLLM engine); ``replica_cls``: a
        ``PolicyReplica`` subclass to launch instead (e.g. the fault-injecting replica of the
        chaos tests)."""
        spec = ReplicaSpec(
            engine_config,
            num_cpus,
            num_gpus,
            dict(resources or {}) or None,
            max_restarts,
            temperature,
            dict(env or {}),
            name_prefix,
            replica_cls,
        )
        prefix = name_prefix or "itool-replica"
        handles = [(f"{prefix}-{i}", spec.launch(f"{prefix}-{i}")) for i in range(n)]
        return cls(handles, spec=spec, **kwargs)

    # ---- growing and shrinking (autoscaling) ---------------------------------------------
    def add(self, name: str) -> int:
        """Launch one more replica from ``spec``; it is ``starting`` (not routed to) until
        :meth:`sync` brings it to the current version. Returns its index."""
        if self.spec is None:
            raise RuntimeError("ReplicaPool.add: this pool has no ReplicaSpec to launch from")
        handle = self.spec.launch(name)
        st = ReplicaState(
            handle, name, healthy=False, launched=True, starting=True, since=time.monotonic()
        )
        self.replicas.append(st)
        self._owned.append(0)
        return len(self.replicas) - 1

    def retire(self, i: int) -> None:
        """Stop replica ``i`` for good (its trees move on their next request)."""
        st = self.replicas[i]
        st.healthy, st.starting, st.retired = False, False, True
        if self.spec is not None:
            self.spec.stop(st.handle)

    def starting(self) -> list[int]:
        return [i for i, r in enumerate(self.replicas) if r.starting]

    def serving(self) -> int:
        return len(self.healthy())

    async def start_one(self, i: int, timeout: float) -> bool:
        """Wait for launched replica ``i`` to answer and bring it to the current version;
        gives up (and stops it) after ``timeout`` seconds. True when it serves."""
        try:
            await asyncio.wait_for(self.sync(i), timeout)
        except Exception as e:  # no node came, or the engine failed to build
            log.warning("replica %s did not start: %s", self.replicas[i].name, e)
            self.retire(i)
            return False
        self.replicas[i].starting = False
        self.replicas[i].idle_since = time.monotonic()
        return True

    async def wait_ready(self, timeout: float = 600.0, relaunches: int = 2) -> None:
        """Wait until every replica answers, and bring each to the current version.

        A replica that Ray is restarting (killed or crashed, e.g. while a restarted tree
        manager waits for it) is asked again until it is back. A replica whose actor died
        while starting (its constructor raised: the engine did not build, an import failed on
        a fresh node) is launched again from ``spec``, up to ``relaunches`` times, before the
        error is raised.
        """
        live = [i for i, r in enumerate(self.replicas) if not r.retired]
        await asyncio.wait_for(asyncio.gather(*(self._ready(i, relaunches) for i in live)), timeout)

    async def wait_any_ready(self, timeout: float = 600.0, grace_s: float = 5.0) -> list[int]:
        """Wait until one replica answers at the current version, then ``grace_s`` more for
        the others; those still restarting (or failing) then are marked down, for
        :meth:`revive` to bring back while the work goes on. Returns the ready replicas.
        Raises the first error (or ``TimeoutError``) when none gets ready in ``timeout``."""
        live = [i for i, r in enumerate(self.replicas) if not r.retired]
        tasks = {asyncio.ensure_future(self._ready(i, 0)): i for i in live}
        ready: list[int] = []
        errors: list[BaseException] = []
        try:
            deadline = time.monotonic() + timeout
            pending = set(tasks)
            while pending and not ready:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                self._sort_out(done, tasks, ready, errors)
            if ready and pending:
                done, pending = await asyncio.wait(pending, timeout=grace_s)
                self._sort_out(done, tasks, ready, errors)
        finally:
            for t, i in tasks.items():
                if not t.done():
                    t.cancel()
                if i not in ready:
                    self.mark_down(i, "not ready when the work began")
        if not ready:
            raise errors[0] if errors else TimeoutError(f"no replica ready in {timeout:g} s")
        return sorted(ready)

    @staticmethod
    def _sort_out(done, tasks, ready: list[int], errors: list[BaseException]) -> None:
        for t in done:
            if t.exception() is not None:
                errors.append(t.exception())
            else:
                ready.append(tasks[t])

    async def _ready(self, i: int, relaunches: int) -> None:
        """Replica ``i`` answering at the current version (see :meth:`wait_ready`)."""
        attempt = 0
        while True:
            try:
                return await self.sync(i)
            except Exception as e:
                if _restarting(e):
                    await asyncio.sleep(1.0)
                    continue
                if self.spec is None or attempt == relaunches or not _actor_died(e):
                    raise
                attempt += 1
                st = self.replicas[i]
                log.warning(
                    "replica %s died while starting (%s); launching it again",
                    st.name,
                    str(e).splitlines()[-1][:300],
                )
                try:
                    st.handle = self.spec.launch(st.name)
                except ValueError as taken:  # ActorAlreadyExistsError: Ray restarts it
                    log.warning("replica %s: %s; waiting for Ray's restart", st.name, taken)
                    await asyncio.sleep(2.0)

    # ---- versions ----------------------------------------------------------------------
    async def sync(self, i: int) -> None:
        """Make replica ``i`` serve the pool's policy version (after a start or a restart)."""
        st = self.replicas[i]
        info = await st.handle.info.remote()
        if info["version"] != self.version:
            if self.weights is not None:
                await st.handle.load_full_weights.remote(self.version, self.weights)
            else:
                await st.handle.load_policy.remote(self.version, self.adapter)
            info = await st.handle.info.remote()
        st.incarnation, st.version = info["incarnation"], info["version"]
        st.healthy, st.down_since, st.load, st.restarted = True, None, 0, False

    async def broadcast(self, version: int, adapter: Any) -> float:
        """Switch every healthy replica to ``version`` without restarting engines; seconds."""
        start = time.perf_counter()
        self.version, self.adapter, self.weights = version, adapter, None
        live = [i for i, r in enumerate(self.replicas) if r.healthy]
        await asyncio.gather(
            *(self.replicas[i].handle.load_policy.remote(version, adapter) for i in live)
        )
        for i in live:
            self.replicas[i].version = version
        return time.perf_counter() - start

    async def broadcast_weights(self, version: int, buckets: list) -> float:
        """Full-weight sync (engines without LoRA, ``EngineConfig.weight_sync``): every healthy
        replica loads the bucket references (published once by ``Trainer.publish_weights``),
        one bucket per engine call, without restarting; seconds. Replicas restarted later
        load the same buckets before serving."""
        start = time.perf_counter()
        self.version, self.adapter, self.weights = version, None, list(buckets)
        live = [i for i, r in enumerate(self.replicas) if r.healthy]
        await asyncio.gather(
            *(self.replicas[i].handle.load_full_weights.remote(version, self.weights) for i in live)
        )
        for i in live:
            self.replicas[i].version = version
        return time.perf_counter() - start

    # ---- routing -----------------------------------------------------------------------
    def healthy(self) -> list[int]:
        return [i for i, r in enumerate(self.replicas) if r.healthy and not r.starting]

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

    def move(self, tree_id: str, gap: int, room: Callable[[int], bool]) -> int | None:
        """Move ``tree_id`` off its replica, which cannot take more now, to the least-loaded
        healthy replica with ``room`` and at least ``gap`` fewer requests in flight (e.g. a
        replica the autoscaler just added). None when no replica qualifies: the tree waits.
        """
        owner = self._owner.get(tree_id)
        if owner is None:
            return None
        reps = self.replicas
        limit = reps[owner].load - gap
        live = [i for i in self.healthy() if i != owner and reps[i].load <= limit and room(i)]
        if not live:
            return None
        least = min(live, key=lambda i: (reps[i].load, self._owned[i]))
        self._owned[owner] -= 1
        self._owner[tree_id] = least
        self._owned[least] += 1
        self.moves += 1
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
            if st.healthy or st.starting or st.retired:
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
            if st.retired:
                return None
            try:
                return await asyncio.wait_for(st.handle.info.remote(), timeout)
            except Exception:
                return None

        return list(await asyncio.gather(*(one(st) for st in self.replicas)))

    def restart(self, i: int) -> None:
        """Replace a hung replica: kill its actor and let Ray restart it (``max_restarts``);
        it comes back through ``revive``. Once per hang: a replica restarted and not back yet
        (its other calls time out too) is not killed again. A handle that is not a Ray actor
        is left alone."""
        import ray

        st = self.replicas[i]
        if st.restarted:
            return
        if not isinstance(st.handle, ray.actor.ActorHandle):  # ray.kill would start a Ray
            log.warning("replica %s: not an actor, not restarted", st.name)
            return
        try:
            ray.kill(st.handle, no_restart=False)
            st.restarted = True
        except Exception as e:  # already gone
            log.warning("replica %s: restart not possible (%s)", st.name, e)

    def kill(self, i: int, no_restart: bool = False) -> None:
        import ray

        ray.kill(self.replicas[i].handle, no_restart=no_restart)

    def shutdown(self) -> None:
        import ray

        for st in self.replicas:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(st.handle, no_restart=True)
