"""Training: warm-up SFT (easy to hard), hard-sample selection, step-level preference
optimisation (DPO / IPO / SimPO / ORPO) with TRL + PEFT LoRA, and merged-model export.

Plain functions and classes (no Ray): the Trainer actor wraps them where it is launched.
``config`` and ``select`` are pure Python; the torch / TRL modules (``sft``, ``dpo``,
``perplexity``, ``merge``) are imported on first use of one of their names, so
``from itool_ray.train import select_hard`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from itool_ray.train.config import (
    LOSS_NAMES,
    LR_SCHEDULERS,
    SFT_ORDERS,
    DPOSettings,
    LoraSettings,
    SFTSettings,
)
from itool_ray.train.select import Selection, keep_count, select_hard

_LAZY = {
    "SFTResult": "sft",
    "StageStats": "sft",
    "build_sft_dataset": "sft",
    "make_sft_trainer": "sft",
    "warmup_sft": "sft",
    "DPOResult": "dpo",
    "LOSSES": "dpo",
    "LossUnavailableError": "dpo",
    "PreferenceLoss": "dpo",
    "loss_unavailable_reason": "dpo",
    "make_preference_trainer": "dpo",
    "pair_prompt": "dpo",
    "pairs_to_dataset": "dpo",
    "train_dpo": "dpo",
    "hf_perplexity": "perplexity",
    "response_logprobs": "perplexity",
    "export_merged": "merge",
    "end_of_turn": "_common",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "LOSS_NAMES",
    "LR_SCHEDULERS",
    "SFT_ORDERS",
    "DPOSettings",
    "LoraSettings",
    "SFTSettings",
    "Selection",
    "keep_count",
    "select_hard",
    *sorted(_LAZY),
]
