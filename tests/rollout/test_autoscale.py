"""Replica autoscaling: the pure rule book, and the TreeManager growing and shrinking a pool of
FAKE in-process replicas (itool_ray/rollout/fake.py's fixed-latency fakes; no Ray, no vLLM)."""

from __future__ import annotations

import asyncio

import pytest

from itool_ray.mcts import MCTSConfig
from itool_ray.mcts.fake import make_fake_samples
from itool_ray.rollout import fake as bench
from itool_ray.rollout.autoscale import AutoscaleSettings, ScaleDecision, ScalePolicy
from itool_ray.rollout.manager import ManagerSettings, TreeManager


def test_settings_reject_bad_bounds():
    with pytest.raises(ValueError, match="min_replicas <= max_replicas"):
        AutoscaleSettings(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="delays"):
        AutoscaleSettings(up_after_s=-1)


def test_grows_only_after_sustained_wait_and_one_wave_at_a_time():
    pol = ScalePolicy(AutoscaleSettings(min_replicas=1, max_replicas=4, up_after_s=2.0), 8)
    kw = dict(serving=1, starting=0, idle_since={})
    assert pol.decide(0.0, waiting_leaves=20, **kw) == ScaleDecision()  # just started waiting
    assert pol.decide(1.9, waiting_leaves=20, **kw) == ScaleDecision()
    # 20 waiting leaves / 8 per batch -> 3 replicas, capped by max 4 - 1 serving = 3
    assert pol.decide(2.0, waiting_leaves=20, **kw) == ScaleDecision(add=3)
    # a wave is starting: no second wave however long trees wait
    assert not pol.decide(9.0, waiting_leaves=20, serving=1, starting=3, idle_since={})
    # the wait must be continuous: a turn with nothing waiting resets the clock
    assert not pol.decide(10.0, waiting_leaves=5, **kw)
    assert not pol.decide(11.0, waiting_leaves=0, **kw)
    assert not pol.decide(12.5, waiting_leaves=5, **kw)
    assert pol.decide(14.5, waiting_leaves=5, **kw) == ScaleDecision(add=1)


def test_never_exceeds_max_counting_starting():
    pol = ScalePolicy(AutoscaleSettings(min_replicas=1, max_replicas=3, up_after_s=0), 4)
    assert pol.decide(0, waiting_leaves=100, serving=3, starting=0, idle_since={}).add == 0
    assert pol.decide(1, waiting_leaves=100, serving=2, starting=0, idle_since={}).add == 1


def test_retires_longest_idle_first_and_keeps_the_minimum():
    pol = ScalePolicy(AutoscaleSettings(min_replicas=2, max_replicas=6, idle_s=10), 4)
    idle = {3: 0.0, 4: 5.0, 5: 1.0}
    # 5 serving, min 2 -> at most 3 may go; at t=11 replicas 3 (idle 11 s) and 5 (10 s) qualify
    assert pol.decide(11.0, waiting_leaves=0, serving=5, starting=0, idle_since=idle).retire == (
        3,
        5,
    )
    # only one above the minimum
    assert pol.decide(20.0, waiting_leaves=0, serving=3, starting=0, idle_since=idle).retire == (3,)
    # nothing retires while trees wait for a replica
    assert pol.decide(20.0, waiting_leaves=1, serving=5, starting=0, idle_since=idle).retire == ()


class _StartingFake:
    """A FAKE replica that answers ``info`` only after ``delay`` seconds (engine start)."""

    def __init__(self, fake, delay: float) -> None:
        self._fake, self._delay = fake, delay
        self.name = fake.name
        self.expand, self.evaluate, self.load_policy = fake.expand, fake.evaluate, fake.load_policy
        self.info = bench.FakeMethod(self._info)

    async def _info(self):
        await asyncio.sleep(self._delay)
        self._delay = 0.0
        return await self._fake.info.remote()


class _FakeSpec:
    """Launches FAKE replicas, as ``ReplicaSpec.launch`` launches replica actors."""

    name_prefix = "fake"

    def __init__(self, cost, delay: float) -> None:
        self.cost, self.delay, self.launched, self.stopped = cost, delay, [], []

    def launch(self, name: str):
        fake = bench.FakeReplica(name, self.cost, seed=len(self.launched) + 1)
        self.launched.append(fake)
        return _StartingFake(fake, self.delay)

    def stop(self, handle) -> None:
        self.stopped.append(handle.name)


