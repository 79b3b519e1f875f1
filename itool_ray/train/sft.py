"""Warm-up SFT with LoRA, easy to hard (iTool section 4.2, eq. 1-3).

Design choices:

* **One trainer run per bucket**, on the same LoRA adapter: easy, then medium, then hard, as
  the paper's "fine-tune sequentially on each subset D_i". Each run has its own optimizer and
  learning-rate schedule (a fresh warm-up/decay per bucket), so the hard bucket is not trained
  at the tail of a schedule that has already decayed, and the losses and step counts are
  reported per bucket. Inside a bucket the samples are shuffled (seeded). ``order="mixed"``
  (the ablation) is one run over the same samples shuffled together, with the same epochs.
* **Loss on the response only.** Each row is pre-tokenised exactly as the vLLM policy engine
  encodes prompts: ``ids(render_prompt(sample)) + ids(sample.gold + end_of_turn)``, both
  without added special tokens (the chat template writes them), and a ``completion_mask``
  marks the response; TRL's SFTTrainer (``completion_only_loss=True``) turns it into labels
  with -100 on the prompt. Letting TRL tokenise the text columns instead would add a BOS
  token for some tokenizers (Llama 3: a second ``<|begin_of_text|>``) and append the EOS
  token after the end-of-turn token where the two differ.
* The end-of-turn token is read off the chat template (``<|im_end|>`` for ChatML models such
  as SmolLM2, ``<|eot_id|>`` for Llama 3), so the model learns to close its turn.
* Continuing from an existing adapter (``adapter_in``) loads it trainable and trains it
  further; its own LoRA shape is kept.
* CPU or GPU with the same code: CUDA when present (bf16 where supported), else CPU in
  float32 with ``cpu_threads`` torch threads and no dataloader workers.

The trainer records the sample ids of every micro-batch it trains on (in order), so the
result shows what was seen when.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import SFTConfig, SFTTrainer

from itool_ray.data import DifficultyBuckets, Sample, bucket_by_difficulty, render_prompt
from itool_ray.train._common import (
    ADAPTER_SUBDIR,
    Device,
    StopOnNonFinite,
    check_finite_training,
    cpu_threads,
    encode,
    end_of_turn,
    first_last,
    history_series,
    load_policy,
    load_tokenizer,
    log,
    pick_device,
    prune_empty_dirs,
    save_adapter,
    training_kwargs,
    unpatch_forward,
)
from itool_ray.train.config import LoraSettings, SFTSettings


@dataclass(frozen=True)
class StageStats:
    """One trainer run: a bucket (``easy`` / ``medium`` / ``hard``) or ``mixed``.

    Attributes:
        name: the bucket name, or ``"mixed"``.
        samples: samples trained on (after dropping rows whose prompt fills ``max_length``).
        rows: training rows they made (fewer than ``samples`` where a sample's ids are a
            prefix of another's and it is trained inside that row).
        steps: optimizer steps taken.
        losses: the training loss logged at every optimizer step.
        seen_ids: sample ids of every micro-batch trained on, in training order.
        seconds: wall time of the run.
    """

    name: str
    samples: int
    steps: int
    losses: tuple[float, ...]
    seen_ids: tuple[str, ...]
    seconds: float
    rows: int | None = None

    @property
    def first_loss(self) -> float | None:
        return first_last(self.losses)[0]

    @property
    def last_loss(self) -> float | None:
        return first_last(self.losses)[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "samples": self.samples,
            "rows": self.rows,
            "steps": self.steps,
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
            "losses": list(self.losses),
            "seen_ids": list(self.seen_ids),
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class SFTResult:
    """What :func:`warmup_sft` did and where the adapter is."""

    adapter_dir: Path
    order: str
    device: str
    stages: tuple[StageStats, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return sum(s.steps for s in self.stages)

    @property
    def steps_per_stage(self) -> dict[str, int]:
        return {s.name: s.steps for s in self.stages}

    def to_dict(self) -> dict[str, Any]:
        return {
            "adapter_dir": str(self.adapter_dir),
            "order": self.order,
            "device": self.device,
            "steps": self.steps,
            "stages": [s.to_dict() for s in self.stages],
            "settings": dict(self.settings),
        }


# ---- data ------------------------------------------------------------------------------


def build_sft_dataset(samples: Sequence[Sample], tokenizer, *, eot: str | None = None):
    """Rows ``{"id", "covers", "input_ids", "completion_mask"}``: prompt ids then response
    ids (gold + end-of-turn), the mask 1 on the response (module docstring).

    A sample whose ids are a prefix of another sample's (the earlier messages of a multi-turn
    task) is trained inside that row: its response is marked there too, at the same positions
    and with the same context (:mod:`itool_ray.data.prefix`). ``covers`` lists the samples a
    row trains, its own last; ``id`` is its own."""
    from datasets import Dataset

    from itool_ray.data.prefix import host_groups

    eot = end_of_turn(tokenizer) if eot is None else eot
    prompts = [encode(tokenizer, render_prompt(s, tokenizer)) for s in samples]
    full = [p + encode(tokenizer, s.gold + eot) for p, s in zip(prompts, samples, strict=True)]
    rows: dict[str, list] = {"id": [], "covers": [], "input_ids": [], "completion_mask": []}
    for host, members in host_groups(full).items():
        mask = [0] * len(full[host])
        for m in members:
            mask[len(prompts[m]) : len(full[m])] = [1] * (len(full[m]) - len(prompts[m]))
        rows["id"].append(samples[host].id)
        rows["covers"].append([samples[m].id for m in members])
        rows["input_ids"].append(full[host])
        rows["completion_mask"].append(mask)
    return Dataset.from_dict(rows)


BUCKETS_SUBDIR = "buckets"
"""``out_dir/buckets/<name>``: a finished bucket's checkpoint (:func:`warmup_sft`)."""


