"""Prompt rendering: ToolACE system prompt, partial responses, the self-evaluation prompt."""

from __future__ import annotations

import importlib.util
import json

import pytest

from itool_ray.data import (
    SELF_EVAL_NO,
    SELF_EVAL_YES,
    TOOLACE_SYSTEM_PROMPT,
    Sample,
    build_messages,
    build_self_eval_messages,
    parse_system_tools,
    prompt_and_completion,
    render_prompt,
    render_self_eval_prompt,
)

TOOLS = (
    {
        "name": "Weather Forecast API",
        "description": "Forecast {braces} stay",
        "parameters": {
            "type": "dict",
            "properties": {"city": {"type": "string", "description": "City"}},
            "required": ["city"],
        },
    },
    {"name": "math.factorial", "description": "n!", "parameters": {"type": "dict"}},
)
SAMPLE = Sample(
    id="x",
    tools=TOOLS,
    messages=(
        {"role": "user", "content": "Weather in Paris and 5!?"},
        {"role": "assistant", "content": "[math.factorial(n=5)]"},
        {"role": "tool", "content": '[{"name": "math.factorial", "results": 120}]'},
        {"role": "user", "content": "And the weather?"},
    ),
    gold='[Weather Forecast API(city="Paris")]',
)


class FakeTokenizer:
    """A Jinja-free chat template: ``<|role|>content<|end|>`` per turn."""

    def apply_chat_template(self, conversation, *, tokenize=True, add_generation_prompt=False):
        assert tokenize is False
        text = "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in conversation)
        return text + ("<|assistant|>" if add_generation_prompt else "")


def test_system_prompt_lists_the_tools_in_toolace_wording():
    messages = build_messages(SAMPLE)
    system = messages[0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are an expert in composing functions.")
    assert (
        "[func1(params_name=params_value, params_name2=params_value2...), func2(params)]"
        in (system["content"])
    )
    assert json.dumps(list(TOOLS)) in system["content"]
    # the rendered prompt is ToolACE's data.json shape: its tool list parses back
    assert parse_system_tools(system["content"]) == list(TOOLS)
    assert messages[1:] == list(SAMPLE.messages)


def test_leading_system_turns_are_merged():
    s = Sample(
        "y",
        TOOLS,
        ({"role": "system", "content": "The current year is 2023."},) + SAMPLE.messages[:1],
        "x",
    )
    messages = build_messages(s)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].endswith("\nThe current year is 2023.")


def test_custom_template():
    messages = build_messages(SAMPLE, template="Tools: {tools}")
    assert messages[0]["content"] == "Tools: " + json.dumps(list(TOOLS))
    assert "{tools}" in TOOLACE_SYSTEM_PROMPT


def test_partial_response_follows_the_generation_prompt():
    tok = FakeTokenizer()
    full = render_prompt(SAMPLE, tok)
    assert full.endswith("<|user|>And the weather?<|end|><|assistant|>")
    assert full.startswith("<|system|>You are an expert in composing functions.")
    partial = "[Weather Forecast API("
    assert render_prompt(SAMPLE, tok, partial) == full + partial
    prompt, completion = prompt_and_completion(SAMPLE, tok)
    assert prompt == full and completion == SAMPLE.gold


def test_self_eval_prompt():
    tok = FakeTokenizer()
    partial = '[Weather Forecast API(city="Lima")'
    (msg,) = build_self_eval_messages(SAMPLE, partial)
    assert msg["role"] == "user"
    content = msg["content"]
    assert content.startswith("You are an AI specialized in tool use.")
    assert "User: Weather in Paris and 5!?" in content and "Tool: [{" in content
    assert json.dumps(list(TOOLS)) in content  # "{braces}" in a description survive
    assert partial in content and f"{SELF_EVAL_YES} or {SELF_EVAL_NO}" in content
    text = render_self_eval_prompt(SAMPLE, tok, partial)
    assert text == f"<|user|>{content}<|end|><|assistant|>"
    assert "(empty)" in build_self_eval_messages(SAMPLE, "")[0]["content"]


def test_non_string_template_output_is_rejected():
    class Ids:
        def apply_chat_template(self, conversation, **kwargs):
            return [1, 2, 3]

    with pytest.raises(TypeError, match="returned list"):
        render_prompt(SAMPLE, Ids())


CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec("tokenizers") is None,
    reason="transformers / tokenizers not installed",
)
def test_real_hf_tokenizer_with_chatml_template():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]")),
        unk_token="[UNK]",
        chat_template=CHATML,
    )
    partial = "[math.factorial(n="
    text = render_prompt(SAMPLE, tok, partial)
    assert text.startswith("<|im_start|>system\nYou are an expert in composing functions.")
    assert text.endswith(
        "<|im_start|>user\nAnd the weather?<|im_end|>\n<|im_start|>assistant\n" + partial
    )
    assert "<|im_start|>tool\n" in text and json.dumps(list(TOOLS)) in text
    evaluation = render_self_eval_prompt(SAMPLE, tok, partial)
    assert evaluation.startswith("<|im_start|>user\nYou are an AI specialized in tool use.")
    assert evaluation.endswith("<|im_start|>assistant\n")
