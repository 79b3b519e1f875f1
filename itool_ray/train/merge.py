"""Export base + LoRA adapter as one merged model folder (for serving full weights).

The adapter is merged in float32 (``merge_and_unload``) and the result cast to the base
model's saved dtype (bf16 for SmolLM2 / Llama) unless ``dtype`` says otherwise, so the merge
itself adds no rounding beyond the final cast. Memory: the base model is held in float32
during the merge (4 bytes per parameter: about 32 GB for an 8B model). The folder is written
to a temporary sibling and renamed, with the ``.itool-complete`` marker of
``itool_ray.models``, so an interrupted export never looks complete.
"""

from __future__ import annotations

from pathlib import Path

import torch

from itool_ray.models.registry import save_model_folder
from itool_ray.train._common import cpu_threads, load_base, load_tokenizer, log


def base_dtype(model_dir: str | Path) -> torch.dtype:
    """The dtype the base model was saved in (float32 when its config does not say)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(model_dir))
    dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def merged_model(
    model_dir: str | Path, adapter_dir: str | Path | None, *, dtype: torch.dtype | None = None
):
    """Base model with ``adapter_dir`` merged in (float32 merge, then ``dtype``, default the
    base model's saved dtype); the base model alone when ``adapter_dir`` is None."""
    from peft import PeftModel

    target = dtype or base_dtype(model_dir)
    model = load_base(model_dir, torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return model.to(target)


def publish_merged(
    model_dir: str | Path, adapter_dir: str | Path | None, bucket_mb: float = 256
) -> list:
    """Full-weight sync: base + ``adapter_dir`` merged, its state dict split into buckets of
    about ``bucket_mb`` MB, each put in Ray's object store once; returns the references for
    ``ReplicaPool.broadcast_weights``. Needs a connected Ray (the trainer actor's, or a
    driver's)."""
    import ray

    from itool_ray.policy.weight_sync import buckets

    model = merged_model(model_dir, adapter_dir)
    return [ray.put(b) for b in buckets(model.state_dict().items(), bucket_mb)]


def export_merged(
    model_dir: str | Path,
    adapter_dir: str | Path,
    out_dir: str | Path,
    *,
    dtype: torch.dtype | None = None,
    threads: int | None = 2,
) -> Path:
    """Merge ``adapter_dir`` into ``model_dir`` and save model + tokenizer to ``out_dir``."""
    out = Path(out_dir)
    with cpu_threads(threads):
        merged = merged_model(model_dir, adapter_dir, dtype=dtype)
        tokenizer = load_tokenizer(model_dir)
        save_model_folder(merged, tokenizer, out, f"merged {adapter_dir} into {model_dir}\n")
    log.info("merged %s into %s -> %s (%s)", adapter_dir, model_dir, out, merged.dtype)
    return out
