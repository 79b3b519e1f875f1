"""The rollout service for real: local Ray, two vLLM (CPU) replicas of the tiny model.

One pool serves every test of this module (engines start once); the test that kills a
replica runs last.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.rollout.conftest import replica_env

pytestmark = pytest.mark.vllm

MCTS = dict(k=3, simulations=6, max_inflight=2, max_step_tokens=12, max_depth=3, max_tokens=256)


@pytest.fixture(scope="module")
def samples():
    from itool_ray.data import synthesize

    return list(synthesize(num_samples=8, seed=5, max_candidates=3).samples)


@pytest.fixture(scope="module")
def pool(ray_local, tiny_model_dir):
    from itool_ray.policy import EngineConfig
    from itool_ray.rollout import ReplicaPool, run_sync

    cfg = EngineConfig(
        model=str(tiny_model_dir),
        dtype="float32",
        max_model_len=4096,
        enable_lora=True,
        max_lora_rank=8,
        memory_fraction=0.1,
        max_logprobs=4096,
    )
    pool = ReplicaPool.start(2, cfg, num_cpus=1, env=replica_env(), max_restarts=2)
    run_sync(pool.wait_ready(timeout=600))
    yield pool
    pool.shutdown()


def _rollout(pool, samples, out, **mcts):
    from itool_ray.mcts import MCTSConfig
    from itool_ray.rollout import ManagerSettings, run_rollout

    cfg = MCTSConfig(**{**MCTS, **mcts})
    return run_rollout(
        samples,
        cfg,
        out,
        pool=pool,
        settings=ManagerSettings(max_batch=16, checkpoint_every_s=0.5),
        progress=False,
    )


def _finished_ids(out):
    return [json.loads(x)["tree_id"] for x in (out / "finished.jsonl").read_text().splitlines()]


def test_two_replicas_eight_trees_produce_pairs(pool, samples, tmp_path):
    res = _rollout(pool, samples, tmp_path)
    ids = {s.id for s in samples}
    assert res.progress["trees_finished"] == 8 and res.progress["failures"] == 0
    assert sorted(_finished_ids(tmp_path)) == sorted(ids)
    assert res.pairs, "no pairs from 8 trees"
    for p in res.pairs:
        assert p.tree_id in ids and p.policy_version == 0
        assert p.chosen != p.rejected and p.chosen_q > p.rejected_q
        assert p.chosen_token_ids and p.rejected_token_ids
        sample = next(s for s in samples if s.id == p.tree_id)
        assert p.tools == sample.tools and p.prompt_messages == sample.messages
    # both replicas served (affinity spreads trees), and siblings hit the prefix cache
    infos = [i for i in res.replica_infos if i]
    assert len(infos) == 2 and all(i["expansions"] > 0 for i in infos)
    assert res.summary["prefix_cache_hit_rate"] > 0.3


def test_new_adapter_version_changes_outputs_and_is_recorded(
    pool, samples, tmp_path, tiny_model_dir
):
    import ray
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from itool_ray.rollout import adapter_payload, run_sync

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False),
    )
    model.save_pretrained(tmp_path / "adapter")
    replica = pool.replicas[0].handle
    before = ray.get(replica.respond.remote(samples[:3], 16))
    seconds = run_sync(pool.broadcast(1, ray.put(adapter_payload(tmp_path / "adapter"))))
    assert seconds < 30
    infos = ray.get([st.handle.info.remote() for st in pool.replicas])
    assert [i["version"] for i in infos] == [1, 1]
    after = ray.get(replica.respond.remote(samples[:3], 16))
    assert after != before
    res = _rollout(pool, samples[:4], tmp_path / "v1", simulations=3)
    assert res.pairs and all(p.policy_version == 1 for p in res.pairs)
    trees = [json.loads(x) for x in (tmp_path / "v1" / "finished.jsonl").read_text().splitlines()]
    assert len(trees) == 4
    # perplexity on the replicas, under the served adapter (vLLM prompt log-probs through the
    # CPU LoRA kernels), agrees with the trainer's transformers computation
    from itool_ray.rollout.scatter import scatter
    from itool_ray.train.perplexity import hf_perplexity

    got = scatter(pool, "perplexity", samples[:5])
    want = hf_perplexity(tiny_model_dir, tmp_path / "adapter", samples[:5])
    assert got == pytest.approx(want, rel=1e-3)
    assert all(i["scores_prompts"] for i in infos)


def test_a_manager_that_cannot_be_built_fails_the_rollout_at_once(pool, samples, tmp_path):
    """Its constructor's error, raised now: not the wait for a restart (600 s) that a
    manager lost mid-run gets; the pool lent to it stays the driver's."""
    import ray

    from itool_ray.envs.registry import make_environment
    from itool_ray.mcts import MCTSConfig
    from itool_ray.rollout import ManagerSettings, run_rollout

    started = time.monotonic()
    with pytest.raises(ray.exceptions.RayActorError, match="computes O as 'exact'"):
        run_rollout(
            samples,
            MCTSConfig(**{**MCTS, "outcome": "graded"}),
            tmp_path / "bad",
            pool=pool,
            settings=ManagerSettings(max_batch=16),
            progress=False,
            env=make_environment("calls"),  # exact O, the config asks for graded
        )
    assert time.monotonic() - started < 300  # the restart wait would take 600 s
    assert len(pool.replicas) == 2


