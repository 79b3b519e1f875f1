"""Shared plumbing of the trainers: device choice, model / tokenizer loading, tokenisation,
adapter saving, reading the trainer's log history and the finite-training guard."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from itool_ray.data.prompt import end_of_turn  # noqa: F401  (re-exported)
from itool_ray.train.config import LoraSettings

log = logging.getLogger("itool_ray.train")

ADAPTER_SUBDIR = "adapter"
FINITE_LOG_KEYS: tuple[str, ...] = ("loss", "grad_norm")
"""Per-step log entries that must stay finite (``check_finite_training``)."""


@dataclass(frozen=True)
class Device:
    """Where training runs: CUDA when present (bf16 where supported), else CPU in float32."""

    use_cpu: bool
    dtype: torch.dtype
    bf16: bool

    @property
    def name(self) -> str:
        return "cpu" if self.use_cpu else "cuda"


def pick_device() -> Device:
    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return Device(use_cpu=False, dtype=torch.bfloat16 if bf16 else torch.float32, bf16=bf16)
    return Device(use_cpu=True, dtype=torch.float32, bf16=False)


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Limit torch's intra-op threads to ``n`` while on CPU, then restore the old value."""
    if n is None or torch.cuda.is_available():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def load_base(model_dir: str | Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)


def load_policy(
    model_dir: str | Path,
    adapter_dir: str | Path | None,
    lora: LoraSettings | None,
    dtype: torch.dtype,
    *,
    trainable: bool = True,
    seed: int = 0,
):
    """The base model with a LoRA adapter named ``"default"``: the one in ``adapter_dir``
    (continued; its own shape wins over ``lora``) or a fresh one built from ``lora``, its
    random init seeded with ``seed``."""
    from peft import PeftModel, get_peft_model
    from transformers import set_seed

    base = load_base(model_dir, dtype)
    if adapter_dir is None:
        if not trainable:
            raise ValueError("load_policy: a frozen policy needs an adapter_dir")
        set_seed(seed)
        return get_peft_model(base, (lora or LoraSettings()).to_peft())
    model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=trainable)
    cfg = model.peft_config["default"]
    if trainable and lora is not None and (cfg.r != lora.r or cfg.lora_alpha != lora.alpha):
        log.warning(
            "continuing adapter %s with its own shape r=%s alpha=%s (LoraSettings r=%s alpha=%s "
            "are not used)",
            adapter_dir,
            cfg.r,
            cfg.lora_alpha,
            lora.r,
            lora.alpha,
        )
    return model


