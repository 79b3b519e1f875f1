"""jobs/bench_manager.py at a tiny size, run as a script in a subprocess (the TreeManager
against in-process FAKE replicas): it finishes every tree, loses no answered request, and its
batches are filled by several simulations in flight per tree. Nothing here is a wall-clock
ratio: the benchmark measures speed, this test only what must hold on any machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_manager_benchmark_runs_and_loses_nothing(tmp_path):
    out = tmp_path / "manager.json"
    cmd = [
        sys.executable,
        str(ROOT / "jobs" / "bench_manager.py"),
        "--trees",
        "16",
        "--sims",
        "12",
        "--max-inflight",
        "8",
        "--replicas",
        "4",
        "--latency",
        "0.1",
        "--batch",
        "8",
        "--jitter",
        "0.2",
        "--modes",
        "ours,one_inflight",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    ours, one = results["ours"], results["one_inflight"]
    for r in (ours, one):
        assert r["trees_finished"] == 16
        assert r["expansions"] == r["fake_expansions"]  # every answered request backed up once
        # terminal rollouts: each of the 12 simulations is 1 to max_depth (8) expansions
        assert 16 * 12 <= r["expansions"] <= 16 * 12 * 8
    # 16 trees, 4 replicas x 8 requests per step: one simulation per tree fills half a step at
    # best; several in flight per tree fill more of each step (requests per step, not time)
    assert one["fill"] <= 0.55 and ours["fill"] > one["fill"] + 0.1
