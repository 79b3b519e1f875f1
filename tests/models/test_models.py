"""The offline models load in transformers with the expected architecture and chat template."""

from __future__ import annotations

import json

import pytest

from itool_ray.models import TinyModelSpec, build_tiny_model, resolve_model


def test_tiny_model_loads_and_is_deterministic(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["hidden_size"] == TinyModelSpec().hidden_size
    # byte-level BPE: any text round-trips exactly, including call syntax and unicode
    text = '[Market Trends API(trend_type="MARKET_INDEXES", country="us"), f(x=-1.5)] é'
    assert tok.decode(tok(text)["input_ids"]) == text
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    with torch.no_grad():
        logits = model(**tok("get_weather(city=", return_tensors="pt")).logits
    assert logits.shape[-1] == len(tok)
    # same seed -> identical weights; a rebuild with another seed differs
    other = build_tiny_model(tmp_path / "b", TinyModelSpec(seed=1))
    w0 = (tiny_model_dir / "model.safetensors").read_bytes()
    assert (other / "model.safetensors").read_bytes() != w0
    again = build_tiny_model(tmp_path / "c", TinyModelSpec(seed=0))
    assert (again / "model.safetensors").read_bytes() == w0


def test_smollm2_converted_folder(smollm2_dir):
    from transformers import AutoTokenizer

    cfg = json.loads((smollm2_dir / "config.json").read_text())
    assert cfg["model_type"] == "llama"
    assert cfg["num_hidden_layers"] == 30  # SmolLM2-135M
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "bfloat16"
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nhi<|im_end|>" in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert resolve_model("smollm2") == smollm2_dir


def test_resolve_model_rejects_unknown(tmp_path):
    with pytest.raises(FileNotFoundError, match="local Hugging Face model folder"):
        resolve_model(str(tmp_path / "nope"))