def unpatch_forward(model) -> None:
    """Undo TRL's ``add_fused_lm_head`` (an instance-level ``forward``), so a model reused
    by a second trainer is not wrapped twice."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.__dict__.pop("forward", None)


# ---- the finite-training guard ---------------------------------------------------------


class NonFiniteTrainingError(RuntimeError):
    """Training produced a non-finite loss, gradient norm or weight; nothing was saved."""


def _guarded_params(model) -> list[tuple[str, torch.Tensor]]:
    """The weights training changes: trainable ones and LoRA ones (all, if there are none)."""
    named = list(model.named_parameters())
    return [(n, p) for n, p in named if p.requires_grad or "lora_" in n] or named


def non_finite_weights(model) -> list[str]:
    """Names of the trained (trainable or LoRA) parameters holding a NaN or an infinity."""
    with torch.no_grad():
        return [n for n, p in _guarded_params(model) if not bool(torch.isfinite(p).all())]


def non_finite_logs(
    log_history: Sequence[Mapping[str, Any]], keys: Iterable[str] = FINITE_LOG_KEYS
) -> list[str]:
    """``"loss=nan at step 2"`` for every logged ``keys`` value that is not a finite number."""
    keys = tuple(keys)
    bad = []
    for row in log_history:
        for key in keys:
            if key not in row:
                continue
            try:
                ok = math.isfinite(float(row[key]))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                bad.append(f"{key}={row[key]} at step {row.get('step', '?')}")
    return bad


def check_finite_training(
    model,
    log_history: Sequence[Mapping[str, Any]] = (),
    *,
    what: str = "training",
    keys: Iterable[str] = FINITE_LOG_KEYS,
) -> None:
    """Raise ``NonFiniteTrainingError`` when a logged loss / gradient norm (``keys`` of the
    trainer's ``state.log_history``) is not finite or a trained parameter of ``model`` holds
    NaN/Inf. Call after ``trainer.train()``, before anything is saved or published; ``what``
    names the run in the message (e.g. ``"warm-up SFT easy (lr=1e-3)"``)."""
    logs, weights = non_finite_logs(log_history, keys), non_finite_weights(model)
    if not logs and not weights:
        return
    parts = []
    if logs:
        parts.append("logged " + ", ".join(logs[:3]) + (", ..." if len(logs) > 3 else ""))
    if weights:
        total = len(_guarded_params(model))
        parts.append(f"{len(weights)} of {total} trained weight tensors hold NaN/Inf")
        parts.append(f"e.g. {weights[0]}")
    raise NonFiniteTrainingError(
        f"{what} diverged: {'; '.join(parts)}; nothing was saved (try a lower learning rate)"
    )


class StopOnNonFinite(TrainerCallback):
    """Stops a transformers/TRL trainer at the first non-finite logged loss or gradient norm,
    so a diverged run ends at once; ``check_finite_training`` then fails it."""

    def __init__(self, keys: Iterable[str] = FINITE_LOG_KEYS) -> None:
        self.keys = tuple(keys)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and non_finite_logs([logs], self.keys):
            control.should_training_stop = True
        return control


class ProgressFile(TrainerCallback):
    """Appends the trainer's progress to ``path``, one JSON object a line, for the driver
    (``itool_ray.console.wait_reporting``: the trainer runs in a Ray actor): a ``begin``
    record, then at every logged optimizer step its number, ``max_steps``, the epoch and
    every number the trainer logged (loss, learning rate, DPO rewards and margins).

    ``run`` names the run in the records; default: the trainer's output folder name
    (the SFT bucket, ``out/runs/<bucket>``), none for ``out/runs``.
    """

    def __init__(self, path: str | Path, run: str | None = None) -> None:
        self.path = Path(path)
        self.run = run
        self._run: str | None = run

    def _write(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"run": self._run, "time": round(time.time(), 3), **record}) + "\n")

    def on_train_begin(self, args, state, control, **kwargs):
        name = Path(args.output_dir).name
        self._run = self.run if self.run is not None else (None if name == "runs" else name)
        self._write({"event": "begin", "step": state.global_step, "max_steps": state.max_steps})
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:  # the summary row: on_train_end says it
            return control
        numbers = {k: v for k, v in logs.items() if isinstance(v, int | float)}
        self._write(
            {
                "step": state.global_step,
                "max_steps": state.max_steps,
                "epoch": state.epoch,
                **numbers,
            }
        )
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self._write({"event": "end", "step": state.global_step, "max_steps": state.max_steps})
        return control


def save_adapter(model, tokenizer, out_dir: str | Path) -> Path:
    """Save only the ``"default"`` adapter (PEFT format, relative to the original base model)
    and the tokenizer into ``out_dir``; refuses (``NonFiniteTrainingError``) weights holding
    NaN/Inf, whatever trainer made them."""
    check_finite_training(model, what=f"the adapter for {out_dir}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), selected_adapters=["default"])
    tokenizer.save_pretrained(str(out))
    return out


def prune_empty_dirs(root: str | Path) -> None:
    """Remove ``root`` and its sub-folders when they hold no file (trainer scratch with
    ``save_strategy="no"``)."""
    root = Path(root)
    if not root.is_dir():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            d.rmdir()
    if not any(root.iterdir()):
        root.rmdir()


def encode(tokenizer, text: str) -> list[int]:
    """Token ids without special tokens added: the chat template already wrote them (and
    this is how the vLLM policy engine encodes prompts, so training sees the same ids)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def history_series(log_history: Sequence[dict[str, Any]], key: str) -> list[float]:
    """Values of ``key`` in the per-step training logs (the final summary row excluded)."""
    return [float(row[key]) for row in log_history if key in row and "train_runtime" not in row]


def first_last(values: Sequence[float]) -> tuple[float | None, float | None]:
    return (values[0], values[-1]) if values else (None, None)


def report_to() -> list[str]:
    """Where the trainers log their curves (loss, learning rate, DPO rewards and margins):
    TensorBoard where installed (event files under the trainer's output folder,
    ``<stage>/runs/.../runs/<time>_<host>/``, transformers' default), and W&B in offline mode
    where ``wandb`` is installed and ``WANDB_MODE=offline`` is set."""
    out = []
    if importlib.util.find_spec("tensorboard") is not None:
        out.append("tensorboard")
    if os.environ.get("WANDB_MODE") == "offline" and importlib.util.find_spec("wandb"):
        out.append("wandb")
    return out


def training_kwargs(settings: Any, device: Device, output_dir: str | Path) -> dict[str, Any]:
    """TrainingArguments shared by every trainer here (TRL configs subclass them)."""
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": float(settings.epochs),
        "max_steps": settings.max_steps if settings.max_steps is not None else -1,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.grad_accum,
        "learning_rate": float(settings.lr),
        "weight_decay": float(settings.weight_decay),
        "warmup_steps": float(settings.warmup_ratio),
        "lr_scheduler_type": settings.lr_scheduler,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "use_cpu": device.use_cpu,
        "bf16": device.bf16,
        "fp16": False,
        "logging_steps": 1,
        # log a NaN/Inf loss as it is (transformers' filter would log 0.0 in its place)
        "logging_nan_inf_filter": False,
        "save_strategy": "no",
        "report_to": report_to(),
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": not device.use_cpu,
    }
