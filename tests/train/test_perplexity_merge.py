"""Gold-response perplexity with transformers (eq. 4) against a hand computation, selection on
it, and the merged-model export."""

from __future__ import annotations

import math

import pytest
import torch

from itool_ray.data import render_prompt
from itool_ray.train import export_merged, hf_perplexity, select_hard
from itool_ray.train._common import encode, load_base


def _by_hand(model, tokenizer, sample) -> float:
    """exp(-mean log p) of gold + <|im_end|> given the prompt: one unpadded forward pass,
    a log-softmax per response position."""
    prompt = encode(tokenizer, render_prompt(sample, tokenizer))
    response = encode(tokenizer, sample.gold + "<|im_end|>")
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    total = 0.0
    for k, tok in enumerate(response):
        pos = len(prompt) + k - 1  # logits at pos predict the token at pos + 1
        total += (logits[pos].log_softmax(-1)[tok]).item()
    return math.exp(-total / len(response))


def test_hf_perplexity_matches_a_hand_computation(sft_run, tiny_model_dir, tokenizer, samples):
    from peft import PeftModel

    two = [samples[0], samples[2]]  # an easy and a hard sample: different lengths, padded
    got = hf_perplexity(tiny_model_dir, sft_run.adapter_dir, two, batch_size=2)
    model = PeftModel.from_pretrained(load_base(tiny_model_dir, torch.float32), sft_run.adapter_dir)
    want = [_by_hand(model, tokenizer, s) for s in two]
    assert got == pytest.approx(want, rel=1e-4)
    assert (got[0] < got[1]) == (want[0] < want[1])
    # unbatched gives the same numbers, and the adapter matters
    assert hf_perplexity(tiny_model_dir, sft_run.adapter_dir, two, batch_size=1) == pytest.approx(
        got, rel=1e-5
    )
    base = hf_perplexity(tiny_model_dir, None, two)
    assert base == pytest.approx(
        [_by_hand(load_base(tiny_model_dir, torch.float32), tokenizer, s) for s in two], rel=1e-4
    )
    assert base != pytest.approx(got, rel=1e-3)
    # and feeds the selection: the harder one (higher perplexity) is kept
    sel = select_hard(two, got, alpha=0.2)
    assert sel.chosen == (two[int(got[1] > got[0])],)


def test_export_merged_equals_base_plus_adapter(sft_run, tiny_model_dir, tokenizer, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = export_merged(tiny_model_dir, sft_run.adapter_dir, tmp_path / "merged")
    assert (out / ".itool-complete").is_file() and (out / "tokenizer_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert merged.dtype == torch.float32  # the tiny base is saved in float32
    assert not any("lora" in n for n, _ in merged.named_parameters())
    peft = PeftModel.from_pretrained(load_base(tiny_model_dir, torch.float32), sft_run.adapter_dir)
    x = tokenizer('[get_weather(city="Oslo")]', return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**x).logits, peft(**x).logits, atol=1e-4)
    half = export_merged(
        tiny_model_dir, sft_run.adapter_dir, tmp_path / "bf16", dtype=torch.bfloat16
    )
    assert AutoModelForCausalLM.from_pretrained(half).dtype == torch.bfloat16
