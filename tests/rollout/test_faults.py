"""Nothing lost, nothing stuck: torn journals resume, a hung replica is timed out and its work
goes elsewhere. In-process FAKE replicas (``itool_ray/rollout/fake.py``), the shipped manager."""

from __future__ import annotations

import asyncio
import json

import pytest

from itool_ray.mcts import MCTSConfig, fake_outcome, make_fake_samples
from itool_ray.rollout.fake import FakeLatency, FakeReplica
from itool_ray.rollout.journal import (
    JournalError,
    append_jsonl,
    read_jsonl,
    repair,
    write_jsonl_atomic,
)
from itool_ray.rollout.manager import ManagerSettings, TreeManager

CFG = MCTSConfig(k=2, simulations=4, max_inflight=2, max_depth=4)


# ---- journals ------------------------------------------------------------------------------


def test_torn_last_line_is_dropped_and_repaired(tmp_path):
    f = tmp_path / "j.jsonl"
    append_jsonl(f, [{"a": 1}, {"b": "x\u2028y"}])  # U+2028 is data, not a line break
    f.write_bytes(f.read_bytes() + b'{"c": [1, 2')  # a kill in the middle of an append
    assert read_jsonl(f) == ([{"a": 1}, {"b": "x\u2028y"}], 1)
    append_jsonl(f, [{"d": 4}])  # repairs first: the new record gets its own line
    assert read_jsonl(f) == ([{"a": 1}, {"b": "x\u2028y"}, {"d": 4}], 0)
    assert repair(f) == 0


def test_middle_corruption_is_an_error_naming_the_line(tmp_path):
    f = tmp_path / "j.jsonl"
    f.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(JournalError, match="line 2"):
        read_jsonl(f)


def test_atomic_rewrite_leaves_no_temporary(tmp_path):
    f = tmp_path / "p.jsonl"
    write_jsonl_atomic(f, [{"x": i} for i in range(3)])
    assert read_jsonl(f)[0] == [{"x": 0}, {"x": 1}, {"x": 2}]
    assert [p.name for p in tmp_path.iterdir()] == ["p.jsonl"]


def _run(samples, out_dir, replicas, settings=None):
    async def go():
        manager = TreeManager(
            samples,
            CFG,
            replicas,
            out_dir=str(out_dir),
            outcome=fake_outcome,
            settings=settings or ManagerSettings(max_batch=8, checkpoint_every_s=0),
        )
        return await manager.run(), manager

    return asyncio.run(go())


def _fakes(n, latency=0.01):
    cost = FakeLatency(latency=latency, batch=8, jitter=0.0)
    return [(f"fake-{i}", FakeReplica(f"fake-{i}", cost, seed=i)) for i in range(n)]


def test_resume_after_torn_journals(tmp_path):
    samples = make_fake_samples(6, seed=2)
    first, _ = _run(samples, tmp_path, [h for _, h in _fakes(2)])
    assert first["trees_finished"] == 6
    pairs_before = read_jsonl(tmp_path / "pairs.jsonl")[0]
    # cut the last line of both journals, as a kill mid-write would
    for name in ("finished.jsonl", "pairs.jsonl"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) - 7])
    again, manager = _run(samples, tmp_path, [h for _, h in _fakes(2)])
    assert again["trees_finished"] == 6  # the torn tree was searched again
    pairs = read_jsonl(tmp_path / "pairs.jsonl")[0]
    finished = read_jsonl(tmp_path / "finished.jsonl")[0]
    assert sorted(r["tree_id"] for r in finished) == sorted(str(s.id) for s in samples)
    # every pair belongs to a finished tree and the counts agree: nothing lost or doubled
    counts = {r["tree_id"]: r["pairs"] for r in finished}
    assert sum(counts.values()) == len(pairs) == manager.pairs_emitted
    assert {p["tree_id"] for p in pairs} <= set(counts)
    assert len(pairs) >= len(pairs_before) - max(counts.values()) - 1


class _HangsOnce:
    """A fake replica whose first expansion call never answers."""

    def __init__(self, inner):
        self._inner = inner
        self.hung = 0
        self.evaluate, self.info, self.load_policy = inner.evaluate, inner.info, inner.load_policy
        self.expand = self

    def remote(self, requests):
        if not self.hung:
            self.hung += 1
            return asyncio.ensure_future(asyncio.sleep(3600))
        return self._inner.expand.remote(requests)


