"""The policy engine: vLLM on CPU or GPU, same code."""

from itool_ray.policy.config import EngineConfig
from itool_ray.policy.vllm_engine import Completion, VLLMPolicy

__all__ = ["Completion", "EngineConfig", "VLLMPolicy"]
