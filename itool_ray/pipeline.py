"""The iTool job: data -> (warm-up SFT -> per iteration: hard samples -> MCTS -> DPO ->
broadcast) -> held-out evaluation after every stage, each stage resumable.

Stages that exist so far: ``data`` (training pool, warm-up / reinforcement split, difficulty
thirds, held-out sets) and ``eval-base`` (held-out accuracy of the starting policy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from itool_ray.config import Section
from itool_ray.data import bucket_by_difficulty, read_samples, split_warmup_reinforce, write_samples
from itool_ray.datasets import load_named
from itool_ray.stages import StageRunner


class DataSection(Section):
    """Training pool and held-out sets (names as in ``itool_ray.datasets``)."""

    train: str = "synth"
    num_samples: int = Field(600, ge=3, description="synthesized samples, or a cap on a loaded set")
    reinforce_fraction: float = Field(0.1, gt=0, lt=1)
    heldout: dict[str, int] = Field(
        default_factory=lambda: {"synth": 48, "seal-tools/test_out_domain": 24, "bfcl/simple": 24},
        description="held-out set name -> number of records evaluated",
    )
    on_error: Literal["raise", "skip"] = "skip"


class EngineSection(Section):
    """vLLM settings of the policy replicas (see ``itool_ray.policy.EngineConfig``)."""

    dtype: str = "auto"
    max_model_len: int = Field(4096, ge=256)
    cpu_kvcache_gb: float = Field(2.0, gt=0)
    enable_prefix_caching: bool = True


class EvalSection(Section):
    max_tokens: int = Field(192, ge=8)


class ITOolConfig(Section):
    """The whole iTool job. ``model`` is ``smollm2``, ``tiny`` or a local HF model folder."""

    run_dir: str = "runs/itool"
    seed: int = 0
    model: str = "smollm2"
    data: DataSection = DataSection()
    engine: EngineSection = EngineSection()
    eval: EvalSection = EvalSection()


def _data_stage(cfg: ITOolConfig, out: Path) -> dict[str, Any]:
    pool = load_named(
        cfg.data.train, limit=cfg.data.num_samples, seed=cfg.seed, on_error=cfg.data.on_error
    )
    split = split_warmup_reinforce(
        pool, reinforce_fraction=cfg.data.reinforce_fraction, seed=cfg.seed
    )
    buckets = bucket_by_difficulty(split.warmup)
    for name, part in buckets:
        write_samples(out / f"warmup-{name}.jsonl", part)
    write_samples(out / "reinforce.jsonl", split.reinforce)
    heldout = {}
    for name, n in cfg.data.heldout.items():
        # a different seed keeps synthesized held-out samples apart from the training pool
        samples = load_named(name, limit=n, seed=cfg.seed + 1, on_error=cfg.data.on_error)
        write_samples(out / f"heldout-{name.replace('/', '__')}.jsonl", samples)
        heldout[name] = len(samples)
    return {
        "train": cfg.data.train,
        "buckets": buckets.sizes,
        "reinforce": len(split.reinforce),
        "heldout": heldout,
    }


def heldout_sets(data_dir: Path) -> dict[str, list]:
    return {
        p.name[len("heldout-") : -len(".jsonl")].replace("__", "/"): read_samples(p)
        for p in sorted(data_dir.glob("heldout-*.jsonl"))
    }


def _eval_stage(
    cfg: ITOolConfig, model_dir: Path, data_dir: Path, adapter: str | None, out: Path
) -> dict:
    import json

    from itool_ray.eval.generate import evaluate_sets
    from itool_ray.policy import EngineConfig, VLLMPolicy

    policy = VLLMPolicy(
        EngineConfig(
            model=str(model_dir),
            dtype=cfg.engine.dtype,
            max_model_len=cfg.engine.max_model_len,
            cpu_kvcache_gb=cfg.engine.cpu_kvcache_gb,
            enable_prefix_caching=cfg.engine.enable_prefix_caching,
            enable_lora=adapter is not None,
            seed=cfg.seed,
        )
    )
    try:
        if adapter is not None:
            policy.load_policy(1, adapter)
        results = evaluate_sets(policy, heldout_sets(data_dir), max_tokens=cfg.eval.max_tokens)
    finally:
        policy.close()
    (out / "results.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
    return {
        r.name: {"accuracy": round(r.accuracy, 4), "n": r.n, "parse_errors": r.parse_errors}
        for r in results
    }


def run_itool(cfg: ITOolConfig, log=print) -> dict[str, dict]:
    """Run (or resume) the job; returns the per-stage held-out accuracy table."""
    from itool_ray.models import resolve_model

    stages = StageRunner(cfg.run_dir, log=log)
    (Path(cfg.run_dir) / "config.json").write_text(cfg.model_dump_json(indent=1))
    stages.run("data", lambda out: _data_stage(cfg, out))
    model_dir = resolve_model(cfg.model)
    table = {
        "base": stages.run(
            "eval-base", lambda out: _eval_stage(cfg, model_dir, stages.path("data"), None, out)
        )
    }
    return table