def test_a_hung_replica_is_timed_out_and_its_trees_finish(tmp_path):
    samples = make_fake_samples(8, seed=3)
    (_, a), (_, b) = _fakes(2)
    hanging = _HangsOnce(a)
    settings = ManagerSettings(
        max_batch=8, checkpoint_every_s=0, call_timeout_s=0.5, revive_every_s=0.2
    )
    progress, manager = _run(samples, tmp_path, [hanging, b], settings)
    assert hanging.hung == 1 and progress["hangs"] == 1
    assert progress["trees_finished"] == 8 and not manager.trees
    lines = [json.loads(x) for x in (tmp_path / "finished.jsonl").read_text().splitlines()]
    assert len(lines) == 8


def test_failure_counts_survive_a_manager_restart(tmp_path):
    """A restarted manager resumes the counts of what went wrong (failures, hangs) from its
    folder: a hang seen just before the manager was killed still shows in its progress."""
    samples = make_fake_samples(8, seed=3)
    (_, a), (_, b) = _fakes(2)
    settings = ManagerSettings(
        max_batch=8, checkpoint_every_s=0, call_timeout_s=0.5, revive_every_s=0.2
    )
    first, _ = _run(samples[:4], tmp_path, [_HangsOnce(a), b], settings)
    assert first["hangs"] == 1 and first["failures"] >= 1
    assert json.loads((tmp_path / "counters.json").read_text())["hangs"] == 1
    again, manager = _run(samples, tmp_path, [h for _, h in _fakes(2)], settings)
    assert again["trees_finished"] == 8 and again["instance"] != first["instance"]
    assert again["hangs"] == 1 and again["failures"] == first["failures"]
    (tmp_path / "counters.json").write_text("{not json")  # damaged by hand: counts restart
    assert _run(samples, tmp_path, [h for _, h in _fakes(2)], settings)[0]["hangs"] == 0


class _RestartingFor:
    """A fake replica that Ray is restarting for ``seconds``: every call raises
    ``ActorUnavailableError`` until then, as a killed actor's handle does."""

    def __init__(self, inner, seconds: float):
        import time

        self._inner, self._until = inner, time.monotonic() + seconds
        self.expanded, self.first_expand = 0, None
        for name in ("info", "evaluate", "load_policy", "expand"):
            setattr(self, name, _Gate(self, getattr(inner, name)))

    def up(self) -> bool:
        import time

        return time.monotonic() >= self._until


class _Gate:
    def __init__(self, owner, method):
        self.owner, self.method = owner, method

    def remote(self, *args):
        import ray

        if not self.owner.up():
            fut = asyncio.get_event_loop().create_future()
            fut.set_exception(ray.exceptions.ActorUnavailableError("restarting", b""))
            return fut
        if self.method is self.owner._inner.expand:
            import time

            self.owner.expanded += 1
            self.owner.first_expand = self.owner.first_expand or time.monotonic()
        return self.method.remote(*args)


def test_a_replica_restarting_at_the_start_does_not_hold_up_the_search(tmp_path):
    """The manager starts once one replica is ready; the restarting one is marked down, then
    revived in the background and given work, and every tree finishes."""
    import time

    samples = make_fake_samples(24, seed=4)
    (_, a), (_, b) = _fakes(2, latency=0.1)
    a, late = _RestartingFor(a, seconds=0.0), _RestartingFor(b, seconds=1.0)
    settings = ManagerSettings(max_batch=4, checkpoint_every_s=0, revive_every_s=0.2)
    start = time.monotonic()
    progress, manager = _run(samples, tmp_path, [a, late], settings)
    assert progress["trees_finished"] == 24 and not manager.trees
    assert a.first_expand < late._until  # the search began while the other was restarting
    assert late.expanded > 0  # back in the pool before the end, and given work
    assert manager.pool.replicas[1].failures == 1  # marked down once, at the start
    assert manager.pool.healthy() == [0, 1]
    assert time.monotonic() - start > 1.0  # the search was still going when it came back
