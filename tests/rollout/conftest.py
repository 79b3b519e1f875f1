"""Settings shared by the rollout tests (the local Ray fixture lives in tests/conftest.py)."""

from __future__ import annotations

import json


def replica_env() -> dict[str, str]:
    return {
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def one_long_replica(context: int) -> list[str]:
    """Overrides for one small float32 replica of the tiny model with a ``context``-token
    window (multi-turn prompts), its KV cache kept to 1 GB."""
    return [
        "replicas.count=1",
        f"replicas.env={json.dumps(replica_env())}",
        "engine.dtype=float32",
        "engine.memory_fraction=0.1",
        "engine.max_logprobs=4096",
        f"engine.max_model_len={context}",
        "engine.cpu_kvcache_gb=1",
    ]
