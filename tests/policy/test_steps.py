"""Step boundaries: one call (with its separator) or one sentence per step."""

from __future__ import annotations

import pytest

from itool_ray.policy.steps import find_step_end


@pytest.mark.parametrize(
    ("prefix", "text", "finished", "end", "terminal"),
    [
        # first call of a parallel list: the step keeps the comma, the list goes on
        ("", '[f(a=1), g(b="x")]', False, len("[f(a=1),"), False),
        # second call closes the list: terminal
        ("[f(a=1),", ' g(b="x")]', False, len(' g(b="x")]'), True),
        # a ")," inside a string literal is not a boundary: keep generating
        ("", '[f(q="a),b", ', False, None, False),
        ("", '[f(q="a),b"), g()]', False, len('[f(q="a),b"),'), False),
        # call complete but separator not generated yet: no boundary yet
        ("", "[f(a=1)", False, None, False),
        # ... unless the sequence ended there
        ("", "[f(a=1)", True, len("[f(a=1)"), True),
        # prose: one sentence per step
        ("", "I cannot help. The tools do not fit.", False, len("I cannot help."), False),
        ("I cannot help.", " The tools do not fit.", True, len(" The tools do not fit."), True),
        # junk after a call ends the (broken) list
        ("", "[f(a=1) oops", False, len("[f(a=1)"), True),
    ],
)
def test_find_step_end(prefix, text, finished, end, terminal):
    cut = find_step_end(prefix, text, finished)
    assert cut.end == end
    if end is not None:
        assert cut.terminal is terminal


def test_a_self_evaluation_prompt_longer_than_the_context_is_not_sent():
    """vLLM rejects a prompt over max_model_len and fails its whole batch: such a prompt gets
    C = 0.5 (no opinion) and the others are answered as usual."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from itool_ray.data import SELF_EVAL_NO, SELF_EVAL_YES, Sample, render_self_eval_prompt
    from itool_ray.mcts.core import EvalRequest
    from itool_ray.models import resolve_model
    from itool_ray.policy.steps import StepEngine

    tok = AutoTokenizer.from_pretrained(str(resolve_model("smollm2")))
    short = EvalRequest("t", 0, ({"role": "user", "content": "hi"},), (), "[f(a=1)]", False)
    long = short._replace(response="[f(a=" + "1" * 5000 + ")]")
    sample = Sample(id="t", tools=(), messages=short.messages, gold="")
    n = len(
        tok(render_self_eval_prompt(sample, tok, short.response), add_special_tokens=False)[
            "input_ids"
        ]
    )
    yes = tok(SELF_EVAL_YES, add_special_tokens=False)["input_ids"][0]
    no = tok(SELF_EVAL_NO, add_special_tokens=False)["input_ids"][0]
    sent = []

    class Policy:
        tokenizer = tok
        config = SimpleNamespace(max_logprobs=20, max_model_len=n + 8)

        def next_token_logprobs(self, prompts, k):
            sent.extend(prompts)
            return [{yes: -0.1, no: -3.0} for _ in prompts]

    engine = StepEngine(Policy())
    c_short, c_long = engine.evaluate([short, long])
    assert c_long == 0.5 and c_short > 0.9
    assert len(sent) == 1 and len(sent[0]) == n


def test_an_expansion_prompt_longer_than_the_context_is_not_sent():
    """A state whose prompt plus max_tokens does not fit max_model_len would make vLLM fail
    the replica's whole batch (and again after each restart: a stalled search): it gets one
    empty terminal step instead, and the other requests are expanded as usual."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from itool_ray.data import Sample, render_prompt
    from itool_ray.mcts.core import ExpandRequest
    from itool_ray.models import resolve_model
    from itool_ray.policy.steps import CONTEXT_FULL, StepEngine
    from itool_ray.policy.vllm_engine import Completion

    tok = AutoTokenizer.from_pretrained(str(resolve_model("smollm2")))
    short = ExpandRequest("a", 0, ({"role": "user", "content": "hi"},), (), "", 2, 16, 1)
    long = short._replace(tree_id="b", messages=({"role": "user", "content": "hi " * 3000},))
    n = len(
        tok(
            render_prompt(Sample(id="a", tools=(), messages=short.messages, gold=""), tok),
            add_special_tokens=False,
        )["input_ids"]
    )
    sent = []
    ids = tuple(tok("I cannot help.", add_special_tokens=False)["input_ids"])

    class Policy:
        tokenizer = tok
        config = SimpleNamespace(max_logprobs=20, max_model_len=n + 16)

        def generate(self, prompts, n, max_tokens, **kw):
            sent.extend(prompts)
            c = Completion(ids, "I cannot help.", (-0.5,) * len(ids), "stop", None)
            return [[c] * n for _ in prompts]

    out_short, out_long = StepEngine(Policy()).expand([short, long])
    assert [s.finish_reason for s in out_long] == [CONTEXT_FULL]
    assert out_long[0].terminal and out_long[0].text == "" and out_long[0].token_ids == ()
    assert len(out_short) == 2 and out_short[0].text == "I cannot help."
    assert len(sent) == 1 and len(sent[0]) == n  # the long prompt never reached the engine


def test_a_perplexity_sample_longer_than_the_context_is_inf_and_not_sent():
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from itool_ray.data import Sample
    from itool_ray.models import resolve_model
    from itool_ray.policy.steps import StepEngine

    tok = AutoTokenizer.from_pretrained(str(resolve_model("smollm2")))
    short = Sample(id="a", tools=(), messages=({"role": "user", "content": "hi"},), gold="ok")
    long = Sample(
        id="b", tools=(), messages=({"role": "user", "content": "hi " * 3000},), gold="ok"
    )
    sent = []

    class Policy:
        tokenizer = tok
        config = SimpleNamespace(max_logprobs=20, max_model_len=512)

        def perplexity(self, prompts, responses):
            sent.extend(prompts)
            return [2.0] * len(prompts)

    assert StepEngine(Policy()).perplexity([long, short, long]) == [
        float("inf"),
        2.0,
        float("inf"),
    ]
    assert len(sent) == 1
