"""The evaluation job (``jobs/evaluate.py``): decode the benchmark parts on vLLM replicas in
parallel, score them offline (:mod:`itool_ray.eval.benchmarks`), write JSON + Markdown.

Only :func:`run_evaluate_job` touches Ray; the configuration and the scoring are plain.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from itool_ray.config import EngineSection, ReplicaSection, Section
from itool_ray.eval.benchmarks import Verdict, expand_benchmarks
from itool_ray.eval.report import BenchmarkReport

log = logging.getLogger(__name__)


class EvaluateConfig(Section):
    """``jobs/evaluate.py``. ``model``: ``smollm2``, ``tiny`` or a local HF folder;
    ``adapter``: an optional PEFT adapter folder, served as policy version 1.

    ``benchmarks`` maps a group (``bfcl``, ``api-bank``, ``seal-tools``) or a part
    (``bfcl/simple``, ``api-bank/level-2``, ``seal-tools/hard``...) to the number of entries
    scored in each of its parts (``null``: all)."""

    model: str = "smollm2"
    adapter: str | None = None
    benchmarks: dict[str, int | None] = Field(
        default_factory=lambda: {"bfcl": 4, "api-bank": 4, "seal-tools": 4},
        description="group or part -> entries per part (null: all)",
    )
    out_dir: str = "runs/evaluate"
    max_tokens: int = Field(192, ge=8, description="tokens generated per answer (greedy)")
    seed: int = 0
    address: str | None = None
    engine: EngineSection = EngineSection()
    replicas: ReplicaSection = ReplicaSection()

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        if not value:
            raise ValueError("at least one benchmark is needed")
        expand_benchmarks(value)
        return value

    @property
    def parts(self) -> dict[str, int | None]:
        return expand_benchmarks(self.benchmarks)


def _start_pool(cfg: EvaluateConfig, model_dir: str):
    """The replicas, serving the base model (version 0) or the adapter (version 1)."""
    import ray

    from itool_ray.rollout import ReplicaPool, adapter_payload, init_ray, run_sync

    r = cfg.replicas
    init_ray(cfg.address, num_cpus=max(os.cpu_count() or 1, math.ceil(r.count * r.num_cpus)))
    payload = ray.put(adapter_payload(cfg.adapter)) if cfg.adapter else None
    pool = ReplicaPool.start(
        r.count, cfg.engine.build(model_dir, enable_lora=True, seed=cfg.seed), num_cpus=r.num_cpus,
        num_gpus=r.num_gpus, resources=r.resources or None, max_restarts=r.max_restarts,
        temperature=r.temperature, env=r.env, version=1 if cfg.adapter else 0, adapter=payload,
    )  # fmt: skip
    try:
        run_sync(pool.wait_ready())
    except BaseException:
        pool.shutdown()
        raise
    return pool


def write_outputs(
    out_dir: Path, report: BenchmarkReport, verdicts: dict[str, list[Verdict]]
) -> dict[str, str]:
    """``results.json``, ``results.md`` and every answer in ``responses.jsonl``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {"json": "results.json", "markdown": "results.md", "responses": "responses.jsonl"}
    paths = {k: out_dir / name for k, name in names.items()}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=1))
    paths["markdown"].write_text(report.to_markdown() + "\n")
    with paths["responses"].open("w", encoding="utf-8") as f:
        for part, vs in verdicts.items():
            for v in vs:
                f.write(json.dumps({"part": part, **asdict(v)}, ensure_ascii=False) + "\n")
    return {k: str(p) for k, p in paths.items()}


def run_evaluate_job(cfg: EvaluateConfig) -> dict[str, Any]:
    """Load the parts, decode them on the replicas, score, write; returns the file paths and
    the report as a dict."""
    from itool_ray.eval.benchmarks import load_parts, official_ast_checker
    from itool_ray.eval.bfcl_summary import bfcl_category_sizes
    from itool_ray.eval.generate import pool_responder
    from itool_ray.eval.report import score_benchmarks
    from itool_ray.models import resolve_model

    sets = load_parts(cfg.parts)
    if any(name.startswith("bfcl/") for name in sets):
        official_ast_checker()  # fail before the engines start when nvidia-bfcl is missing
    log.info("parts: %s", {k: len(v) for k, v in sets.items()})
    model_dir = str(resolve_model(cfg.model))
    start = time.perf_counter()
    pool = _start_pool(cfg, model_dir)
    try:
        ready = time.perf_counter()
        respond = pool_responder(pool, max_tokens=cfg.max_tokens)
        sizes = bfcl_category_sizes() if any(n.startswith("bfcl/") for n in sets) else None
        meta = {"model": cfg.model, "model_dir": model_dir, "adapter": cfg.adapter,
                "benchmarks": cfg.benchmarks, "max_tokens": cfg.max_tokens,
                "replicas": cfg.replicas.count}  # fmt: skip
        report, verdicts = score_benchmarks(sets, respond, full_sizes=sizes, meta=meta)
        done = time.perf_counter()
    finally:
        pool.shutdown()
    report.meta.update(engine_start_s=round(ready - start, 1), decode_s=round(done - ready, 1))
    paths = write_outputs(Path(cfg.out_dir), report, verdicts)
    return {"files": paths, **report.to_dict()}
