"""Prompt rendering: the ToolACE system prompt, chat messages, and the self-evaluation prompt.

The tokenizer is duck-typed (:class:`ChatTokenizer`): anything with a Hugging Face style
``apply_chat_template(messages, tokenize=False, add_generation_prompt=True) -> str``; nothing
here imports ``transformers``.
"""

from __future__ import annotations

import contextlib
import json
import re
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

from itool_ray.data.sample import Message, Sample, Tool

# The system prompt of the ToolACE data release (data.json ``system`` field; the same wording
# as the ToolACE-8B model card), with ``{tools}`` standing for the JSON tool list. The seed
# text 001 (ToolACE abstract) does not quote it.
TOOLACE_SYSTEM_PROMPT = (
    "You are an expert in composing functions. You are given a question and a set of possible "
    "functions. \nBased on the question, you will need to make one or more function/tool calls "
    "to achieve the purpose. \nIf none of the function can be used, point it out. If the given "
    "question lacks the parameters required by the function,\nalso point it out. You should "
    "only return the function call in tools call sections.\n"
    "Here is a list of functions in JSON format that you can invoke:\n{tools}. \n"
    "Should you decide to return the function call(s). \n"
    "Put it in the format of [func1(params_name=params_value, params_name2=params_value2...), "
    "func2(params)]\n\nNO other text MUST be included. \n"
)

# Self-evaluation prompt (iTool eq. 7, "Eval Prompt" of its Table 5, after Xie et al. 2024).
# The paper's text is cut after its first sentence, which this keeps; the rest is ours. The
# confidence C(s) is the policy's probability of ``SELF_EVAL_YES`` as the first answer token,
# normalised over ``SELF_EVAL_CHOICES``.
SELF_EVAL_TEMPLATE = (
    "You are an AI specialized in tool use. Your task is to assess the potential veracity of a "
    "partial response that an assistant wrote to fulfil a request with function calls.\n\n"
    "Available functions (JSON):\n{tools}\n\n"
    "Conversation so far:\n{conversation}\n\n"
    "Is the partial response below correct so far: does every call use an available function "
    "that fits the request, with argument values that are right for it? Answer with a single "
    "word: Yes or No.\n\n"
    "Partial response of the assistant (it may be unfinished):\n{partial_response}"
)
"""The partial response comes last: every self-evaluation prompt of a tree shares all the
tokens before it, which the engine's prefix cache then computes once."""
SELF_EVAL_YES = "Yes"
SELF_EVAL_NO = "No"
SELF_EVAL_CHOICES: tuple[str, str] = (SELF_EVAL_YES, SELF_EVAL_NO)
_FIELD = re.compile(r"\{(tools|conversation|partial_response)\}")


class ChatTokenizer(Protocol):
    def apply_chat_template(
        self,
        conversation: list[Message],
        *,
        tokenize: bool = ...,
        add_generation_prompt: bool = ...,
        **kwargs: Any,
    ) -> Any: ...


def tools_json(tools: Sequence[Tool]) -> str:
    return json.dumps(list(tools), ensure_ascii=False)


def system_prompt(tools: Sequence[Tool], template: str = TOOLACE_SYSTEM_PROMPT) -> str:
    """The system prompt listing ``tools`` (``{tools}`` in ``template`` is replaced)."""
    return template.replace("{tools}", tools_json(tools))


def build_messages(sample: Sample, *, template: str = TOOLACE_SYSTEM_PROMPT) -> list[Message]:
    """System prompt (with the tools) followed by the conversation. System turns at the start
    of ``sample.messages`` (BFCL live, API-Bank dates) are appended to the system prompt."""
    system = system_prompt(sample.tools, template)
    turns = list(sample.messages)
    while turns and turns[0]["role"] == "system":
        system += "\n" + turns.pop(0)["content"]
    return [{"role": "system", "content": system}] + [dict(t) for t in turns]


def _chat(tokenizer: ChatTokenizer, messages: list[Message]) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}")
    return text


TOOL_OUTPUT_HEADER = "[Tool output: the results of your calls above, in order, not a user message]"
"""Heads the user turn that carries tool results for a template without a ``tool`` role."""


