"""The iTool job: data -> warm-up SFT (easy to hard) -> per iteration: hard samples by
perplexity -> MCTS on the replicas -> step-level DPO -> broadcast -> held-out evaluation.

Every stage writes its outputs and a ``DONE`` marker under ``run_dir`` (``StageRunner``), so a
job stopped anywhere resumes from the last finished stage; an interrupted MCTS stage also
keeps its finished trees, pairs and checkpointed trees. Policy versions: 0 is the base model,
1 the warm-up SFT adapter, 1 + i the adapter after iteration i. The replicas start once, on
first use, and switch versions by LoRA broadcast (no engine restart); the trainer actor trains
and publishes each adapter once to the object store.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from itool_ray.config import (
    DPOSection,
    EngineSection,
    LoraSection,
    ManagerSection,
    MCTSSection,
    ReplicaSection,
    Section,
    SFTSection,
)
from itool_ray.console import RunMonitor
from itool_ray.data import (
    DifficultyBuckets,
    SynthConfig,
    bucket_by_difficulty,
    read_samples,
    split_warmup_reinforce,
    write_samples,
)
from itool_ray.datasets import Draw, load_named
from itool_ray.stages import StageError, StageRunner, StageSpec, StopAfter, check_run_dir

log = logging.getLogger(__name__)


class DataSection(Section):
    """Training pool and held-out sets (names as in ``itool_ray.datasets``)."""

    train: str = "synth"
    num_samples: int = Field(48, ge=3, description="synthesized samples, or a cap on a loaded set")
    reinforce_fraction: float = Field(0.25, gt=0, lt=1)
    synth: dict[str, Any] = Field(
        default_factory=lambda: {"max_candidates": 2, "max_calls": 3},
        description="SynthConfig fields for the synthesized sets (train and held-out)",
    )
    heldout: dict[str, Annotated[int, Field(ge=0)] | None] = Field(
        default_factory=lambda: {"synth": 40, "seal-tools/test_out_domain": 30, "bfcl/simple": 30},
        description="held-out set name -> number of records evaluated (null: all of them; "
        "1000 for synth)",
    )
    heldout_draw: Draw = Field(
        "first",
        description="which records of a loaded held-out set are evaluated: its first N "
        "(first), or N drawn over the whole set with seed + 1, in the set's order (spread; "
        "BFCL's categories are grouped by topic: its first 30 multi_turn_base entries all use "
        "the file system). Synthesized sets are made, not drawn",
    )
    on_error: Literal["raise", "skip"] = "skip"

    @field_validator("synth")
    @classmethod
    def _synth_is_a_synth_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Fields of ``SynthConfig``, checked by it; the values it read come back (``"3"``
        becomes ``3``). ``num_samples`` and ``seed`` come from the job, not from here."""
        by_job = {"num_samples": "data.num_samples and data.heldout", "seed": "seed"}
        for key in value:
            if key in by_job:
                raise ValueError(f"SynthConfig.{key} is set by {by_job[key]}, not here")
        allowed = sorted({f.name for f in dataclasses.fields(SynthConfig)} - set(by_job))
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise ValueError(f"unknown SynthConfig fields {unknown}; allowed: {allowed}")
        try:
            config = _SYNTH.validate_python(value)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            msg = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"SynthConfig{'.' + where if where else ''}: {msg}") from None
        return {k: getattr(config, k) for k in value}


_SYNTH = TypeAdapter(SynthConfig)


