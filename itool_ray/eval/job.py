"""The evaluation job (``jobs/evaluate.py``): decode the benchmark parts on vLLM replicas in
parallel, score them offline (:mod:`itool_ray.eval.benchmarks`), write JSON + Markdown.

BFCL's multi-turn parts are decoded by :func:`itool_ray.eval.multi_turn.run_multi_turn`,
each step's prompts split over the replicas (:func:`pool_chat_responder`).
``model=oracle`` starts no engine: every entry is answered with its gold
(:func:`oracle_responders`), a self-check of the harness that lists any gold the checkers
reject.

Only :func:`run_evaluate_job` touches Ray; the configuration and the scoring are plain.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from itool_ray.config import EngineSection, ReplicaSection, Section
from itool_ray.data import Sample
from itool_ray.datasets import Draw
from itool_ray.eval.benchmarks import Verdict, expand_benchmarks, is_multi_turn
from itool_ray.eval.multi_turn import ChatResponder
from itool_ray.eval.report import BenchmarkReport

ORACLE = "oracle"
"""``model=oracle``: the gold answers, no engine (:func:`oracle_responders`)."""

log = logging.getLogger(__name__)


class EvaluateConfig(Section):
    """``jobs/evaluate.py``. ``model``: ``smollm2``, ``tiny``, a local HF folder, or
    ``oracle`` (every entry answered with its gold, no engine: a self-check of the harness);
    ``adapter``: an optional PEFT adapter folder, served as policy version 1.

    ``benchmarks`` maps a group (``bfcl``, ``api-bank``, ``seal-tools``) or a part
    (``bfcl/simple``, ``bfcl/multi_turn_base``, ``api-bank/level-2``, ``seal-tools/hard``...)
    to the number of entries scored in each of its parts (``null``: all); ``bfcl`` holds the
    five multi-turn parts too, ``bfcl/multi_turn`` only them. ``max_tokens`` bounds each
    assistant message (a multi-turn step too)."""

    model: str = "smollm2"
    adapter: str | None = None
    benchmarks: dict[str, int | None] = Field(
        default_factory=lambda: {"bfcl": 4, "api-bank": 4, "seal-tools": 4},
        description="group or part -> entries per part (null: all)",
    )
    draw: Draw = Field(
        "first",
        description="which entries of a part are scored when fewer than all: its first ones "
        "(first) or a draw over the whole part with the seed, in the part's order (spread; "
        "BFCL's categories are grouped by topic)",
    )
    out_dir: str = "runs/evaluate"
    max_tokens: int = Field(192, ge=8, description="tokens generated per answer (greedy)")
    seed: int = 0
    address: str | None = None
    resume: bool = Field(
        True,
        description="reuse the answers an interrupted run left under out_dir, when they were "
        "decoded by the same model, adapter and decoding settings (greedy: the same answers); "
        "false: decode everything again",
    )
    engine: EngineSection = EngineSection()
    replicas: ReplicaSection = ReplicaSection()

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        if not value:
            raise ValueError("at least one benchmark is needed")
        expand_benchmarks(value)
        return value

    @field_validator("adapter")
    @classmethod
    def _oracle_has_no_adapter(cls, value: str | None, info) -> str | None:
        if value is not None and info.data.get("model") == ORACLE:
            raise ValueError("model=oracle takes no adapter")
        return value

    @property
    def parts(self) -> dict[str, int | None]:
        return expand_benchmarks(self.benchmarks)


def oracle_responders(
    sets: dict[str, list[Any]],
) -> tuple[Callable[[list[Sample]], list[str | None]], ChatResponder]:
    """The gold answers of every entry of ``sets``: single-turn samples by
    :func:`~itool_ray.eval.benchmarks.oracle_response` of their part, multi-turn entries by
    :func:`~itool_ray.eval.multi_turn.oracle_chat_responder`."""
    from itool_ray.eval.benchmarks import oracle_response
    from itool_ray.eval.multi_turn import oracle_chat_responder

    part_of = {
        id(s): name for name, items in sets.items() if not is_multi_turn(name) for s in items
    }

    def respond(samples: list[Sample]) -> list[str | None]:
        return [oracle_response(part_of[id(s)], s) for s in samples]

    entries = [e for name, items in sets.items() if is_multi_turn(name) for e in items]
    return respond, oracle_chat_responder(entries)


def _entry_of(prompt) -> str:
    return prompt.entry_id


def pool_chat_responder(
    pool, *, max_tokens: int = 192, retries: int = 3, restart_wait_s: float = 600.0
) -> ChatResponder:
    """Greedy assistant messages from a ``ReplicaPool``: the prompts split over its healthy
    replicas (``PolicyReplica.respond_messages``), all decoding in parallel; a failed
    replica's share is decoded again (as ``pool_responder``). Every step of one entry goes
    to the same replica (``scatter``'s ``key``): its conversation, which only grows, is
    prefilled once there and then read from the prefix cache."""

    def respond(prompts: list) -> list[str | None]:
        from itool_ray.rollout.scatter import scatter

        return scatter(
            pool,
            "respond_messages",
            prompts,
            max_tokens,
            retries=retries,
            restart_wait_s=restart_wait_s,
            key=_entry_of,
        )

    return respond


def _start_pool(cfg: EvaluateConfig, model_dir: str):
    """The replicas, serving the base model (version 0) or the adapter (version 1)."""
    import ray

    from itool_ray.rollout import ReplicaPool, adapter_payload, init_ray, run_sync

    r = cfg.replicas
    init_ray(cfg.address, num_cpus=max(os.cpu_count() or 1, math.ceil(r.count * r.num_cpus)))
    payload = ray.put(adapter_payload(cfg.adapter)) if cfg.adapter else None
    pool = ReplicaPool.start(
        r.count,
        cfg.engine.build(model_dir, enable_lora=True, seed=cfg.seed),
        num_cpus=r.num_cpus,
        num_gpus=r.num_gpus,
        resources=r.resources or None,
        max_restarts=r.max_restarts,
        temperature=r.temperature,
        env=r.env,
        version=1 if cfg.adapter else 0,
        adapter=payload,
    )
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
    """Load the parts, decode them on the replicas (or answer them with the gold for
    ``model=oracle``), score, write; returns the file paths and the report as a dict."""
    from itool_ray.eval.benchmarks import load_parts, official_ast_checker
    from itool_ray.eval.bfcl_summary import bfcl_category_sizes
    from itool_ray.eval.report import oracle_rejections, score_benchmarks

    sets = load_parts(cfg.parts, how=cfg.draw, seed=cfg.seed)
    if any(name.startswith("bfcl/") and not is_multi_turn(name) for name in sets):
        official_ast_checker()  # fail before the engines start when nvidia-bfcl is missing
    log.info("parts: %s", {k: len(v) for k, v in sets.items()})
    sizes = bfcl_category_sizes() if any(n.startswith("bfcl/") for n in sets) else None
    meta = {
        "model": cfg.model,
        "adapter": cfg.adapter,
        "benchmarks": cfg.benchmarks,
        "max_tokens": cfg.max_tokens,
    }
    if cfg.model == ORACLE:
        respond, respond_chat = oracle_responders(sets)
        start = time.perf_counter()
        report, verdicts = score_benchmarks(
            sets, respond, respond_chat=respond_chat, full_sizes=sizes, meta=meta
        )
        report = replace(report, rejected_gold=oracle_rejections(sets, verdicts))
        report.meta.update(decode_s=round(time.perf_counter() - start, 1))
    else:
        report, verdicts = _decode_on_pool(cfg, sets, sizes, meta)
    paths = write_outputs(Path(cfg.out_dir), report, verdicts)
    return {"files": paths, **report.to_dict()}


def _logged(fn, unit: str):
    """``fn`` (items -> one answer each) that logs every call: how many, how long, the total
    so far (a multi-turn evaluation is one call per lockstep round, minutes each)."""
    total = {"calls": 0, "items": 0, "start": time.perf_counter()}

    def run(items: list) -> list:
        t0 = time.perf_counter()
        out = fn(items)
        total["calls"] += 1
        total["items"] += len(items)
        log.info(
            "decoded %d %s in %.1f s (call %d; %d so far, %.0f s)",
            len(items),
            unit,
            time.perf_counter() - t0,
            total["calls"],
            total["items"],
            time.perf_counter() - total["start"],
        )
        return out

    return run


DECODING_FILE = "decoding.json"
"""Under ``out_dir``: what the recorded answers (``eval.generate.ANSWERS_FILE`` and
``TURNS_FILE``) were decoded by (:func:`decoding_identity`)."""


def decoding_identity(cfg: EvaluateConfig, model_dir: str) -> dict[str, Any]:
    """What a greedy answer depends on besides its prompt: the model folder, the adapter's
    files (SHA-256 of each), the token budget and the engine settings."""
    import hashlib

    adapter = None
    if cfg.adapter is not None:
        root = Path(cfg.adapter)
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        base = root if root.is_dir() else root.parent
        adapter = {
            str(f.relative_to(base)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files
        }
    return {
        "model_dir": str(Path(model_dir).resolve()),
        "adapter": adapter,
        "max_tokens": cfg.max_tokens,
        "engine": cfg.engine.model_dump(mode="json"),
    }


def answer_files(cfg: EvaluateConfig, model_dir: str) -> tuple[Path, Path]:
    """Where this run records its answers (single-turn, multi-turn steps), so that a run
    stopped part-way decodes only what it had not finished when started again. Answers left
    by other decoding settings, or any with ``resume=false``, are removed first (and said)."""
    from itool_ray.eval.generate import ANSWERS_FILE, TURNS_FILE

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ident = decoding_identity(cfg, model_dir)
    marker = out / DECODING_FILE
    paths = (out / ANSWERS_FILE, out / TURNS_FILE)
    earlier = None
    if marker.is_file():
        try:
            earlier = json.loads(marker.read_text())
        except ValueError:
            earlier = None
    kept = [p for p in paths if p.is_file()]
    if kept and (not cfg.resume or earlier != ident):
        why = "resume=false" if not cfg.resume else "they were decoded by other settings"
        log.info("not reusing the answers under %s: %s", out, why)
        for p in kept:
            p.unlink()
    elif kept:
        n = sum(len(p.read_text().splitlines()) for p in kept)
        log.info("reusing %d answers recorded under %s by an earlier run", n, out)
    marker.write_text(json.dumps(ident, indent=1))
    return paths[0], paths[1]


def _decode_on_pool(
    cfg: EvaluateConfig,
    sets: dict[str, list[Any]],
    sizes: dict[str, int] | None,
    meta: dict[str, Any],
) -> tuple[BenchmarkReport, dict[str, list[Verdict]]]:
    from itool_ray.eval.generate import pool_responder, recorded
    from itool_ray.eval.report import score_benchmarks
    from itool_ray.models import resolve_model

    model_dir = str(resolve_model(cfg.model))
    meta = {**meta, "model_dir": model_dir, "replicas": cfg.replicas.count}
    answers, turns = answer_files(cfg, model_dir)
    start = time.perf_counter()
    pool = _start_pool(cfg, model_dir)
    try:
        ready = time.perf_counter()
        respond = _logged(pool_responder(pool, max_tokens=cfg.max_tokens), "records")
        respond_chat = _logged(
            pool_chat_responder(pool, max_tokens=cfg.max_tokens),
            "multi-turn messages (one per running entry)",
        )
        # recorded outside the log: the log counts what the engines decoded
        respond, respond_chat = recorded(respond, answers), recorded(respond_chat, turns)
        report, verdicts = score_benchmarks(
            sets, respond, respond_chat=respond_chat, full_sizes=sizes, meta=meta
        )
        done = time.perf_counter()
    finally:
        pool.shutdown()
    report.meta.update(engine_start_s=round(ready - start, 1), decode_s=round(done - ready, 1))
    return report, verdicts
