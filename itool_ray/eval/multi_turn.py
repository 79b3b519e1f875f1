"""BFCL v3 multi-turn decoding: every entry's conversation advanced one assistant step at a
time, all pending prompts of a step sent to the responder in one call (pure: no Ray, vLLM
or torch; the policy is a passed-in :data:`ChatResponder`).

The loop (:func:`run_multi_turn`) follows BFCL's ``inference_multi_turn_prompting``
(``bfcl/model_handler/base_handler.py``), with the project's prompt and safe executor:

* **a user turn** appends the turn's user message(s). A turn that reveals withheld functions
  (``multi_turn_miss_func`` / ``composite``) has none: it gets BFCL's user message
  :data:`REVEAL_TEXT`, and from that turn the system prompt lists the revealed docs too
  (:meth:`~itool_ray.envs.MultiTurnEntry.functions_at`; BFCL's function-calling handlers
  do the same, its prompting handlers paste the docs into that user message instead).
* **a step** asks the policy for one assistant message given the conversation so far, with
  the ToolACE system prompt listing ``entry.functions_at(turn)`` (as the single-turn prompts,
  :func:`itool_ray.data.build_messages`). The message is decoded with
  :func:`~itool_ray.envs.decode_step` (the decoder :func:`~itool_ray.envs.score_entry` uses,
  so what is executed here is what is scored). Calls: executed on the entry's
  :class:`~itool_ray.envs.World` (parsed, never ``eval``'d), one tool message per call
  appended (:func:`tool_messages`), and the turn goes on. No call (text, ``[]`` or an
  unparsable output): the turn ends.
* **the step limit** is BFCL's: once a turn has executed more than ``max_steps``
  (:data:`~itool_ray.envs.MAX_STEPS_PER_TURN`) call steps, the entry is force-quit, its
  later turns left out (``count > MAXIMUM_STEP_LIMIT``; the scorer then says
  ``multi_turn:force_terminated`` unless it was the last turn). A turn thus costs at most
  ``max_steps + 1`` queries.
* **a prompt that does not fit** the context (the responder answers ``None``) ends the
  entry: the remaining turns get no answer (``stopped="context"``), so a turn that needed
  calls is wrong; never truncated silently.

Tool results go back as ``{"role": "tool", "name": <call>, "content": <result>}``
messages, one per call, in order, as BFCL's ``base_oss_handler`` adds them. Rendering
(:func:`render_chat_prompt`) keeps them as ``tool`` turns when the chat template renders
that role (:func:`renders_tool_role`: ChatML, SmolLM2's template, writes
``<|im_start|>tool``; Llama 3.1's writes them as ``ipython`` turns); a template that refuses
the role or drops the content gets each run of tool messages as one user turn headed
:data:`TOOL_OUTPUT_HEADER`, one ``<call> -> <result>`` line per call (BFCL's
DeepSeek handler also sends tool output in the user role).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from itool_ray.data.prompt import (
    TOOL_OUTPUT_HEADER,
    TOOLACE_SYSTEM_PROMPT,
    ChatTokenizer,
    build_messages,
    merge_tool_messages,
    render_prompt,
    renders_tool_role,
)
from itool_ray.data.sample import Message, Sample
from itool_ray.envs import (
    MAX_CALLS_PER_STEP,
    MAX_STEPS_PER_TURN,
    NO_CALL_TEXT,
    MultiTurnEntry,
    oracle_outputs,
)
from itool_ray.envs.dialogue import (  # the conversation rules, shared with the search
    REVEAL_TEXT,
    ChatPrompt,
    Dialogue,
    call_text,
    tool_messages,
    user_messages,
)

__all__ = [
    "REVEAL_TEXT",
    "TOOL_OUTPUT_HEADER",
    "ChatPrompt",
    "ChatResponder",
    "MultiTurnRun",
    "call_text",
    "chat_messages",
    "oracle_chat_responder",
    "render_chat_prompt",
    "renders_tool_role",
    "run_multi_turn",
    "tool_messages",
    "user_messages",
]

ChatResponder = Callable[[list[ChatPrompt]], Sequence[str | None]]
"""One greedy assistant message per prompt, in order; ``None`` where the prompt does not fit
the context. On the replicas: ``PolicyReplica.respond_messages``."""


@dataclass(frozen=True)
class MultiTurnRun:
    """One entry decoded.

    Attributes:
        entry_id: the entry.
        outputs: per user turn run, the assistant's messages in order (``None``: a prompt
            that did not fit); what :func:`~itool_ray.envs.score_entry` takes.
        stopped: ``None`` (every turn ran), ``"step_limit"`` (BFCL's force quit: the turns
            after it are absent) or ``"context"`` (a prompt did not fit: the turns after it
            are empty).
        queries: assistant messages asked for.
        calls: calls executed.
        call_steps: messages that were a call list (the others ended their turn).
        refused: calls answered by an execution error: an unknown function, arguments the
            function doc refuses, an exception in the method
            (:data:`~itool_ray.envs.ERROR_PREFIX`). A method's own error result (BFCL's
            ``{"error": ...}``, e.g. no such file) is not counted: the call was valid.
        unknown: of the refused calls, those naming no method of the entry's classes.
    """

    entry_id: str
    outputs: tuple[tuple[str | None, ...], ...]
    stopped: str | None = None
    queries: int = 0
    calls: int = 0
    call_steps: int = 0
    refused: int = 0
    unknown: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.entry_id,
            "outputs": [list(t) for t in self.outputs],
            "stopped": self.stopped,
            "queries": self.queries,
            "calls": self.calls,
            "call_steps": self.call_steps,
            "refused": self.refused,
            "unknown": self.unknown,
        }


# ---- messages ------------------------------------------------------------------------------


def chat_messages(
    prompt: ChatPrompt, *, tool_role: bool = True, template: str = TOOLACE_SYSTEM_PROMPT
) -> list[Message]:
    """The messages to render: the system prompt with the tools (as
    :func:`~itool_ray.data.build_messages`), then the conversation; without ``tool_role``
    each run of tool messages becomes one user message headed :data:`TOOL_OUTPUT_HEADER`."""
    messages = build_messages(_sample(prompt), template=template)
    return messages if tool_role else merge_tool_messages(messages)


def _sample(prompt: ChatPrompt) -> Sample:
    return Sample(id=prompt.entry_id, tools=prompt.tools, messages=prompt.messages, gold="")


def render_chat_prompt(
    prompt: ChatPrompt, tokenizer: ChatTokenizer, *, template: str = TOOLACE_SYSTEM_PROMPT
) -> str:
    """The generation prompt of ``prompt``: :func:`~itool_ray.data.render_prompt` of its
    messages and tools, the one rendering the search, SFT and DPO use too (tool results as
    ``tool`` turns where the template renders them, else as marked user turns)."""
    return render_prompt(_sample(prompt), tokenizer, template=template)


# ---- the decoding loop ---------------------------------------------------------------------


def _run_of(d: Dialogue) -> MultiTurnRun:
    outputs = tuple(tuple(t) for t in d.outputs)
    return MultiTurnRun(
        d.entry.id, outputs, d.stopped, d.queries, d.calls, d.call_steps, d.refused, d.unknown
    )


def run_multi_turn(
    entries: Sequence[MultiTurnEntry],
    respond: ChatResponder,
    *,
    max_steps: int = MAX_STEPS_PER_TURN,
    max_calls: int = MAX_CALLS_PER_STEP,
) -> list[MultiTurnRun]:
    """Decode every entry (module docstring), in lockstep: each round asks ``respond`` once
    for the next message of every entry still running. Returns one run per entry, in order.

    Terminates for any responder: an entry takes at most ``num_turns * (max_steps + 1)``
    queries. Any text is a valid answer (never an exception); a responder that returns
    another number of answers than prompts, or a non-string, raises.
    """
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, not {max_steps}")
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise ValueError("run_multi_turn: entry ids must be distinct")
    dialogues = [Dialogue(e, max_steps, max_calls) for e in entries]
    while active := [d for d in dialogues if not d.done]:
        prompts = [d.prompt() for d in active]
        texts = list(respond(prompts))
        if len(texts) != len(prompts):
            raise RuntimeError(f"responder returned {len(texts)} answers for {len(prompts)}")
        for d, text in zip(active, texts, strict=True):
            d.advance(text)
    return [_run_of(d) for d in dialogues]


# ---- scripted responders -------------------------------------------------------------------


def oracle_chat_responder(entries: Sequence[MultiTurnEntry]) -> ChatResponder:
    """Answers every entry with its gold, no engine: a turn's first step is the turn's
    :func:`~itool_ray.envs.oracle_outputs` message (the gold calls, or
    :data:`~itool_ray.envs.NO_CALL_TEXT` for a turn without gold calls), every later step
    :data:`~itool_ray.envs.NO_CALL_TEXT`, which ends the turn."""
    gold: Mapping[str, list[list[str]]] = {e.id: oracle_outputs(e) for e in entries}

    def respond(prompts: list[ChatPrompt]) -> list[str | None]:
        return [gold[p.entry_id][p.turn][0] if p.step == 0 else NO_CALL_TEXT for p in prompts]

    return respond