class EvalSection(Section):
    max_tokens: int | Literal["auto"] = Field(
        "auto",
        description="decoding budget per answer (per message for multi-turn sets): a number, "
        "or auto = the longest gold answer of the held-out sets in the policy's tokens, plus "
        "a quarter and 8 (itool_ray.eval.generate.decode_budget), so no right answer is cut",
    )

    @field_validator("max_tokens")
    @classmethod
    def _at_least_eight(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 8:
            raise ValueError(f"must be 'auto' or an int >= 8, got {value}")
        return value


class TrainSection(Section):
    """The trainer actor and the loop's knobs."""

    warmup: bool = Field(True, description="run the warm-up SFT stage")
    iterations: int = Field(1, ge=0)
    alpha: float = Field(0.5, gt=0, le=1, description="fraction of hard samples kept (eq. 4)")
    num_cpus: float = Field(1, ge=0)
    num_gpus: float = Field(0, ge=0)
    resources: dict[str, float] = Field(
        default_factory=dict, description="custom Ray resources, e.g. {trainer_slot: 1}"
    )
    weight_sync: Literal["lora", "full"] = Field(
        "lora",
        description="lora: replicas load each new adapter; full: merged full weights in "
        "buckets into engines without LoRA (itool_ray.policy.weight_sync)",
    )
    perplexity_on: Literal["auto", "replicas", "trainer"] = Field(
        "auto",
        description="where hard-sample perplexities are computed: replicas (vLLM prompt "
        "log-probs, in parallel), trainer (transformers), auto: replicas when they can score "
        "prompts under the served adapter (CPU engines with itool_ray.policy.cpu_lora), else "
        "trainer",
    )
    perplexity_shards: int = Field(
        1,
        ge=1,
        description="trainer perplexity: 1: in the trainer actor; more: that many "
        "parallel Ray tasks",
    )
    export_merged: bool = Field(False, description="save base + final adapter merged at the end")
    heldout_pairs: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="fraction of each iteration's MCTS trees whose pairs DPO does not train on; "
        "they are scored after it (held-out pair accuracy) beside the trained pairs",
    )
    lora: LoraSection = LoraSection()
    sft: SFTSection = SFTSection(epochs=1, batch_size=1, grad_accum=4, max_length=1536, lr=1e-3)
    dpo: DPOSection = DPOSection(
        epochs=1, batch_size=1, grad_accum=4, max_length=1536, lr=1e-4, beta=0.1
    )


class ITOolConfig(Section):
    """The whole iTool job. ``model`` is ``smollm2``, ``tiny`` or a local HF model folder;
    ``address`` a Ray address (default: ``$RAY_ADDRESS`` or a local Ray on 127.0.0.1)."""

    run_dir: str = "runs/itool"
    seed: int = 0
    model: str = "smollm2"
    address: str | None = None
    stop_after: str | None = Field(
        None, description="stop after this stage (e.g. sft, iter1-mcts); run again to resume"
    )
    rerun_changed: bool = Field(
        False,
        description="resume: a finished stage made under other settings (stage_plan) is run "
        "again with every stage after it, instead of refused",
    )
    data: DataSection = DataSection()
    engine: EngineSection = EngineSection()
    replicas: ReplicaSection = ReplicaSection()
    manager: ManagerSection = ManagerSection()
    mcts: MCTSSection = MCTSSection(
        k=3, simulations=4, max_inflight=2, max_step_tokens=32, max_depth=6
    )
    train: TrainSection = TrainSection()
    eval: EvalSection = EvalSection()

    @field_validator("run_dir")
    @classmethod
    def _run_dir_is_a_folder_of_its_own(cls, value: str) -> str:
        try:
            check_run_dir(value)
        except StageError as e:
            raise ValueError(str(e)) from None
        return value

    @model_validator(mode="after")
    def _sections_agree(self) -> ITOolConfig:
        """Checks across sections: the engine has room for what is asked of it, and
        ``stop_after`` names a stage this job runs."""
        if (
            isinstance(self.eval.max_tokens, int)
            and self.eval.max_tokens >= self.engine.max_model_len
        ):
            raise ValueError(
                f"eval.max_tokens ({self.eval.max_tokens}) must be < engine.max_model_len "
                f"({self.engine.max_model_len}): the prompt needs room in the context"
            )
        rank = self.train.lora.build().r
        if self.train.weight_sync == "lora" and rank > self.engine.max_lora_rank:
            raise ValueError(
                f"train.lora.r ({rank}) must be <= engine.max_lora_rank "
                f"({self.engine.max_lora_rank}): the replicas refuse a larger adapter"
            )
        if self.stop_after is not None:
            names = list(stage_plan(self))
            if self.stop_after not in names:
                raise ValueError(
                    f"stop_after: {self.stop_after[:80]!r} is not a stage of this job; "
                    f"its stages: {', '.join(names)}"
                )
        return self