def merge_tool_messages(messages: Sequence[Message]) -> list[Message]:
    """``messages`` with each run of ``tool`` messages as one user message headed
    :data:`TOOL_OUTPUT_HEADER`, one ``<call> -> <result>`` line per tool message."""
    out: list[Message] = []
    in_tool_output = False
    for m in messages:
        if m["role"] != "tool":
            out.append(dict(m))
            in_tool_output = False
            continue
        line = f"{m.get('name', 'call')} -> {m['content']}"
        if in_tool_output:
            out[-1]["content"] += "\n" + line
        else:
            out.append({"role": "user", "content": TOOL_OUTPUT_HEADER + "\n" + line})
            in_tool_output = True
    return out


_PROBE = "ITOOLPROBE"
"""A marker no template writes itself: found in a rendering, it shows where content landed."""
_TOOL_ROLE: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def renders_tool_role(tokenizer: ChatTokenizer) -> bool:
    """Whether the chat template renders a ``tool`` message (with its content) after an
    assistant turn; read once per tokenizer."""
    with contextlib.suppress(KeyError, TypeError):
        return _TOOL_ROLE[tokenizer]
    probe = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "[f()]"},
        {"role": "tool", "name": "f()", "content": _PROBE},
    ]
    try:
        text = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        ok = isinstance(text, str) and _PROBE in text
    except Exception:  # templates that raise on an unknown role
        ok = False
    with contextlib.suppress(TypeError):  # not weak-referenceable: probe every time
        _TOOL_ROLE[tokenizer] = ok
    return ok


def render_prompt(
    sample: Sample,
    tokenizer: ChatTokenizer,
    partial_response: str = "",
    *,
    template: str = TOOLACE_SYSTEM_PROMPT,
) -> str:
    """The generation prompt for ``sample``, followed by ``partial_response`` (the response
    so far, continued as a partial assistant turn). Tool results (multi-turn) are ``tool``
    turns where the chat template renders that role (:func:`renders_tool_role`: ChatML and
    SmolLM2's do), else each run of them one user turn (:func:`merge_tool_messages`). The
    one rendering of a prompt: the search, SFT, DPO, perplexity and evaluation use it."""
    messages = build_messages(sample, template=template)
    if any(m["role"] == "tool" for m in messages) and not renders_tool_role(tokenizer):
        messages = merge_tool_messages(messages)
    return _chat(tokenizer, messages) + partial_response


def prompt_and_completion(
    sample: Sample, tokenizer: ChatTokenizer, *, template: str = TOOLACE_SYSTEM_PROMPT
) -> tuple[str, str]:
    """``(prompt, gold)`` for SFT / perplexity: ``prompt + gold`` is the full training text
    (append the tokenizer's end-of-turn token to the completion where the template has one)."""
    return render_prompt(sample, tokenizer, template=template), sample.gold


def _conversation_text(messages: Sequence[Message]) -> str:
    names = {"user": "User", "assistant": "Assistant", "tool": "Tool", "system": "System"}
    return "\n".join(f"{names.get(m['role'], m['role'].title())}: {m['content']}" for m in messages)


def build_self_eval_messages(
    sample: Sample, partial_response: str, *, template: str = SELF_EVAL_TEMPLATE
) -> list[Message]:
    """One user turn asking whether ``partial_response`` is correct so far (eq. 7)."""
    values = {
        "tools": tools_json(sample.tools),
        "conversation": _conversation_text(sample.messages),
        "partial_response": partial_response or "(empty)",
    }
    content = _FIELD.sub(lambda m: values[m.group(1)], template)  # one pass: no re-expansion
    return [{"role": "user", "content": content}]


def render_self_eval_prompt(
    sample: Sample,
    tokenizer: ChatTokenizer,
    partial_response: str,
    *,
    template: str = SELF_EVAL_TEMPLATE,
) -> str:
    """The self-evaluation prompt, ending with the generation prompt: the next token is the
    policy's verdict (:data:`SELF_EVAL_YES` / :data:`SELF_EVAL_NO`)."""
    return _chat(tokenizer, build_self_eval_messages(sample, partial_response, template=template))


def end_of_turn(tokenizer) -> str:
    """The token the chat template closes an assistant turn with (``<|im_end|>`` for
    ChatML, ``<|eot_id|>`` for Llama 3), read off the template; the tokenizer's EOS token
    when the template adds nothing recognisable."""
    eos = tokenizer.eos_token or ""
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}],
            tokenize=False,
        )
    except Exception:  # templates that refuse this conversation shape
        return eos
    at = text.rfind(_PROBE) if isinstance(text, str) else -1
    if at < 0:
        return eos
    m = re.match(r"\S+", text[at + len(_PROBE) :].lstrip(" "))
    if m is None:
        return eos
    token = m.group(0)
    return token if token in tokenizer.get_vocab() else eos
