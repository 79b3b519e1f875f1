"""Typed job configuration: YAML file + ``key.path=value`` overrides, validated up front.

Every section is a frozen pydantic model with ``extra="forbid"``, so a misspelt key or a
value of the wrong kind fails before any actor starts, with an error naming the key and what
is allowed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """Base of every config section: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it and what is allowed."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"mcts.c_puct=1.5"`` -> (["mcts", "c_puct"], 1.5); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``a.b.c=value`` in a nested dict (creating sections as needed)."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _explain(cls: type[BaseModel], err: ValidationError) -> str:
    lines = [f"invalid {cls.__name__} configuration:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key; allowed here: {_allowed(cls, e['loc'][:-1])}")
        else:
            lines.append(f"  {where}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _allowed(cls: type[BaseModel], loc: tuple) -> str:
    model: Any = cls
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return "?"
        model = field.annotation
    fields = getattr(model, "model_fields", None) or getattr(model, "__dataclass_fields__", {})
    return ", ".join(sorted(fields))


def merge_defaults(default: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` laid over the values of ``default``, section by section: a key set inside a
    section keeps that section's other defaults (``mcts.simulations=4`` leaves the job's own
    ``mcts.k``); any other value (numbers, lists, plain mappings) is replaced whole."""
    merged: dict[str, Any] = dict(default.model_extra or {})
    fields = type(default).model_fields
    for key, value in data.items():
        current = getattr(default, key) if key in fields else merged.get(key)
        if isinstance(current, BaseModel) and isinstance(value, dict):
            merged[key] = merge_defaults(current, value)
        else:
            merged[key] = value
    return merged


def load_config(
    cls: type[M], path: str | Path | None = None, overrides: list[str] | None = None
) -> M:
    """Build ``cls`` from an optional YAML file plus overrides; raise ``ConfigError``."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = loaded
    data = apply_overrides(data, list(overrides or []))
    try:
        return cls.model_validate(merge_defaults(cls(), data))
    except ValidationError as e:
        raise ConfigError(_explain(cls, e)) from None


def load_job_config(cls: type[M], path: str | Path | None, overrides: list[str] | None) -> M:
    """For a job's command line: log at INFO, and turn a ``ConfigError`` into a clean exit
    that prints what is wrong (before any actor starts)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return load_config(cls, path, overrides or [])
    except ConfigError as e:
        raise SystemExit(str(e)) from None


# ---- sections shared by the jobs ------------------------------------------------------------
class EngineSection(Section):
    """vLLM settings of the policy replicas (see ``itool_ray.policy.EngineConfig``)."""

    dtype: str = "auto"
    max_model_len: int = Field(4096, ge=256)
    cpu_kvcache_gb: float = Field(2.0, gt=0)
    memory_fraction: float | None = Field(None, gt=0, le=1)
    enable_prefix_caching: bool = True
    max_lora_rank: int = Field(16, ge=1)
    max_logprobs: int = Field(20, ge=2)
    block_size: int | None = Field(
        None,
        ge=16,
        multiple_of=16,
        description="KV block size; None: 32 on CPU, vLLM's default on GPU",
    )

    def build(self, model_dir: str, *, enable_lora: bool = True, seed: int = 0,
              weight_sync: bool = False):  # fmt: skip
        from itool_ray.policy import EngineConfig

        return EngineConfig(
            model=str(model_dir),
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            cpu_kvcache_gb=self.cpu_kvcache_gb,
            memory_fraction=self.memory_fraction,
            enable_prefix_caching=self.enable_prefix_caching,
            enable_lora=enable_lora,
            max_lora_rank=self.max_lora_rank,
            max_logprobs=self.max_logprobs,
            block_size=self.block_size,
            weight_sync=weight_sync,
            seed=seed,
        )


class ReplicaSection(Section):
    """How many policy replicas, and what each asks Ray for.

    ``resources`` are custom Ray resources (e.g. ``{rollout_slot: 1}``) that make the
    autoscaler add nodes offering them; on GPU nodes set ``num_gpus: 1``.
    """

    count: int = Field(2, ge=1, description="replicas started with the job (the minimum)")
    max_count: int | None = Field(
        None, ge=1, description="autoscaling: grow up to this many while trees wait; None: fixed"
    )
    scale_up_after_s: float = Field(2.0, ge=0, description="trees waited this long: grow")
    idle_timeout_s: float = Field(30.0, ge=0, description="an added replica idle this long: stop")
    num_cpus: float = Field(1, ge=0)
    num_gpus: float = Field(0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)
    max_restarts: int = Field(3, ge=0)
    temperature: float = Field(1.0, ge=0)
    env: dict[str, str] = Field(
        default_factory=lambda: {
            "VLLM_CPU_KVCACHE_SPACE": "2",
            # one engine step on a busy CPU host can pass vLLM's 300 s default and kill it
            "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "1800",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> ReplicaSection:
        if self.max_count is not None and self.max_count < self.count:
            raise ValueError(f"max_count ({self.max_count}) must be >= count ({self.count})")
        return self

    def autoscale(self):
        """``AutoscaleSettings`` when ``max_count`` > ``count``, else None (fixed pool)."""
        if self.max_count is None or self.max_count <= self.count:
            return None
        from itool_ray.rollout.autoscale import AutoscaleSettings

        return AutoscaleSettings(
            min_replicas=self.count,
            max_replicas=self.max_count,
            up_after_s=self.scale_up_after_s,
            idle_s=self.idle_timeout_s,
        )


class ManagerSection(Section):
    """Scheduling knobs of the tree manager (``itool_ray.rollout.ManagerSettings``)."""

    max_batch: int = Field(64, ge=1)
    calls_per_replica: int = Field(2, ge=1)
    checkpoint_every_s: float = Field(30.0, ge=0)
    overload: int | None = Field(
        None, ge=1, description="None: max_batch * (calls_per_replica + 1), see ManagerSettings"
    )
    num_cpus: float = Field(0.5, ge=0)

    def build(self):
        from itool_ray.rollout import ManagerSettings

        return ManagerSettings(
            max_batch=self.max_batch,
            calls_per_replica=self.calls_per_replica,
            checkpoint_every_s=self.checkpoint_every_s,
            overload=self.overload,
        )


class _DataclassSection(Section):
    """A section holding the fields of a frozen settings dataclass (``from_dict``), validated
    by that class when the configuration is loaded."""

    model_config = ConfigDict(extra="allow", frozen=True)
    _target: ClassVar[tuple[str, str]]

    def build(self):
        module, name = self._target
        cls = getattr(importlib.import_module(module), name)
        return cls.from_dict(dict(self.model_extra or {}))

    def model_post_init(self, __context: Any) -> None:
        try:
            self.build()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None


class MCTSSection(_DataclassSection):
    """Search settings: any field of ``itool_ray.mcts.MCTSConfig``, validated by it."""

    _target = ("itool_ray.mcts", "MCTSConfig")


class LoraSection(_DataclassSection):
    """LoRA shape: any field of ``itool_ray.train.LoraSettings``."""

    _target = ("itool_ray.train.config", "LoraSettings")


class SFTSection(_DataclassSection):
    """Warm-up SFT: any field of ``itool_ray.train.SFTSettings``."""

    _target = ("itool_ray.train.config", "SFTSettings")


class DPOSection(_DataclassSection):
    """Preference optimisation: any field of ``itool_ray.train.DPOSettings``."""

    _target = ("itool_ray.train.config", "DPOSettings")