# ---- data ------------------------------------------------------------------------------------


MT_REINFORCE = "reinforce-entries.jsonl"
"""Data stage, multi-turn training set: the reinforcement entries (``reinforce.jsonl`` holds
their step samples, which perplexity scores)."""
MT_HARD = "hard-entries.jsonl"
"""Select stage, multi-turn: the hard entries the search runs on."""
MT_HELDOUT = "mt-heldout-"
"""Data stage: prefix of a multi-turn held-out set's entries file."""


def _slug(name: str) -> str:
    return name.replace("/", "__")


def _data_stage(cfg: ITOolConfig, out: Path) -> dict[str, Any]:
    from itool_ray.datasets import is_multi_turn_set
    from itool_ray.envs.synth_multi_turn import write_multi_turn

    pool = load_named(
        cfg.data.train,
        limit=cfg.data.num_samples,
        seed=cfg.seed,
        on_error=cfg.data.on_error,
        synth=cfg.data.synth,
    )
    split = split_warmup_reinforce(
        pool, reinforce_fraction=cfg.data.reinforce_fraction, seed=cfg.seed
    )
    extra: dict[str, Any] = {}
    if is_multi_turn_set(cfg.data.train):
        # entries are split whole; warm-up and perplexity see one sample per gold message
        from itool_ray.envs.steps import step_samples
        from itool_ray.envs.steps import warmup_buckets as mt_warmup_buckets

        buckets = mt_warmup_buckets(split.warmup)
        write_multi_turn(out / MT_REINFORCE, split.reinforce)
        reinforce = [s for e in split.reinforce for s in step_samples(e)]
        extra = {
            "multi_turn": True,
            "warmup_entries": len(split.warmup),
            "reinforce_steps": len(reinforce),
        }
    else:
        buckets = bucket_by_difficulty(split.warmup)
        reinforce = list(split.reinforce)
    for name, part in buckets:
        write_samples(out / f"warmup-{name}.jsonl", part)
    write_samples(out / "reinforce.jsonl", reinforce)
    heldout = {}
    for name, n in cfg.data.heldout.items():
        # a different seed keeps synthesized held-out samples apart from the training pool
        items = load_named(
            name,
            limit=n,
            seed=cfg.seed + 1,
            on_error=cfg.data.on_error,
            synth=cfg.data.synth,
            how=cfg.data.heldout_draw,
        )
        if is_multi_turn_set(name):
            write_multi_turn(out / f"{MT_HELDOUT}{_slug(name)}.jsonl", items)
        else:
            write_samples(out / f"heldout-{_slug(name)}.jsonl", items)
        heldout[name] = len(items)
    return {
        "train": cfg.data.train,
        "buckets": buckets.sizes,
        "reinforce": len(split.reinforce),
        "heldout": heldout,
        **extra,
    }


def multi_turn_heldout_sets(data_dir: Path) -> dict[str, list]:
    """The multi-turn held-out sets of a data stage: name -> entries."""
    from itool_ray.envs.synth_multi_turn import read_multi_turn

    return _sets(data_dir, MT_HELDOUT, read_multi_turn)


def heldout_sets(data_dir: Path) -> dict[str, list]:
    """The single-turn held-out sets of a data stage: name -> samples."""
    return _sets(data_dir, "heldout-", read_samples)


def _sets(data_dir: Path, prefix: str, read: Callable[[Path], list]) -> dict[str, list]:
    return {
        p.name[len(prefix) : -len(".jsonl")].replace("__", "/"): read(p)
        for p in sorted(data_dir.glob(f"{prefix}*.jsonl"))
    }


def warmup_buckets(data_dir: Path) -> DifficultyBuckets:
    parts = [read_samples(data_dir / f"warmup-{n}.jsonl") for n in ("easy", "medium", "hard")]
    return DifficultyBuckets(*(tuple(p) for p in parts))


