"""The benchmark script runs (tiny budget) and its object-per-node baseline agrees with Tree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "jobs" / "bench_mcts.py"),
            "--trees",
            "20",
            "--sims",
            "8",
            "--repeat",
            "1",
            "--memory-trees",
            "5",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    res = json.loads(out.stdout)
    assert res["cycles"] == 20 * 8
    assert res["core_cycles_per_s"] > 0 and res["bytes_per_node"] > 0


def test_bench_replay_rebuilds_the_searched_trees():
    import importlib.util

    from itool_ray.mcts import FakeEngine, MCTSConfig, fake_outcome, make_fake_samples, search

    spec = importlib.util.spec_from_file_location("bench_mcts", ROOT / "jobs" / "bench_mcts.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = MCTSConfig(simulations=16, rollout="one_step")
    samples = make_fake_samples(10)
    trees, _ = bench.replay(bench.record(samples, cfg, FakeEngine()), cfg)
    want = search(samples, FakeEngine(), cfg, reward_fn=fake_outcome).trees

    def core(t):  # the replay re-applies R, not its O / C terms (stored for reports only)
        return {k: v for k, v in t.to_dict().items() if k not in ("outcome", "confidence")}

    assert [core(t) for t in trees] == [core(t) for t in want]
