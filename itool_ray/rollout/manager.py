"""TreeManager: many MCTS trees at once, several simulations in flight per tree, expansions
batched across trees onto the replicas, backups as results arrive (no lockstep).

A plain class with async methods; launched as an async Ray actor
(``ray.remote(num_cpus=1)(TreeManager)``) so ``progress()`` answers while ``run()`` works.

One loop turn: (1) revive replicas that came back; (2) fill: select leaves from the active
trees (in-flight visit counts keep concurrent selections apart) until every healthy replica
has ``max_batch`` requests queued, routing each by tree (prefix-cache affinity);
(3) dispatch: one ``expand`` call per replica with room (``calls_per_replica``; a call beyond
the first only with a full batch); (4) wait for the first call to finish and commit its
leaves through the simulation core (``itool_ray.mcts.core``, the same code the one-process
``Searcher`` runs: R composed by ``Reward`` from O, the call checker, and C, the replica's
self-evaluation); a terminal rollout's next leaf is queued first at the next fill, so a
simulation that goes deeper is more requests in the same batches, not a lockstep; a failed
call marks its replica down and abandons its leaves, which are selected again and go
elsewhere: nothing is lost; (5) autoscale: with
``autoscale`` settings and a ``ReplicaSpec``, start replicas while trees wait for a free one
and stop the ones it started once idle (``itool_ray.rollout.autoscale``). Finished trees emit
their step-level pairs to ``out_dir/pairs.jsonl``; unfinished trees are checkpointed to
``out_dir/trees.json`` so a new manager resumes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itool_ray import metrics
from itool_ray.mcts import MCTSConfig, Reward, SimulationCore, Tree, extract_pairs
from itool_ray.mcts.core import OutcomeFn
from itool_ray.mcts.rewards import calls_outcome
from itool_ray.rollout.autoscale import AutoscaleSettings, ScalePolicy
from itool_ray.rollout.journal import (
    append_jsonl,
    read_jsonl,
    repair,
    write_json_atomic,
    write_jsonl_atomic,
)
from itool_ray.rollout.pool import ReplicaPool, ReplicaSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManagerSettings:
    """Scheduling knobs of the tree manager.

    Attributes:
        max_batch: most expansion requests in one replica call.
        calls_per_replica: replica calls in flight per replica (2 keeps the next batch
            queued on the replica while the current one runs).
        checkpoint_every_s: seconds between tree checkpoints (0: only at the end).
        revive_every_s: seconds between attempts to bring down replicas back.
        keep_trees: finished trees saved whole to ``out_dir/trees_finished.jsonl`` (the first
            ones to finish), for reports and inspection.
        overload: requests a tree's replica may have in flight beyond the least-loaded
            replica before the tree moves (prefix-cache affinity vs balance). None: one
            replica's whole pipeline, ``max_batch * (calls_per_replica + 1)`` (sent calls plus
            a full queue, the most the manager ever gives a replica): a tree moves only when
            its replica is backed up and another is idle. A smaller value moves trees all the
            time under load, since every answered call drops a replica's load by a batch.
        call_timeout_s: deadline of one replica call (expansion batch or root evaluations).
            A call past it counts as a hang: the replica is marked down and restarted (Ray
            replaces the actor), its leaves are abandoned and selected again elsewhere.
            None: no deadline.
    """

    max_batch: int = 64
    calls_per_replica: int = 2
    checkpoint_every_s: float = 30.0
    revive_every_s: float = 3.0
    overload: int | None = None
    keep_trees: int = 2
    call_timeout_s: float | None = 600.0

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.calls_per_replica < 1:
            raise ValueError("ManagerSettings.max_batch and calls_per_replica must be >= 1")
        if self.call_timeout_s is not None and not self.call_timeout_s > 0:
            raise ValueError(
                f"ManagerSettings.call_timeout_s must be > 0 (or None), got {self.call_timeout_s!r}"
            )
        if self.overload is not None and self.overload < 1:
            raise ValueError("ManagerSettings.overload must be >= 1 (or None)")

    @property
    def overload_requests(self) -> int:
        """``overload``, with None resolved (see the attribute)."""
        if self.overload is not None:
            return self.overload
        return self.max_batch * (self.calls_per_replica + 1)


class TreeManager:
    """Owns the trees of one rollout (module docstring). ``outcome`` is the O term of the
    reward (default: the call checker ``config.outcome`` names, ``calls_outcome``); ``env``
    an ``itool_ray.envs`` environment (default: the single-turn task with ``outcome``).

    ``replicas``: the driver's ``ReplicaPool``, used as is (it carries the version, adapter
    or weights and the ``ReplicaSpec``; its ``overload`` is set from ``settings``; as a Ray
    actor the manager gets the pool with its arguments and hands it back with
    :meth:`release_pool`), or replica handles (``(name, handle)`` pairs), from which the
    manager builds a pool of its own with ``version``, ``adapter``, ``weights`` and ``spec``
    (tests and benchmarks with in-process replicas).
    """

    def __init__(
        self,
        samples: Sequence[Any],
        config: MCTSConfig,
        replicas: ReplicaPool | Sequence[Any],
        *,
        version: int = 0,
        adapter: Any = None,
        weights: list | None = None,
        out_dir: str | None = None,
        settings: ManagerSettings | None = None,
        spec: ReplicaSpec | None = None,
        autoscale: AutoscaleSettings | None = None,
        outcome: OutcomeFn | None = None,
        env: Any = None,
    ) -> None:
        env_outcome = getattr(env, "outcome_mode", "exact")  # an environment's own O: exact
        if env is not None and env_outcome != config.outcome:
            raise ValueError(
                f"TreeManager: mcts.outcome={config.outcome}, but the environment "
                f"{getattr(env, 'name', env)!r} computes O as {env_outcome!r} "
                "(build it with envs.registry.environment_for)"
            )
        self.samples = {str(s.id): s for s in samples}
        if len(self.samples) != len(samples):
            raise ValueError("TreeManager: sample ids must be unique")
        self.config = config
        self.settings = settings or ManagerSettings()
        if isinstance(replicas, ReplicaPool):
            if version or adapter is not None or weights is not None or spec is not None:
                raise ValueError(
                    "TreeManager: a ReplicaPool carries its version, adapter, weights and spec"
                )
            self.pool = replicas
            self.pool.overload = self.settings.overload_requests
        else:
            self.pool = ReplicaPool(
                replicas,
                version=version,
                adapter=adapter,
                weights=weights,
                overload=self.settings.overload_requests,
                spec=spec,
            )
        if autoscale is not None and self.pool.spec is None:
            raise ValueError("TreeManager: autoscale needs a ReplicaSpec to launch replicas")
        self._scaler = ScalePolicy(autoscale, self.settings.max_batch) if autoscale else None
        self._waiting = 0  # leaves that found every replica queue full in the last fill
        self._starts: set[asyncio.Task] = set()
        self.scale_events: list[dict[str, Any]] = []
        self.version = self.pool.version
        self.out_dir = Path(out_dir) if out_dir else None
        reward = Reward.from_config(config, outcome or calls_outcome(config))
        self.core = SimulationCore(config, reward, self.samples, env=env)
        self._rollouts: list[tuple[Tree, Any]] = []  # simulations going down: their next leaves
        self.trees: dict[str, Tree] = {}
        self.finished: dict[str, int] = {}  # tree id -> pairs emitted
        self.pairs_emitted = 0
        self.expansions = 0
        self.tokens = 0  # generated tokens of the steps backed up
        self.failures = 0
        self.hangs = 0  # replica calls past call_timeout_s
        self._rate_mark = (time.monotonic(), 0, 0)  # (t, expansions, tokens) of the last rate
        self.started = time.monotonic()
        self.instance = uuid.uuid4().hex[:12]  # a restarted manager is a new instance
        self._prompt_roots: set[str] = set()  # trees restored from a checkpoint
        self._queue: dict[int, list] = {}
        self._last_ckpt = time.monotonic()
        self._kept = 0  # whole trees saved to trees_finished.jsonl (counted once, at resume)
        if self.out_dir:
            self._resume()

    # ---- checkpoint / resume -------------------------------------------------------------
    def _resume(self) -> None:
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir
        done_file, pairs_file = out / "finished.jsonl", out / "pairs.jsonl"
        kept_file = out / "trees_finished.jsonl"
        for f in (done_file, pairs_file, kept_file, out / "scaling.jsonl"):
            repair(f)  # a write cut by a kill leaves a torn last line: drop it
        for rec in read_jsonl(done_file)[0]:
            self.finished[rec["tree_id"]] = rec["pairs"]
        if pairs_file.exists():  # drop pairs of a tree whose "finished" line never made it
            pairs = read_jsonl(pairs_file)[0]
            keep = [p for p in pairs if p.get("tree_id") in self.finished]
            if len(keep) != len(pairs):
                write_jsonl_atomic(pairs_file, keep)
            self.pairs_emitted = len(keep)
        self._kept = len(read_jsonl(kept_file)[0])
        self._load_counters()
        trees_file = out / "trees.json"
        saved: dict[str, Any] = {}
        if trees_file.exists():  # written atomically; unreadable only if damaged by hand
            try:
                saved = json.loads(trees_file.read_text())
            except (ValueError, RecursionError) as e:
                log.warning("resume: %s unreadable (%s); its trees start again", trees_file, e)
        for tid, d in saved.items():
            if tid in self.samples and tid not in self.finished:
                try:
                    self.trees[tid] = Tree.from_dict(d, self.config)
                except (ValueError, KeyError, TypeError) as e:
                    log.warning("resume: tree %s not restored (%s); it starts again", tid, e)
                    continue
                self.trees[tid].policy_version = self.version
                self._prompt_roots.add(tid)
        log.info("resume: %d trees finished, %d restored", len(self.finished), len(self.trees))

    _COUNTERS = ("failures", "hangs")  # carried across restarts: a count of what happened

    def _load_counters(self) -> None:
        assert self.out_dir is not None
        path = self.out_dir / "counters.json"
        try:
            saved = json.loads(path.read_text()) if path.exists() else {}
        except ValueError as e:  # written atomically; unreadable only if damaged by hand
            log.warning("resume: %s unreadable (%s); its counters start at 0", path, e)
            saved = {}
        for name in self._COUNTERS:
            value = saved.get(name, 0) if isinstance(saved, dict) else 0
            setattr(self, name, value if isinstance(value, int) and value >= 0 else 0)

    def _save_counters(self) -> None:
        if self.out_dir is None:
            return
        counts = {name: getattr(self, name) for name in self._COUNTERS}
        write_json_atomic(self.out_dir / "counters.json", counts)

    def checkpoint(self) -> None:
        if self.out_dir is None:
            return
        self._save_counters()
        trees = {tid: t.to_dict() for tid, t in self.trees.items()}
        write_json_atomic(self.out_dir / "trees.json", trees)
        self._last_ckpt = time.monotonic()

    def _emit(self, tid: str) -> None:
        tree = self.trees.pop(tid)
        pairs = extract_pairs(tree, self.samples[tid], env=self.core.env)
        if self.out_dir is not None:
            out = self.out_dir
            if self._kept < self.settings.keep_trees:
                append_jsonl(out / "trees_finished.jsonl", [tree.to_dict()])
                self._kept += 1
            # pairs before the "finished" line: a kill in between leaves pairs that resume drops
            append_jsonl(out / "pairs.jsonl", [p.to_dict() for p in pairs])
            append_jsonl(
                out / "finished.jsonl",
                [
                    {
                        "tree_id": tid,
                        "pairs": len(pairs),
                        "nodes": len(tree),
                        "simulations": tree.simulations,
                    }
                ],
            )
        self.finished[tid] = len(pairs)
        self.pairs_emitted += len(pairs)
        self.pool.forget(tid)
        self.core.forget(tid)
        metrics.inc("trees_finished_total")
        metrics.inc("pairs_emitted_total", len(pairs))

    # ---- the loop --------------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "trees_total": len(self.samples),
            "trees_finished": len(self.finished),
            "trees_active": len(self.trees),
            "pairs": self.pairs_emitted,
            "expansions": self.expansions,
            "failures": self.failures,
            "hangs": self.hangs,
            "replicas_healthy": len(self.pool.healthy()),
            "trees_restored": len(self._prompt_roots),
            "replicas_starting": len(self.pool.starting()),
            "replicas_added": sum(e["event"] == "add" for e in self.scale_events),
            "replicas_retired": sum(e["event"] == "retire" for e in self.scale_events),
            "seconds": time.monotonic() - self.started,
        }

    async def run(self) -> dict[str, Any]:
        """Search every sample to its budget; returns the final progress record."""
        # one replica ready is enough to start: one that is restarting (killed, hung) is
        # marked down and revived by the loop below instead of holding up the others. No
        # relaunch here: an actor this manager launched would die with it (Ray ties an actor
        # to its owner), a dead replica is the driver's to replace
        await self.pool.wait_any_ready()
        metrics.set_gauge("policy_version", self.version)
        for tid in self.samples:
            if tid not in self.finished and tid not in self.trees:
                self.trees[tid] = Tree(tid, self.config, policy_version=self.version)
        await self._root_rewards([t for t in self.trees if t not in self._prompt_roots])
        inflight: dict[asyncio.Task, tuple[int, list]] = {}
        last_revive = time.monotonic()
        reviving: asyncio.Task | None = None  # in the background: the search goes on
        while self.trees or inflight:
            now = time.monotonic()
            if (
                now - last_revive > self.settings.revive_every_s
                and len(self.pool.healthy()) < len(self.pool.replicas)
                and (reviving is None or reviving.done())
            ):
                reviving = asyncio.ensure_future(self.pool.revive())
                last_revive = now
            self._fill()
            self._autoscale()
            self._dispatch(inflight)
            for tid in [t for t, tree in self.trees.items() if tree.done and not tree.outstanding]:
                self._emit(tid)
            if not inflight:
                if not self.trees:
                    break
                if not self.pool.healthy():
                    await asyncio.sleep(0.5)  # every replica down: wait for a restart
                    if reviving is None or reviving.done():
                        last_revive = 0.0
                    continue
                if not any(self._queue.values()):
                    await asyncio.sleep(0)
                    continue
            if inflight:
                # a replica that finishes starting also ends the wait: it gets work at once
                waits = [*inflight, *self._starts]
                if reviving is not None and not reviving.done():
                    waits.append(reviving)  # a replica back gets work at once
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task in inflight:
                        self._absorb(*inflight.pop(task), task)
            self._publish()
            every = self.settings.checkpoint_every_s
            if every and time.monotonic() - self._last_ckpt > every:
                self.checkpoint()
        if reviving is not None and not reviving.done():
            with contextlib.suppress(Exception):  # a replica coming back is handed back healthy
                await reviving
        self.checkpoint()
        self._shrink_all()
        self._publish()
        return self.progress()

    async def _root_rewards(self, tids: list[str]) -> None:
        """R(s0) of new trees: the reward of the empty response (``SimulationCore.root``)."""
        if not tids:
            return
        conf = [0.0] * len(tids)
        if self.config.w_confidence:
            by_replica: dict[int, list[int]] = {}
            for j, tid in enumerate(tids):
                by_replica.setdefault(self.pool.route(tid) or 0, []).append(j)

            async def one(i: int, js: list[int]) -> tuple[list[int], list[float]]:
                reqs = [self.core.root_request(self.trees[tids[j]]) for j in js]
                ref = self.pool.call(i, "evaluate", reqs)
                return js, await self._await(ref, self.settings.call_timeout_s)

            # every replica at once (one after the other cost one engine call per replica)
            for js, out in await asyncio.gather(*(one(i, js) for i, js in by_replica.items())):
                for j, c in zip(js, out, strict=True):
                    conf[j] = c
        for j, tid in enumerate(tids):
            self.core.root(self.trees[tid], conf[j])

    def _place(self, tree: Tree, leaf, queue: dict[int, list], cap: int) -> int | None:
        """Queue a leaf on its tree's replica (moving the tree off a backed-up one); returns
        the replica, or None when every replica it could go to has a full queue."""
        i = self.pool.route(tree.tree_id)
        if i is not None and len(queue[i]) >= cap:
            # its replica is backed up: move if another has a batch less to do
            i = self.pool.move(tree.tree_id, cap, lambda j: len(queue[j]) < cap)
        if i is None or len(queue[i]) >= cap:
            return None
        queue[i].append((tree, leaf, self.core.request(tree, leaf)))
        st = self.pool.replicas[i]
        st.load += 1
        st.idle_since = None
        return i

    def _fill(self) -> None:
        live = self.pool.healthy()
        if not live:
            self._waiting = len(self.trees)
            return
        cap = self.settings.max_batch
        queue = self._queue
        for i in live:
            queue.setdefault(i, [])
        waiting = 0
        # simulations going down first: they hold their tree's in-flight slots
        rollouts, self._rollouts = self._rollouts, []
        for tree, leaf in rollouts:
            if self._place(tree, leaf, queue, cap) is None:
                self._rollouts.append((tree, leaf))  # still in flight; placed next time
                waiting += 1
        full = sum(len(queue[i]) >= cap for i in live)
        trees = list(self.trees.values())
        for n, tree in enumerate(trees):
            # select first, route second: a tree with nothing to select (its in-flight limit
            # or budget reached) costs one cheap select(), not a route() over all replicas
            while leaves := self.core.leaves(tree, limit=1):
                i = self._place(tree, leaves[0], queue, cap)
                if i is None:
                    tree.abandon(leaves[0])  # exact undo; the tree waits for its replica
                    waiting += 1
                    break
                if len(queue[i]) == cap:
                    full += 1
            if full >= len(live):
                waiting += len(trees) - n - 1  # not visited: counted as one leaf each
                break
        self._waiting = waiting
        metrics.set_gauge("queue_depth", sum(len(q) for q in self._queue.values()))

    def _dispatch(self, inflight: dict) -> None:
        calls = {}
        for i, _ in inflight.values():
            calls[i] = calls.get(i, 0) + 1
        for i, queue in self._queue.items():
            if not queue:
                continue
            st = self.pool.replicas[i]
            if not st.healthy:  # routed before it went down: give the leaves back
                for tree, leaf, _ in queue:
                    tree.abandon(leaf)
                queue.clear()
                continue
            sent = calls.get(i, 0)
            if sent >= self.settings.calls_per_replica:
                continue
            if sent and len(queue) < self.settings.max_batch:
                # a second call only with a full batch: a partial one would make the leaves
                # selected after the running call returns wait behind it (one step per
                # expansion instead of two for narrow trees, fuller batches)
                continue
            batch, self._queue[i] = queue, []
            ref = self.pool.call(i, "expand", [r for _, _, r in batch])
            call = self._await(ref, self.settings.call_timeout_s)
            inflight[asyncio.ensure_future(call)] = (i, batch)
            calls[i] = calls.get(i, 0) + 1

    @staticmethod
    async def _await(ref, timeout: float | None = None):
        async def get():
            return await ref

        return await asyncio.wait_for(get(), timeout)

    def _absorb(self, i: int, batch: list, task: asyncio.Task) -> None:
        st = self.pool.replicas[i]
        st.load = max(0, st.load - len(batch))
        if st.load == 0:
            st.idle_since = time.monotonic()
        exc = task.exception()
        if exc is not None:
            self.failures += 1
            metrics.inc("replica_failures_total")
            if isinstance(exc, TimeoutError):  # hung: a fresh actor instead of a revival
                self.hangs += 1
                metrics.inc("replica_hangs_total")
                reason = f"no answer within call_timeout_s={self.settings.call_timeout_s}"
                self.pool.mark_down(i, reason)
                self.pool.restart(i)
            else:
                self.pool.mark_down(i, f"{type(exc).__name__}: {exc}"[:300])
            self._save_counters()  # rare: saved at once, so a kill right after keeps it
            for tree, leaf, _ in batch:
                tree.abandon(leaf)
            return
        core = self.core
        for (tree, leaf, _), exp in zip(batch, task.result(), strict=True):
            if exp.steps is None:
                tree.abandon(leaf)
                continue
            cands = core.stage(tree, leaf, exp.steps, exp.version)
            nxt = core.commit(tree, leaf, [exp.confidence.get(s.text, 0.0) for s in cands])
            if nxt is not None:  # a terminal rollout goes on: first in line at the next fill
                self._rollouts.append((tree, nxt))
            self.expansions += 1
            self.tokens += sum(len(st.token_ids) for st in exp.steps)
        metrics.inc("expansions_total", len(batch))

    # ---- autoscaling -----------------------------------------------------------------
    def _autoscale(self) -> None:
        if self._scaler is None:
            return
        pool, now = self.pool, time.monotonic()
        idle = {
            i: st.idle_since
            for i, st in enumerate(pool.replicas)
            if st.launched
            and st.healthy
            and not st.starting
            and st.load == 0
            and st.idle_since is not None
            and not self._queue.get(i)
        }
        decision = self._scaler.decide(
            now,
            waiting_leaves=self._waiting,
            serving=pool.serving(),
            starting=len(pool.starting()),
            idle_since=idle,
        )
        prefix = (pool.spec.name_prefix if pool.spec else None) or "itool-replica"
        for _ in range(decision.add):
            i = pool.add(f"{prefix}-auto-{uuid.uuid4().hex[:8]}")
            self._queue[i] = []
            task = asyncio.ensure_future(pool.start_one(i, self._scaler.settings.start_timeout_s))
            self._starts.add(task)
            task.add_done_callback(self._starts.discard)
            self._scale_event("add", i, waiting=self._waiting)
        for i in decision.retire:
            pool.retire(i)
            self._scale_event("retire", i)

    def _shrink_all(self) -> None:
        """End of the rollout: stop every replica this manager started."""
        for task in list(self._starts):
            task.cancel()
        for i, st in enumerate(self.pool.replicas):
            if st.launched and not st.retired:
                self.pool.retire(i)
                self._scale_event("retire", i)

    def _scale_event(self, event: str, i: int, **extra: Any) -> None:
        st = self.pool.replicas[i]
        rec = {
            "event": event,
            "replica": st.name,
            "t": round(time.monotonic() - self.started, 3),
            "serving": self.pool.serving(),
            "starting": len(self.pool.starting()),
            **extra,
        }
        self.scale_events.append(rec)
        log.info("autoscale: %s", rec)
        if self.out_dir is not None:
            append_jsonl(self.out_dir / "scaling.jsonl", [rec])

    def _publish(self) -> None:
        now = time.monotonic()
        t0, e0, k0 = self._rate_mark
        if now - t0 >= 2.0:  # rates over the last interval of at least 2 s
            metrics.set_gauge("expansions_per_second", (self.expansions - e0) / (now - t0))
            metrics.set_gauge("tokens_per_second", (self.tokens - k0) / (now - t0))
            self._rate_mark = (now, self.expansions, self.tokens)
        metrics.set_gauge("trees_active", len(self.trees))
        metrics.set_gauge("replicas_healthy", len(self.pool.healthy()))
        metrics.set_gauge("replicas_starting", len(self.pool.starting()))
        for st in self.pool.replicas:
            metrics.set_gauge("requests_in_flight", st.load, replica=st.name)

    async def replica_infos(self) -> list[dict | None]:
        return await self.pool.infos()

    def release_pool(self) -> ReplicaPool:
        """The replica pool with what this manager learned (replicas down, restarted, added,
        retired), for the driver to take back (``ReplicaPool.adopt``) when the rollout ends."""
        return self.pool
