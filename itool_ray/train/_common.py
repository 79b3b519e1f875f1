"""Shared plumbing of the trainers: device choice, model / tokenizer loading, tokenisation,
adapter saving and reading the trainer's log history."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from itool_ray.data.prompt import end_of_turn  # noqa: F401  (re-exported)
from itool_ray.train.config import LoraSettings

log = logging.getLogger("itool_ray.train")

ADAPTER_SUBDIR = "adapter"


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
            "are not used)", adapter_dir, cfg.r, cfg.lora_alpha, lora.r, lora.alpha,
        )  # fmt: skip
    return model


def unpatch_forward(model) -> None:
    """Undo TRL's ``add_fused_lm_head`` (an instance-level ``forward``), so a model reused
    by a second trainer is not wrapped twice."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.__dict__.pop("forward", None)


def save_adapter(model, tokenizer, out_dir: str | Path) -> Path:
    """Save only the ``"default"`` adapter (PEFT format, relative to the original base model)
    and the tokenizer into ``out_dir``."""
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
        "save_strategy": "no",
        "report_to": [],
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": not device.use_cpu,
    }