def _save_bucket(out: Path, model, tokenizer, stats: StageStats, samples: list[Sample]) -> None:
    folder = out / BUCKETS_SUBDIR / stats.name
    save_adapter(model, tokenizer, folder / ADAPTER_SUBDIR)
    record = {"stats": stats.to_dict(), "samples": [s.id for s in samples]}
    tmp = folder / "bucket.json.tmp"
    tmp.write_text(json.dumps(record))
    tmp.replace(folder / "bucket.json")  # the marker is written last, whole


def _finished_buckets(out: Path, stages: list[tuple[str, list[Sample]]]) -> list[StageStats]:
    """The leading buckets with a checkpoint for the same samples, in order."""
    done: list[StageStats] = []
    for name, samples in stages:
        marker = out / BUCKETS_SUBDIR / name / "bucket.json"
        try:
            record = json.loads(marker.read_text())
        except (OSError, ValueError):
            break
        if record.get("samples") != [s.id for s in samples]:
            log.warning("warm-up SFT: checkpoint of bucket %r is of other samples, ignored", name)
            break
        d = record["stats"]
        done.append(
            StageStats(
                name=d["name"],
                samples=d["samples"],
                steps=d["steps"],
                losses=tuple(d["losses"]),
                seen_ids=tuple(d["seen_ids"]),
                seconds=d["seconds"],
                rows=d.get("rows"),
            )
        )
    return done


def _covered(dataset) -> int:
    """Samples a (possibly filtered) dataset from :func:`build_sft_dataset` trains."""
    if "covers" not in dataset.column_names:
        return len(dataset)
    return sum(len(c) for c in dataset["covers"])


def _stages(
    data: DifficultyBuckets | Sequence[Sample], order: str
) -> list[tuple[str, list[Sample]]]:
    if isinstance(data, DifficultyBuckets):
        buckets = [(name, list(part)) for name, part in data]
    elif order == "easy_to_hard":
        buckets = [(name, list(part)) for name, part in bucket_by_difficulty(list(data))]
    else:
        buckets = [("mixed", list(data))]
    if order == "mixed":
        buckets = [("mixed", [s for _, part in buckets for s in part])]
    kept = [(name, part) for name, part in buckets if part]
    if not kept:
        raise ValueError("warmup_sft: no samples to train on")
    for name, part in buckets:
        if not part:
            log.warning("warm-up SFT: bucket %r is empty, skipped", name)
    return kept


# ---- trainer ---------------------------------------------------------------------------


class _OrderRecorder:
    """Wraps the collator: queues the sample ids of each batch it builds; the trainer pops
    one entry per micro-batch it trains on (the dataloader may collate one batch ahead)."""

    def __init__(self, collator) -> None:
        self.collator = collator
        self.pending: deque[list[str]] = deque()
        self.seen: list[str] = []

    def __call__(self, examples: list[dict[str, Any]]):
        self.pending.append([str(i) for e in examples for i in e.get("covers") or [e["id"]]])
        drop = ("id", "covers")
        return self.collator([{k: v for k, v in e.items() if k not in drop} for e in examples])

    def trained_one(self) -> None:
        if self.pending:
            self.seen.extend(self.pending.popleft())