# ---- the Ray side: replicas and trainer, started on first use --------------------------------


@dataclass
class Policy:
    """A policy version: 0 = the base model (no adapter)."""

    version: int = 0
    adapter: str | None = None


@dataclass
class Runtime:
    """The job's actors. The pool starts at the first stage that needs replicas, already
    serving the current policy; later versions arrive by broadcast."""

    cfg: ITOolConfig
    model_dir: str
    pool: Any = None
    trainer: Any = None
    broadcasts: list[dict[str, Any]] = field(default_factory=list)
    monitor: RunMonitor = field(default_factory=lambda: RunMonitor(print))
    decode_budget: int | None = None  # eval.max_tokens=auto, resolved once per run

    def init(self) -> None:
        """Connect to the cluster, or start a local Ray whose CPU slots cover every actor of
        the job at once (replicas, trainer, manager, perplexity tasks): stages take turns, so
        the slots may exceed the cores."""
        import math
        import os

        from itool_ray.rollout import init_ray

        c = self.cfg
        shards = c.train.perplexity_shards if c.train.perplexity_shards > 1 else 0
        slots = (
            c.replicas.count * c.replicas.num_cpus
            + c.train.num_cpus
            + c.manager.num_cpus
            + shards * max(c.replicas.num_cpus, 1)
        )
        init_ray(
            c.address,
            num_cpus=max(os.cpu_count() or 1, math.ceil(slots)),
            log_to_driver=self.monitor.log_to_driver,
        )

    def get_trainer(self):
        if self.trainer is None:
            from itool_ray.train.trainer import start_trainer

            self.init()
            t = self.cfg.train
            self.trainer = start_trainer(
                self.model_dir,
                self.cfg.train.lora.build(),
                num_cpus=t.num_cpus,
                num_gpus=t.num_gpus,
                resources=t.resources or None,
                env={"TOKENIZERS_PARALLELISM": "false", **self.monitor.actor_env()},
                wait=self.monitor.follow,
            )
        return self.trainer

    def serve(self, policy: Policy):
        """The replica pool, serving ``policy`` (started, or switched by broadcast)."""
        import ray

        from itool_ray.rollout import ReplicaPool, adapter_payload, run_sync

        self.init()
        full = self.cfg.train.weight_sync == "full"
        if self.pool is None:
            r, cfg = self.cfg.replicas, self.cfg
            payload = (
                ray.put(adapter_payload(policy.adapter)) if policy.adapter and not full else None
            )
            engine = cfg.engine.build(
                self.model_dir, enable_lora=not full, seed=cfg.seed, weight_sync=full
            )
            self.pool = ReplicaPool.start(
                r.count,
                engine,
                num_cpus=r.num_cpus,
                num_gpus=r.num_gpus,
                resources=r.resources or None,
                max_restarts=r.max_restarts,
                temperature=r.temperature,
                env={**r.env, **self.monitor.actor_env()},
                version=0 if full else policy.version,
                adapter=payload,
            )
            run_sync(self.pool.wait_ready())
        elif len(self.pool.healthy()) < len(self.pool.replicas):
            # a replica the last stage lost (restarted by Ray meanwhile) serves this one
            run_sync(self.pool.revive(timeout=10.0))
        if self.pool.version != policy.version:
            if full:
                refs = self.get_trainer().publish_weights(policy.adapter)
                seconds = run_sync(self.pool.broadcast_weights(policy.version, refs))
            else:
                ref = self.get_trainer().publish(policy.adapter)  # once, object store
                seconds = run_sync(self.pool.broadcast(policy.version, ref))
            self.broadcasts.append(
                {
                    "version": policy.version,
                    "seconds": round(seconds, 3),
                    "sync": self.cfg.train.weight_sync,
                }
            )
            log.info(
                "broadcast version %d to %d replicas in %.2f s (%s)",
                policy.version,
                len(self.pool.healthy()),
                seconds,
                self.cfg.train.weight_sync,
            )
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        if self.trainer is not None:
            self.trainer.kill()


