"""One owner of replica state: the tree manager works on the driver's ``ReplicaPool`` (the
same object in-process; lent to the manager actor and taken back on Ray), so a replica the
manager marks down, restarts or adds is so in the driver's pool afterwards.

FAKE replicas: in-process ones (``itool_ray/rollout/fake.py``) and FAKE replica actors on a local
Ray (the fake engine's answers, no vLLM)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from itool_ray.mcts import MCTSConfig, fake_outcome, make_fake_samples
from itool_ray.rollout import fake as bench
from itool_ray.rollout.autoscale import AutoscaleSettings
from itool_ray.rollout.manager import ManagerSettings, TreeManager
from itool_ray.rollout.pool import ReplicaPool
from tests.rollout.test_autoscale import _FakeSpec
from tests.rollout.test_faults import _HangsOnce

CFG = MCTSConfig(k=2, simulations=4, max_inflight=2, max_depth=4)


def test_the_manager_works_on_the_pool_it_is_given():
    cost = bench.FakeLatency(latency=0.01, batch=8, jitter=0.0)
    hanging = _HangsOnce(bench.FakeReplica("fake-0", cost, seed=0))
    pool = ReplicaPool([("fake-0", hanging), ("fake-1", bench.FakeReplica("fake-1", cost, 1))])
    settings = ManagerSettings(
        max_batch=8, checkpoint_every_s=0, call_timeout_s=0.5, revive_every_s=0.2
    )
    manager = TreeManager(
        make_fake_samples(6, seed=1), CFG, pool, settings=settings, outcome=fake_outcome
    )
    assert manager.pool is pool
    progress = asyncio.run(manager.run())
    assert progress["hangs"] == 1 and progress["trees_finished"] == 6
    # the caller's pool saw the hang: the replica went down once and came back
    assert pool.replicas[0].failures == 1 and pool.healthy() == [0, 1]


def test_replicas_the_manager_adds_are_in_the_callers_pool():
    cost = bench.FakeLatency(latency=0.05, batch=4, jitter=0.0, eval_cost=0.25)
    spec = _FakeSpec(cost, delay=0.1)
    pool = ReplicaPool([("fake-0", bench.FakeReplica("fake-0", cost))], spec=spec)
    auto = AutoscaleSettings(min_replicas=1, max_replicas=3, up_after_s=0.1, idle_s=60.0)
    cfg = MCTSConfig(k=2, simulations=8, max_inflight=4, max_depth=6, max_step_tokens=16)
    manager = TreeManager(
        make_fake_samples(24, seed=3),
        cfg,
        pool,
        autoscale=auto,
        settings=ManagerSettings(max_batch=4, checkpoint_every_s=0),
    )
    asyncio.run(manager.run())
    added = [st for st in pool.replicas if st.launched]
    assert len(added) == 2 == len(spec.launched)
    assert all(st.retired for st in added) and pool.healthy() == [0]  # stopped at the end


def test_a_pool_carries_its_own_version_and_spec():
    with pytest.raises(ValueError, match="ReplicaPool carries"):
        TreeManager([], CFG, ReplicaPool([]), version=3)


class _Restarting:
    """A FAKE replica handle Ray is restarting: ``info`` raises ActorUnavailableError twice."""

    def __init__(self, inner) -> None:
        self._inner, self.refused = inner, 0
        self.info = bench.FakeMethod(self._info)

    async def _info(self):
        import ray

        if self.refused < 2:
            self.refused += 1
            raise ray.exceptions.ActorUnavailableError("The actor is restarting.", None)
        return await self._inner.info.remote()


def test_waiting_for_a_restarting_replica_is_not_an_error():
    # a tree manager restarted while Ray restarts a replica waits for it (it once failed its
    # run, and the driver counted that as a second manager death)
    restarting = _Restarting(bench.FakeReplica("r-0", bench.FakeLatency(latency=0.01, batch=4)))
    pool = ReplicaPool([("r-0", restarting)])
    asyncio.run(pool.wait_ready(timeout=30, relaunches=0))
    assert restarting.refused == 2 and pool.healthy() == [0]


# ---- on Ray: the pool lent to the manager actor comes back ------------------------------------


class FakeReplicaActor:
    """A FAKE replica actor: ``FakeEngine`` answers; with ``hang_marker`` its first expansion
    (over every restart: the marker file says it happened) never answers."""

    def __init__(self, name: str, hang_marker: str | None = None) -> None:
        from itool_ray.mcts import FakeEngine

        self.name, self.hang_marker = name, hang_marker
        self.engine = FakeEngine(seed=0)
        self.incarnation = uuid.uuid4().hex[:12]
        self.version = 0

    def info(self) -> dict:
        return {"version": self.version, "incarnation": self.incarnation}

    def load_policy(self, version: int, adapter) -> int:
        self.version = version
        return version

    async def expand(self, requests):
        from itool_ray.mcts.search import EvalRequest
        from itool_ray.rollout.replica import Expansion

        if self.hang_marker and not Path(self.hang_marker).exists():
            Path(self.hang_marker).touch()
            await asyncio.sleep(3600)
        out = []
        for r, steps in zip(requests, self.engine.expand(requests), strict=True):
            texts = list(dict.fromkeys(s.text for s in steps))
            evals = [EvalRequest(r.tree_id, r.node_id, (), (), r.prefix + t, False) for t in texts]
            conf = dict(zip(texts, self.engine.evaluate(evals), strict=True))
            out.append(Expansion(steps, conf, self.version))
        return out

    async def evaluate(self, requests):
        return self.engine.evaluate(requests)


def test_the_driver_sees_what_the_manager_actor_learned(ray_local, tmp_path):
    from itool_ray.rollout import run_rollout, run_sync

    actor = ray_local.remote(num_cpus=0, max_restarts=2, max_concurrency=100)(FakeReplicaActor)
    marker = str(tmp_path / "hung")
    pool = ReplicaPool([("good", actor.remote("good")), ("hangs", actor.remote("hangs", marker))])
    run_sync(pool.wait_ready(timeout=60))
    before = pool.replicas[1].incarnation
    settings = ManagerSettings(
        max_batch=4, checkpoint_every_s=0, call_timeout_s=2.0, revive_every_s=0.3
    )
    res = run_rollout(
        make_fake_samples(6, seed=4),
        CFG,
        tmp_path / "out",
        pool=pool,
        settings=settings,
        progress=False,
    )
    assert res.progress["hangs"] == 1 and res.progress["trees_finished"] == 6
    # the manager timed the replica out and had Ray restart it: the driver's pool says so
    # (the search went on without it, so it may not be back yet: the pool revives it)
    hung = pool.replicas[1]
    assert hung.failures == 1
    if pool.healthy() != [0, 1]:
        assert hung.restarted and not hung.healthy
        run_sync(pool.revive(timeout=30))
    assert hung.incarnation != before and pool.healthy() == [0, 1]
    assert pool.replicas[0].failures == 0
    assert hung.incarnation == ray_local.get(pool.call(1, "info"))["incarnation"]


def test_a_search_shorter_than_a_poll_still_reports_its_final_progress(ray_local, tmp_path):
    """The driver polls every 2 s; a search that ends before the first poll still writes its
    final record to progress.jsonl and hands it to ``on_progress`` (the console's curves)."""
    import json

    from itool_ray.rollout import run_rollout, run_sync

    actor = ray_local.remote(num_cpus=0, max_concurrency=100)(FakeReplicaActor)
    pool = ReplicaPool([("fast", actor.remote("fast"))])
    run_sync(pool.wait_ready(timeout=60))
    seen: list[dict] = []
    res = run_rollout(
        make_fake_samples(1, seed=5),
        MCTSConfig(k=2, simulations=1, max_inflight=1, max_depth=1),
        tmp_path / "out",
        pool=pool,
        settings=ManagerSettings(max_batch=4, checkpoint_every_s=0),
        progress=False,
        on_progress=seen.append,
    )
    lines = [json.loads(x) for x in (tmp_path / "out" / "progress.jsonl").read_text().splitlines()]
    assert lines and lines[-1]["trees_finished"] == 1 == res.progress["trees_finished"]
    assert seen and seen[-1]["trees_finished"] == 1 and seen[-1]["t"] > 0
    assert lines[-1]["expansions"] == res.progress["expansions"] >= 1
    assert "t" not in res.progress  # the returned record is the manager's own
