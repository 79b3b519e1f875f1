"""Shared fixtures: the offline models, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from itool_ray.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


TINY_LONG_CONTEXT = 32768
"""The context of ``tiny_long_dir``: the tiny tokenizer spends 6-16k tokens on a multi-turn
prompt (the classes' function docs)."""


@pytest.fixture(scope="session")
def tiny_long_dir(tmp_path_factory) -> Path:
    """The tiny model with a 32k context, for multi-turn tasks on real vLLM."""
    from itool_ray.models.tiny import TinyModelSpec, build_tiny_model

    spec = TinyModelSpec(max_position_embeddings=TINY_LONG_CONTEXT)
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-32k", spec)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    from itool_ray.models import prepare_smollm2

    return prepare_smollm2()


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from itool_ray.rollout.run import loopback_only

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    loopback_only()
    ray.init(num_cpus=4, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
