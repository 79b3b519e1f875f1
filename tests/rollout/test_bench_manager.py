"""jobs/bench_manager.py at a tiny size: the TreeManager against in-process fake replicas."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    name = "bench_manager"
    if name not in sys.modules:  # dataclasses look their module up in sys.modules
        spec = importlib.util.spec_from_file_location(name, ROOT / "jobs" / "bench_manager.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_manager_keeps_fake_replicas_busy_and_loses_nothing():
    bench = _bench()
    cost = bench.FakeLatency(latency=0.1, batch=8, jitter=0.2)
    res = bench.simulate(
        trees=16,
        simulations=12,
        max_inflight=8,
        replicas=4,
        cost=cost,
        modes=("ours", "one_inflight"),
    )
    ours, one = res["ours"], res["one_inflight"]
    for r in (ours, one):
        assert r.trees_finished == 16
        assert r.expansions == r.fake_expansions  # every answered request was backed up once
        # terminal rollouts: each of the 12 simulations is 1 to max_depth (8) expansions
        assert 16 * 12 <= r.expansions <= 16 * 12 * 8
    # 16 trees, 4 replicas x 8 requests per step: one simulation per tree fills half a step
    # at best; several in flight per tree fill them (a broken scheduler drops below)
    assert one.fill <= 0.55 and ours.fill > one.fill + 0.1
    assert ours.busy_mean > 0.5
    assert ours.e2e_per_s > one.e2e_per_s and ours.steady_per_s > 1.4 * one.steady_per_s
