"""The rollout job: MCTS over a data set with a given policy, pairs written to a file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import Field

from itool_ray.config import EngineSection, ManagerSection, MCTSSection, ReplicaSection, Section

log = logging.getLogger(__name__)


class RolloutJobConfig(Section):
    """``jobs/rollout.py``: ``model`` is ``smollm2``, ``tiny`` or a local HF folder;
    ``adapter`` an optional PEFT adapter folder (policy version ``version``)."""

    model: str = "smollm2"
    adapter: str | None = None
    version: int = 0
    data: str = "synth"
    limit: int | None = Field(32, ge=1)
    seed: int = 0
    out_dir: str = "runs/rollout"
    output_format: Literal["jsonl", "parquet"] = "jsonl"
    address: str | None = None
    name_prefix: str | None = Field(
        None, description="name the replica actors <prefix>-<i> and the manager <prefix>-manager"
    )
    engine: EngineSection = EngineSection()
    replicas: ReplicaSection = ReplicaSection()
    manager: ManagerSection = ManagerSection()
    mcts: MCTSSection = MCTSSection(
        k=4, simulations=16, max_inflight=4, max_step_tokens=48, max_depth=8
    )


def start_pool(cfg: RolloutJobConfig, model_dir: str):
    """Launch the configured replicas serving ``cfg.version`` (adapter published once)."""
    import ray

    from itool_ray.rollout import ReplicaPool, adapter_payload

    adapter = ray.put(adapter_payload(cfg.adapter)) if cfg.adapter else None
    r = cfg.replicas
    return ReplicaPool.start(
        r.count,
        cfg.engine.build(model_dir, enable_lora=True, seed=cfg.seed),
        num_cpus=r.num_cpus,
        num_gpus=r.num_gpus,
        resources=r.resources or None,
        max_restarts=r.max_restarts,
        temperature=r.temperature,
        env=r.env,
        version=cfg.version,
        adapter=adapter,
        name_prefix=cfg.name_prefix,
    )


def run_rollout_job(cfg: RolloutJobConfig) -> dict:
    from itool_ray.datasets import load_named
    from itool_ray.envs.registry import environment_for
    from itool_ray.models import resolve_model
    from itool_ray.rollout import init_ray, run_rollout, run_sync

    init_ray(cfg.address)
    samples = load_named(cfg.data, limit=cfg.limit, seed=cfg.seed)
    mcts = cfg.mcts.build()
    env = environment_for(samples, mcts.outcome)
    model_dir = str(resolve_model(cfg.model))
    pool = start_pool(cfg, model_dir)
    try:
        run_sync(pool.wait_ready())
        result = run_rollout(
            samples,
            mcts,
            cfg.out_dir,
            pool=pool,
            settings=cfg.manager.build(),
            manager_cpus=cfg.manager.num_cpus,
            autoscale=cfg.replicas.autoscale(),
            manager_name=cfg.name_prefix and f"{cfg.name_prefix}-manager",
            env=env,
        )
    finally:
        pool.shutdown()
    out = Path(cfg.out_dir)
    if cfg.output_format == "parquet":
        import datasets

        datasets.Dataset.from_list([p.to_dict() for p in result.pairs]).to_parquet(
            str(out / "pairs.parquet")
        )
    summary = {**result.summary, "pairs_file": str(out / f"pairs.{cfg.output_format}")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    from itool_ray.report import write_report

    summary["report"] = str(write_report(out))
    return summary