# ---- stages ----------------------------------------------------------------------------------


def _eval_stage(rt: Runtime, data_dir: Path, policy: Policy, out: Path) -> dict:
    from itool_ray.eval.generate import (
        ANSWERS_FILE,
        TURNS_FILE,
        pool_responder,
        recorded,
        score_multi_turn_sets,
        score_sets,
    )

    sets, multi_turn = heldout_sets(data_dir), multi_turn_heldout_sets(data_dir)
    budget = _decode_budget(rt, sets, multi_turn)
    pool = rt.serve(policy)
    respond = pool_responder(pool, max_tokens=budget)
    # every finished chunk of answers is kept: a stopped evaluation decodes only the rest
    respond = recorded(respond, out / ANSWERS_FILE)
    respond = rt.monitor.counting(out.name, "records", respond, workers=len(pool.healthy()))
    results = score_sets(sets, respond)
    if multi_turn:
        from itool_ray.eval.job import pool_chat_responder

        chat = pool_chat_responder(pool, max_tokens=budget)
        chat = recorded(chat, out / TURNS_FILE)  # each step, for a resume
        entries = sum(len(v) for v in multi_turn.values())
        chat = rt.monitor.counting(
            out.name, "steps", chat, workers=len(pool.healthy()), part=_rounds(entries)
        )
        results += score_multi_turn_sets(multi_turn, chat)
    (out / "results.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
    return {
        "version": policy.version,
        "max_tokens": budget,
        **{
            r.name: {"accuracy": round(r.accuracy, 4), "n": r.n, "parse_errors": r.parse_errors}
            for r in results
        },
    }


def _rounds(entries: int) -> Callable[[list], str]:
    """Names each lockstep round of a multi-turn evaluation for its progress bar: the round,
    and the entries finished (one prompt per entry still running)."""
    rounds = itertools.count(1)

    def name(prompts: list) -> str:
        return f"round {next(rounds)}, {entries - len(prompts)}/{entries} entries done"

    return name


def _decode_budget(rt: Runtime, sets: dict, multi_turn: dict) -> int:
    """``eval.max_tokens``, ``auto`` resolved on the held-out golds (EvalSection)."""
    if rt.cfg.eval.max_tokens != "auto":
        return rt.cfg.eval.max_tokens
    if rt.decode_budget is not None:  # every evaluation stage reads the same held-out golds
        return rt.decode_budget
    from transformers import AutoTokenizer

    from itool_ray.envs.steps import gold_path
    from itool_ray.eval.generate import decode_budget

    tok = AutoTokenizer.from_pretrained(rt.model_dir)
    golds = [s.gold for samples in sets.values() for s in samples]
    golds += [m for entries in multi_turn.values() for e in entries for m in gold_path(e)]
    counts = [len(tok(g, add_special_tokens=False)["input_ids"]) for g in golds]
    rt.decode_budget = min(decode_budget(counts), rt.cfg.engine.max_model_len // 2)
    return rt.decode_budget


def _sft_stage(rt: Runtime, data_dir: Path, out: Path) -> dict:
    settings = rt.cfg.train.sft.build()
    return rt.get_trainer().warmup_sft(warmup_buckets(data_dir), str(out), settings)


def _select_stage(rt: Runtime, data_dir: Path, policy: Policy, out: Path) -> dict:
    from itool_ray.rollout import run_sync
    from itool_ray.rollout.scatter import scatter
    from itool_ray.train import select_hard
    from itool_ray.train.trainer import sharded_perplexity

    rt.init()
    samples = read_samples(data_dir / "reinforce.jsonl")
    where = rt.cfg.train.perplexity_on
    on = "trainer"
    if where != "trainer":
        pool = rt.serve(policy)
        infos = [i for i in run_sync(pool.infos()) if i is not None]
        if infos and all(i.get("scores_prompts") for i in infos):
            on = "replicas"
        elif where == "replicas":
            raise RuntimeError(
                "train.perplexity_on=replicas: the replicas cannot compute prompt log-probs "
                "under a LoRA adapter on this vLLM (GPU vLLM 0.32, vllm-project/vllm#29955); "
                "use train.perplexity_on=trainer or auto"
            )
    shards = rt.cfg.train.perplexity_shards
    rt.monitor.progress(out.name, 0, len(samples), unit="samples")
    if on == "replicas":
        score = lambda part: scatter(rt.pool, "perplexity", part)  # noqa: E731
        ppl = rt.monitor.counting(out.name, "samples", score, len(rt.pool.healthy()))(samples)
    elif shards > 1:
        ppl = sharded_perplexity(
            rt.model_dir, policy.adapter, samples, shards, num_cpus=rt.cfg.replicas.num_cpus or 1
        )
    else:
        ppl = rt.get_trainer().perplexity(policy.adapter, samples)
    rt.monitor.progress(out.name, len(samples), len(samples), unit="samples")
    candidates: list[Any] = samples
    if (data_dir / MT_REINFORCE).is_file():  # multi-turn: entries ranked by their steps' h
        from itool_ray.envs.steps import entry_perplexities
        from itool_ray.envs.synth_multi_turn import read_multi_turn, write_multi_turn

        candidates = read_multi_turn(data_dir / MT_REINFORCE)
        ppl = entry_perplexities(candidates, {s.id: h for s, h in zip(samples, ppl, strict=True)})
        selection = select_hard(candidates, ppl, rt.cfg.train.alpha)
        write_multi_turn(out / MT_HARD, selection.chosen)
    else:
        selection = select_hard(samples, ppl, rt.cfg.train.alpha)
        write_samples(out / "hard.jsonl", selection.chosen)
    (out / "selection.json").write_text(json.dumps(selection.to_dict(), indent=1))
    return {
        "candidates": len(candidates),
        "kept": len(selection.chosen),
        "threshold": selection.threshold,
        "version": policy.version,
        "perplexity_on": on,
    }


def _mcts_stage(rt: Runtime, select_dir: Path, policy: Policy, out: Path) -> dict:
    from itool_ray.envs.registry import environment_for
    from itool_ray.rollout import run_rollout

    pool = rt.serve(policy)
    if (select_dir / MT_HARD).is_file():  # multi-turn: the conversation is the environment
        from itool_ray.envs.synth_multi_turn import read_multi_turn

        samples: list[Any] = read_multi_turn(select_dir / MT_HARD)
    else:
        samples = read_samples(select_dir / "hard.jsonl")
    mcts = rt.cfg.mcts.build()
    env = environment_for(samples, mcts.outcome)
    stage = out.name
    result = run_rollout(
        samples,
        mcts,
        out,
        pool=pool,
        settings=rt.cfg.manager.build(),
        manager_cpus=rt.cfg.manager.num_cpus,
        autoscale=rt.cfg.replicas.autoscale(),
        log_dir=rt.monitor.logs_dir,
        on_progress=lambda r: rt.monitor.mcts_record(stage, r),
        env=env,
    )
    summary = result.summary
    keep = ("trees_finished", "pairs", "expansions", "failures", "prefix_cache_hit_rate")
    out = {k: summary[k] for k in keep if k in summary} | {"version": policy.version}
    return out | {k: v for k, v in summary.items() if k.startswith("pairs_")}


def _dpo_stage(rt: Runtime, mcts_dir: Path, policy: Policy, out: Path) -> dict:
    from itool_ray.mcts import split_by_tree
    from itool_ray.rollout import read_pairs

    pairs = read_pairs(mcts_dir / "pairs.jsonl")
    train, heldout = split_by_tree(pairs, rt.cfg.train.heldout_pairs, rt.cfg.seed)
    if not train:
        return {"skipped": "no pairs", "adapter_dir": policy.adapter}
    settings = rt.cfg.train.dpo.build()
    result = rt.get_trainer().dpo(policy.adapter, train, str(out), settings, heldout)
    trees = {
        "trained_trees": len({p.tree_id for p in train}),
        "heldout_trees": len({p.tree_id for p in heldout}),
    }
    return {**result, **trees}


# engine settings that place, size or observe an engine without changing what it computes
_ENGINE_PLACEMENT = {"memory_fraction", "cpu_kvcache_gb", "record_prompts"}


def _trainer_settings(section: Section) -> dict[str, Any]:
    """A training section's full settings (defaults included), without those that change
    how it runs, not what it computes: its thread count and checkpoint interval."""
    from itool_ray.train.config import HOW_IT_RUNS

    settings = section.build().to_dict()
    for name in HOW_IT_RUNS:
        settings.pop(name, None)
    return settings


def _data_settings(data: DataSection) -> dict[str, Any]:
    settings = data.model_dump(mode="json")
    if settings["heldout_draw"] == "first":  # the default is left out: runs made before the
        del settings["heldout_draw"]  # setting existed keep their fingerprints and resume
    return settings


def stage_plan(cfg: ITOolConfig) -> dict[str, StageSpec]:
    """Every stage of the job, in order, with the settings its outputs depend on and the
    stages it consumes: what ``StageRunner`` fingerprints, so a resume under other settings is
    refused (or, with ``rerun_changed``, re-run from the first changed stage). Settings not
    named here (Ray placement, replica count and scheduling, ``iterations``, ``stop_after``)
    may change between a run and its resume."""
    model = {"model": cfg.model, "seed": cfg.seed}
    engine_settings = cfg.engine.model_dump(mode="json", exclude=_ENGINE_PLACEMENT)
    engine = {**model, "engine": engine_settings, "weight_sync": cfg.train.weight_sync}
    evaluate = {**engine, "eval": cfg.eval.model_dump(mode="json")}
    lora = _trainer_settings(cfg.train.lora)
    plan = {
        "data": StageSpec({"data": _data_settings(cfg.data), "seed": cfg.seed}),
        "eval-base": StageSpec(evaluate, ("data",)),
    }
    policy: tuple[str, ...] = ()  # the stage whose adapter is served (none: the base model)
    if cfg.train.warmup:
        sft = {**model, "lora": lora, "sft": _trainer_settings(cfg.train.sft)}
        plan["sft"] = StageSpec(sft, ("data",))
        plan["eval-sft"] = StageSpec(evaluate, ("data", "sft"))
        policy = ("sft",)
    for it in range(1, cfg.train.iterations + 1):
        name = f"iter{it}"
        select = {**engine, "alpha": cfg.train.alpha, "perplexity_on": cfg.train.perplexity_on}
        search = cfg.mcts.build().to_dict()
        if search["outcome"] == "exact":  # the default is left out: runs made before the
            del search["outcome"]  # setting existed keep their fingerprints and resume
        sampling = {"mcts": search, "temperature": cfg.replicas.temperature}
        mcts = {**engine, **sampling}
        dpo = {
            **model,
            "lora": lora,
            "dpo": _trainer_settings(cfg.train.dpo),
            "heldout_pairs": cfg.train.heldout_pairs,
        }
        plan[f"{name}-select"] = StageSpec(select, ("data", *policy))
        plan[f"{name}-mcts"] = StageSpec(mcts, (f"{name}-select", *policy))
        plan[f"{name}-dpo"] = StageSpec(dpo, (f"{name}-mcts", *policy))
        plan[f"{name}-eval"] = StageSpec(evaluate, ("data", f"{name}-dpo"))
        policy = (f"{name}-dpo",)
    if cfg.train.export_merged:
        plan["export"] = StageSpec(model, policy)
    return plan


def _iteration(
    rt: Runtime, stages: StageRunner, it: int, policy: Policy, log: Callable[[str], None]
) -> tuple[Policy, dict]:
    """One iTool iteration: select -> MCTS -> DPO -> broadcast + evaluate."""
    name, data_dir = f"iter{it}", stages.path("data")
    sel = stages.run(f"{name}-select", lambda out: _select_stage(rt, data_dir, policy, out))
    log(f"[{name}] {sel['kept']} hard samples of {sel['candidates']} (alpha={rt.cfg.train.alpha})")
    select_dir = stages.path(f"{name}-select")
    mcts = stages.run(
        f"{name}-mcts", lambda out: _mcts_stage(rt, select_dir, policy, out), keep_partial=True
    )
    log(f"[{name}] {mcts.get('pairs', 0)} pairs from {mcts.get('trees_finished', 0)} trees")
    mcts_dir = stages.path(f"{name}-mcts")
    # keep_partial: a stopped round continues from its last checkpoint
    dpo = stages.run(
        f"{name}-dpo", lambda out: _dpo_stage(rt, mcts_dir, policy, out), keep_partial=True
    )
    new = policy
    if dpo.get("adapter_dir") and "skipped" not in dpo:
        new = Policy(policy.version + 1, dpo["adapter_dir"])
    row = stages.run(
        f"{name}-eval", lambda out: _eval_stage(rt, data_dir, new, out), keep_partial=True
    )
    return new, {**row, "pairs": mcts.get("pairs", 0)}


def run_itool(
    cfg: ITOolConfig,
    log: Callable[[str], None] = print,
    monitor: RunMonitor | None = None,
    on_stage_done: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """Run (or resume) the job; returns the held-out accuracy table, one row per policy.
    ``monitor``: the console (the main job's live display, logs folder and curves); without
    one, lines go to ``log`` and the driver's curves to ``run_dir/tensorboard``.
    ``on_stage_done(name)``: called after each stage that ran finished (its marker written)."""
    from itool_ray.models import resolve_model

    own = monitor is None
    monitor = monitor or RunMonitor(log)
    log = monitor.log
    plan = stage_plan(cfg)

    def on_event(name: str, state: str, summary: dict | None) -> None:
        monitor.stage(name, state, summary)
        if state == "done" and on_stage_done is not None:
            on_stage_done(name)

    stages = StageRunner(
        cfg.run_dir,
        log,
        cfg.stop_after,
        plan=plan,
        rerun_changed=cfg.rerun_changed,
        on_event=on_event,
    )
    stages.check()  # before config.json: it never claims settings a kept stage was not made with
    (Path(cfg.run_dir) / "config.json").write_text(cfg.model_dump_json(indent=1))
    monitor.open(cfg.run_dir, list(plan))
    data_dir = stages.path("data")
    rt = Runtime(cfg, str(resolve_model(cfg.model)), monitor=monitor)
    policy = Policy()
    table: dict[str, dict] = {}
    try:
        stages.run("data", lambda out: _data_stage(cfg, out))
        # keep_partial: evaluations and the warm-up continue from what they had finished
        table["base"] = stages.run(
            "eval-base", lambda out: _eval_stage(rt, data_dir, policy, out), keep_partial=True
        )
        if cfg.train.warmup:
            sft = stages.run("sft", lambda out: _sft_stage(rt, data_dir, out), keep_partial=True)
            policy = Policy(1, sft["adapter_dir"])
            table["sft"] = stages.run(
                "eval-sft", lambda out: _eval_stage(rt, data_dir, policy, out), keep_partial=True
            )
        for it in range(1, cfg.train.iterations + 1):
            policy, table[f"iter{it}"] = _iteration(rt, stages, it, policy, log)
        if cfg.train.export_merged and policy.adapter:
            stages.run(
                "export",
                lambda out: {
                    "merged": rt.get_trainer().export_merged(policy.adapter, str(out / "model"))
                },
            )
    except StopAfter as stop:
        log(f"[job] stopped after stage {stop} as asked; run again without stop_after to resume")
    finally:
        if rt.broadcasts:
            with (Path(cfg.run_dir) / "broadcasts.jsonl").open("a") as f:
                f.writelines(json.dumps(b) + "\n" for b in rt.broadcasts)
        rt.close()
        if own:
            monitor.close()
    (Path(cfg.run_dir) / "table.json").write_text(json.dumps(table, indent=1))
    from itool_ray.report import write_report

    log(f"[job] report: {write_report(cfg.run_dir)}")
    return table