def test_manager_checkpoint_resumes(pool, samples, tmp_path):
    import ray

    from itool_ray.mcts import MCTSConfig
    from itool_ray.rollout import ManagerSettings, TreeManager

    cfg = MCTSConfig(**{**MCTS, "simulations": 12, "max_depth": 4})
    handles = [(st.name, st.handle) for st in pool.replicas]
    settings = ManagerSettings(max_batch=4, calls_per_replica=1, checkpoint_every_s=0.2)
    actor = ray.remote(TreeManager).options(num_cpus=0.5, max_concurrency=8)
    first = actor.remote(
        samples,
        cfg,
        handles,
        version=pool.version,
        adapter=pool.adapter,
        out_dir=str(tmp_path),
        settings=settings,
    )
    first.run.remote()
    deadline = time.time() + 120
    while ray.get(first.progress.remote())["expansions"] < 6 and time.time() < deadline:
        time.sleep(0.2)
    ray.kill(first)  # the manager dies mid-run
    assert (tmp_path / "trees.json").exists()
    second = actor.remote(
        samples,
        cfg,
        handles,
        version=pool.version,
        adapter=pool.adapter,
        out_dir=str(tmp_path),
        settings=settings,
    )
    final = ray.get(second.run.remote(), timeout=300)
    assert final["trees_restored"] > 0
    assert sorted(_finished_ids(tmp_path)) == sorted(s.id for s in samples)
    pairs = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert {p["tree_id"] for p in pairs} <= {s.id for s in samples}


def test_killing_a_replica_mid_run_loses_nothing(pool, samples, tmp_path):
    import ray

    from itool_ray.rollout import run_sync

    run_sync(pool.wait_ready(timeout=600))
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(
            r=_rollout(pool, samples, tmp_path, simulations=12, max_depth=4)
        )
    )
    worker.start()
    victim = pool.replicas[0].handle
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it while it holds work: an expansion call in flight
        info = ray.get(victim.info.remote())
        if info["expansions"] >= 2 and info["requests_in_flight"] > 0:
            break
        time.sleep(0.05)
    ray.kill(victim, no_restart=False)  # Ray restarts it; the manager must not lose work
    worker.join(timeout=600)
    res = result["r"]
    assert res.progress["failures"] >= 1
    assert res.progress["trees_finished"] == len(samples)
    ids = _finished_ids(tmp_path)
    assert sorted(ids) == sorted(s.id for s in samples)  # every tree once, none lost
    assert res.pairs
