"""Training settings: LoRA, warm-up SFT and preference optimisation.

Frozen dataclasses, validated when built: a wrong value raises ``ValueError`` (``TypeError``
for a wrong kind) naming the class and the field. Pure Python: ``peft`` is imported only by
:meth:`LoraSettings.to_peft`.

Defaults follow the iTool paper where it gives a value (appendix A: learning rate 5e-5, weight
decay 0.01; section 4.3: DPO with beta) and TRL's defaults elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

SFT_ORDERS: tuple[str, ...] = ("easy_to_hard", "mixed")
"""``easy_to_hard``: one trainer run per bucket, easy then medium then hard (iTool eq. 1-3);
``mixed``: one run over the same samples shuffled together (the paper's ablation)."""

LOSS_NAMES: tuple[str, ...] = ("dpo", "ipo", "simpo", "orpo")
"""Preference losses selectable in :class:`DPOSettings` (see ``itool_ray.train.dpo.LOSSES``)."""

LR_SCHEDULERS: tuple[str, ...] = (
    "linear",
    "cosine",
    "constant",
    "constant_with_warmup",
    "cosine_with_restarts",
    "polynomial",
)


def _fail(obj: object, name: str, why: str, value: Any) -> None:
    raise ValueError(f"{type(obj).__name__}.{name} {why}, got {value!r}")


def _check_types(obj: object, spec: dict[str, tuple[type, ...]]) -> None:
    for name, kinds in spec.items():
        value = getattr(obj, name)
        # bool is an int subclass: refuse it where a number is meant
        if isinstance(value, bool) and bool not in kinds:
            raise TypeError(
                f"{type(obj).__name__}.{name} must be {kinds[0].__name__}, got {value!r}"
            )
        if not isinstance(value, kinds):
            names = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
            raise TypeError(f"{type(obj).__name__}.{name} must be {names}, got {value!r}")


def _positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (value > 0 and math.isfinite(value)):
            _fail(obj, name, "must be a finite number > 0", value)


def _non_negative(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (value >= 0 and math.isfinite(value)):
            _fail(obj, name, "must be a finite number >= 0", value)


class _Settings:
    """Shared helpers: ``to_dict`` / ``from_dict`` (unknown keys rejected by name)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {unknown}; known: {sorted(known)}")
        return cls(**d)


def _common_training_checks(obj: Any) -> None:
    _positive(obj, "lr", "epochs", "batch_size", "grad_accum", "max_length")
    if obj.lr > 1:  # a LoRA step this large only diverges (lr=1e30 trained to all-NaN weights)
        _fail(obj, "lr", "must be <= 1", obj.lr)
    _non_negative(obj, "weight_decay", "warmup_ratio")
    if obj.warmup_ratio >= 1:
        _fail(obj, "warmup_ratio", "must be < 1", obj.warmup_ratio)
    if obj.lr_scheduler not in LR_SCHEDULERS:
        _fail(obj, "lr_scheduler", f"must be one of {LR_SCHEDULERS}", obj.lr_scheduler)
    if obj.max_steps is not None and obj.max_steps < 1:
        _fail(obj, "max_steps", "must be None or an int >= 1", obj.max_steps)
    if obj.cpu_threads is not None and obj.cpu_threads < 1:
        _fail(obj, "cpu_threads", "must be None or an int >= 1", obj.cpu_threads)
    if obj.seed < 0:
        _fail(obj, "seed", "must be >= 0", obj.seed)


HOW_IT_RUNS = ("cpu_threads", "checkpoint_steps")
"""Training settings that change how a run goes, not what it computes (left out of every
fingerprint of what a run computes)."""

_TRAINING_TYPES: dict[str, tuple[type, ...]] = {
    "epochs": (int, float),
    "lr": (int, float),
    "batch_size": (int,),
    "grad_accum": (int,),
    "max_length": (int,),
    "seed": (int,),
    "max_steps": (int, type(None)),
    "weight_decay": (int, float),
    "warmup_ratio": (int, float),
    "lr_scheduler": (str,),
    "gradient_checkpointing": (bool,),
    "cpu_threads": (int, type(None)),
}


@dataclass(frozen=True)
class LoraSettings(_Settings):
    """LoRA adapter shape (PEFT ``LoraConfig``).

    Attributes:
        r: rank.
        alpha: ``lora_alpha`` (the update is scaled by alpha / r).
        dropout: ``lora_dropout``.
        target_modules: ``"all-linear"`` (every linear layer but the output head) or module
            names such as ``("q_proj", "v_proj")``.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        _check_types(self, {"r": (int,), "alpha": (int, float), "dropout": (int, float)})
        _positive(self, "r", "alpha")
        if not 0 <= self.dropout < 1:
            _fail(self, "dropout", "must be in [0, 1)", self.dropout)
        tm = self.target_modules
        ok = (isinstance(tm, str) and tm) or (
            isinstance(tm, tuple) and tm and all(isinstance(m, str) and m for m in tm)
        )
        if not ok:
            _fail(
                self,
                "target_modules",
                "must be 'all-linear' or a non-empty list of module names",
                tm,
            )

    def to_peft(self):
        """The PEFT ``LoraConfig`` (task CAUSAL_LM, no bias)."""
        from peft import LoraConfig

        tm = (
            self.target_modules
            if isinstance(self.target_modules, str)
            else list(self.target_modules)
        )
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=tm,
            bias="none",
            task_type="CAUSAL_LM",
        )


@dataclass(frozen=True)
class SFTSettings(_Settings):
    """Warm-up SFT (iTool eq. 1-3).

    Attributes:
        epochs: epochs over each bucket (``easy_to_hard``) or over all samples (``mixed``).
        lr: peak learning rate (AdamW).
        batch_size: sequences per device per micro-batch.
        grad_accum: micro-batches per optimizer step.
        max_length: longer sequences (prompt + response) are cut from the end; a sample whose
            prompt alone fills it is dropped (no response token left to learn).
        order: one of :data:`SFT_ORDERS`.
        seed: seeds the LoRA init, the data order and dropout.
        max_steps: optional cap on optimizer steps per trainer run (each bucket, or the one
            mixed run); for tests and smoke runs.
        weight_decay: AdamW weight decay.
        warmup_ratio: fraction of each run's steps spent warming the learning rate up.
        lr_scheduler: transformers scheduler name, one of :data:`LR_SCHEDULERS`.
        gradient_checkpointing: recompute activations in the backward pass (saves memory on
            large models; slower).
        cpu_threads: torch threads while training on CPU (ignored on GPU); None = leave as is.
    """

    epochs: float = 1.0
    lr: float = 5e-5
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 2048
    order: str = "easy_to_hard"
    seed: int = 0
    max_steps: int | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    lr_scheduler: str = "linear"
    gradient_checkpointing: bool = False
    cpu_threads: int | None = 2

    def __post_init__(self) -> None:
        _check_types(self, {**_TRAINING_TYPES, "order": (str,)})
        _common_training_checks(self)
        if self.order not in SFT_ORDERS:
            _fail(self, "order", f"must be one of {SFT_ORDERS}", self.order)


@dataclass(frozen=True)
class DPOSettings(_Settings):
    """Step-level preference optimisation on MCTS pairs (iTool eq. 10-11).

    Attributes:
        beta: the loss's strength parameter. ``dpo``: the KL coefficient beta of eq. 10-11;
            ``ipo``: the regulariser tau; ``simpo``: SimPO's reward scale beta (the SimPO paper
            uses 2.0-2.5); ``orpo``: the odds-ratio weight lambda.
        lr, epochs, batch_size, grad_accum, max_length, seed, max_steps, weight_decay,
        warmup_ratio, lr_scheduler, gradient_checkpointing, cpu_threads: as in
            :class:`SFTSettings` (``batch_size`` counts pairs; max_length applies to prompt
            + step).
        loss: one of :data:`LOSS_NAMES`.
        simpo_gamma: SimPO's target reward margin gamma (``loss="simpo"`` only).
        shared_prefix: compute each distinct prompt once per optimizer step and the steps
            on its KV cache (``itool_ray.train.shared_prefix``), the reference log-probs once
            before training; same losses and gradients as TRL's concatenated forward, fewer
            tokens run. The ``batch_size * grad_accum`` pairs of a step form one forward.
            With ``gradient_checkpointing`` it runs packed (one sequence per prompt with its
            steps after it, no KV cache: ``shared_prefix.packed_attention``).
        checkpoint_steps: optimizer steps between the resumable checkpoints kept in
            ``out_dir/runs`` (the latest one only; removed once the round is done; 0: none).
            A round stopped part-way continues from its last checkpoint, with the same
            pairs and settings, and ends where an uninterrupted round would.
    """

    beta: float = 0.1
    lr: float = 5e-5
    epochs: float = 1.0
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 2048
    loss: str = "dpo"
    simpo_gamma: float = 0.5
    shared_prefix: bool = True
    seed: int = 0
    max_steps: int | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    lr_scheduler: str = "linear"
    gradient_checkpointing: bool = False
    cpu_threads: int | None = 2
    checkpoint_steps: int = 1

    def __post_init__(self) -> None:
        _check_types(
            self,
            {
                **_TRAINING_TYPES,
                "beta": (int, float),
                "loss": (str,),
                "simpo_gamma": (int, float),
                "shared_prefix": (bool,),
                "checkpoint_steps": (int,),
            },
        )
        _common_training_checks(self)
        _positive(self, "beta")
        _non_negative(self, "simpo_gamma")
        _non_negative(self, "checkpoint_steps")
        if self.loss not in LOSS_NAMES:
            _fail(self, "loss", f"must be one of {LOSS_NAMES}", self.loss)