class _RecordingSFTTrainer(SFTTrainer):
    """SFTTrainer that records which samples each training micro-batch held."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recorder = _OrderRecorder(self.data_collator)
        self.data_collator = self.recorder

    def training_step(self, *args, **kwargs):
        self.recorder.trained_one()
        return super().training_step(*args, **kwargs)


def make_sft_trainer(
    model,
    tokenizer,
    dataset,
    settings: SFTSettings,
    output_dir: str | Path,
    *,
    device: Device | None = None,
    callbacks: list | None = None,
) -> _RecordingSFTTrainer:
    """An SFTTrainer on ``model`` (a PeftModel) for a dataset from :func:`build_sft_dataset`.

    ``trainer.recorder.seen`` lists the sample ids trained on, in order; the trainer stops at
    the first non-finite loss or gradient norm (``StopOnNonFinite``).
    """
    device = device or pick_device()
    args = SFTConfig(
        **training_kwargs(settings, device, output_dir),
        max_length=settings.max_length,
        completion_only_loss=True,
        remove_unused_columns=False,  # keeps "id" for the order recorder
        train_sampling_strategy="random",
    )
    return _RecordingSFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[*(callbacks or []), StopOnNonFinite()],
    )


# ---- entry point -----------------------------------------------------------------------


def warmup_sft(
    model_dir: str | Path,
    buckets_or_samples: DifficultyBuckets | Sequence[Sample],
    out_dir: str | Path,
    settings: SFTSettings | None = None,
    lora: LoraSettings | None = None,
    *,
    adapter_in: str | Path | None = None,
    callbacks: list | None = None,
) -> SFTResult:
    """LoRA warm-up SFT of ``model_dir`` (module docstring); the adapter and tokenizer are
    saved to ``out_dir/adapter`` (PEFT format, relative to ``model_dir``).

    Args:
        model_dir: the base model folder (Hugging Face format).
        buckets_or_samples: ``DifficultyBuckets``, or samples (bucketed here with
            :func:`itool_ray.data.bucket_by_difficulty` for ``easy_to_hard``).
        out_dir: output folder; trainer scratch goes to ``out_dir/runs``. Each finished
            bucket leaves a checkpoint in ``out_dir/buckets/<name>`` (adapter, stats and the
            sample ids it trained on); a call on a folder holding checkpoints of its leading
            buckets, same samples in the same buckets, continues after the last of them (a
            run stopped mid-way loses at most the bucket it was in). The checkpoints are
            removed once the final adapter is saved.
        settings: SFT settings (default :class:`SFTSettings`).
        lora: shape of a new adapter (ignored when ``adapter_in`` is given).
        adapter_in: an existing adapter to continue training (later iterations).
        callbacks: extra ``transformers.TrainerCallback`` objects for every run (progress).
    """
    settings = settings or SFTSettings()
    lora = lora or LoraSettings()
    out = Path(out_dir)
    stages = _stages(buckets_or_samples, settings.order)
    device = pick_device()
    with cpu_threads(settings.cpu_threads):
        tokenizer = load_tokenizer(model_dir)
        results = _finished_buckets(out, stages)
        if results:
            adapter_in = out / BUCKETS_SUBDIR / results[-1].name / ADAPTER_SUBDIR
            log.info(
                "warm-up SFT: buckets %s finished earlier, continuing from %s",
                [r.name for r in results],
                adapter_in,
            )
        model = load_policy(model_dir, adapter_in, lora, device.dtype, seed=settings.seed)
        eot = end_of_turn(tokenizer)
        log.info(
            "warm-up SFT on %s: order=%s, stages=%s, end-of-turn=%r",
            device.name,
            settings.order,
            {n: len(p) for n, p in stages},
            eot,
        )
        for name, samples in stages[len(results) :]:
            dataset = build_sft_dataset(samples, tokenizer, eot=eot)
            trainer = make_sft_trainer(
                model,
                tokenizer,
                dataset,
                settings,
                out / "runs" / name,
                device=device,
                callbacks=callbacks,
            )
            if len(trainer.train_dataset) == 0:  # TRL drops rows truncated to no label
                raise ValueError(
                    f"warm-up SFT, bucket {name!r}: none of its {len(samples)} samples keeps a "
                    f"token of its answer within train.sft.max_length={settings.max_length} "
                    "(the prompts are longer); raise it"
                )
            start = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - start
            unpatch_forward(model)
            # a diverged bucket fails the run here: nothing saved, no later bucket trained
            what = f"warm-up SFT {name} (lr={settings.lr:g})"
            check_finite_training(model, trainer.state.log_history, what=what)
            dropped = _covered(dataset) - _covered(trainer.train_dataset)
            if dropped:
                log.warning(
                    "warm-up SFT %s: %d of %d samples dropped (prompt fills max_length=%d)",
                    name,
                    dropped,
                    _covered(dataset),
                    settings.max_length,
                )
            stats = StageStats(
                name=name,
                samples=_covered(trainer.train_dataset),
                rows=len(trainer.train_dataset),
                steps=trainer.state.global_step,
                losses=tuple(history_series(trainer.state.log_history, "loss")),
                seen_ids=tuple(trainer.recorder.seen),
                seconds=seconds,
            )
            log.info(
                "warm-up SFT %s: %d samples, %d steps, loss %s -> %s, %.1fs",
                name,
                stats.samples,
                stats.steps,
                stats.first_loss,
                stats.last_loss,
                seconds,
            )
            results.append(stats)
            _save_bucket(out, model, tokenizer, stats, samples)
        adapter_dir = save_adapter(model, tokenizer, out / ADAPTER_SUBDIR)
        shutil.rmtree(out / BUCKETS_SUBDIR, ignore_errors=True)
        prune_empty_dirs(out / "runs")
    return SFTResult(adapter_dir, settings.order, device.name, tuple(results), settings.to_dict())
