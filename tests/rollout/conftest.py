"""Settings shared by the rollout tests (the local Ray fixture lives in tests/conftest.py)."""

from __future__ import annotations


def replica_env() -> dict[str, str]:
    return {
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