def test_manager_grows_while_trees_wait_then_stops_what_it_started():
    cost = bench.FakeLatency(latency=0.05, batch=4, jitter=0.0, eval_cost=0.25)
    first = bench.FakeReplica("fake-0", cost)
    spec = _FakeSpec(cost, delay=0.2)
    samples = make_fake_samples(24, seed=3)
    cfg = MCTSConfig(k=2, simulations=8, max_inflight=4, max_depth=6, max_step_tokens=16)
    auto = AutoscaleSettings(min_replicas=1, max_replicas=3, up_after_s=0.1, idle_s=60.0)
    manager = TreeManager(
        samples,
        cfg,
        [("fake-0", first)],
        spec=spec,
        autoscale=auto,
        settings=ManagerSettings(max_batch=4, checkpoint_every_s=0),
    )
    progress = asyncio.run(manager.run())
    assert manager.pool.moves > 0  # trees left the backed-up replica for the new ones
    assert progress["trees_finished"] == 24 and progress["trees_active"] == 0
    adds = [e for e in manager.scale_events if e["event"] == "add"]
    retires = [e for e in manager.scale_events if e["event"] == "retire"]
    # one replica cannot take 24 trees x 4 in flight: the pool grew to the maximum ...
    assert len(adds) == 2 == len(spec.launched)
    assert max(e["serving"] + e["starting"] for e in adds) == 3
    # ... the added replicas did real work (every answered request was backed up once) ...
    done_by_added = sum(f.stats.expansions for f in spec.launched)
    assert done_by_added > 0
    assert progress["expansions"] == first.stats.expansions + done_by_added
    # ... and at the end the manager stopped exactly the replicas it had started
    assert sorted(e["replica"] for e in retires) == sorted(f.name for f in spec.launched)
    assert sorted(spec.stopped) == sorted(f.name for f in spec.launched)
    assert manager.pool.serving() == 1 and manager.pool.healthy() == [0]
    assert progress["replicas_added"] == 2 and progress["replicas_retired"] == 2


def test_manager_without_autoscale_stays_fixed():
    cost = bench.FakeLatency(latency=0.02, batch=4, jitter=0.0)
    fakes = [bench.FakeReplica(f"fake-{i}", cost) for i in range(2)]
    samples = make_fake_samples(8, seed=1)
    cfg = MCTSConfig(k=2, simulations=4, max_inflight=4, max_depth=4, max_step_tokens=16)
    manager = TreeManager(
        samples,
        cfg,
        [(f.name, f) for f in fakes],
        settings=ManagerSettings(max_batch=4, checkpoint_every_s=0),
    )
    progress = asyncio.run(manager.run())
    assert progress["trees_finished"] == 8
    assert manager.scale_events == [] and len(manager.pool.replicas) == 2


def test_autoscale_without_spec_is_an_error():
    with pytest.raises(ValueError, match="ReplicaSpec"):
        TreeManager([], MCTSConfig(), [], autoscale=AutoscaleSettings(max_replicas=2))


class _DeadOnArrival:
    """A FAKE replica handle whose actor died in its constructor."""

    name = "doa"

    def __init__(self) -> None:
        self.info = bench.FakeMethod(self._info)

    async def _info(self):
        import ray

        raise ray.exceptions.RayActorError()


def test_replica_that_dies_while_starting_is_launched_again():
    from itool_ray.rollout.pool import ReplicaPool

    spec = _FakeSpec(bench.FakeLatency(latency=0.01, batch=4), delay=0.0)
    pool = ReplicaPool([("r-0", _DeadOnArrival())], spec=spec)
    asyncio.run(pool.wait_ready(timeout=10))
    assert [f.name for f in spec.launched] == ["r-0"]  # relaunched once, under its own name
    assert pool.healthy() == [0] and pool.replicas[0].handle.name == "r-0"
    # without a spec to launch from, the error is the caller's
    with pytest.raises(Exception, match="RayActorError|actor"):
        asyncio.run(ReplicaPool([("r-0", _DeadOnArrival())]).wait_ready(timeout=10))
