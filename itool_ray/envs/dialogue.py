"""One BFCL multi-turn conversation as it is played (pure): the user turns, the assistant's
messages, their calls executed on the entry's world and answered by tool messages.

Shared by the evaluation loop (``itool_ray.eval.multi_turn.run_multi_turn``, whose module
docstring states the rules, BFCL's) and the search environment
(``itool_ray.envs.multi_turn.MultiTurnEnv``), so the search trains on exactly the prompts
the benchmark asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from itool_ray.calls import Call, render_call
from itool_ray.data.sample import Message, Tool
from itool_ray.envs.bfcl_data import MultiTurnEntry
from itool_ray.envs.bfcl_exec import ERROR_PREFIX, World
from itool_ray.envs.bfcl_score import decode_step

REVEAL_TEXT = "I have updated some more functions you can choose from. What about now?"
"""BFCL's ``DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC``: the user message of a turn
that reveals withheld functions (the system prompt lists them from that turn)."""


@dataclass(frozen=True)
class ChatPrompt:
    """One assistant message to generate: the conversation so far and the tools shown.

    Attributes:
        messages: the turns after the system prompt (``user``, ``assistant`` and ``tool``
            messages, plain dicts); the system prompt is rendered from ``tools``.
        tools: the function docs the system prompt lists.
        entry_id, turn, step: who asks (the entry, its user turn and the step within it,
            0-based); not rendered, for logs and scripted responders.
    """

    messages: tuple[Message, ...]
    tools: tuple[Tool, ...]
    entry_id: str = ""
    turn: int = 0
    step: int = 0


def call_text(call: Call) -> str:
    """``name(a=1)``: the call as its tool message names it (BFCL: the decoded call)."""
    try:
        return render_call(call)
    except (ValueError, TypeError):
        return call.name


def tool_messages(calls: Sequence[Call], results: Sequence[str]) -> list[Message]:
    """One ``tool`` message per executed call, in order."""
    return [
        {"role": "tool", "name": call_text(c), "content": r}
        for c, r in zip(calls, results, strict=True)
    ]


def user_messages(entry: MultiTurnEntry, turn: int) -> list[Message]:
    """The user message(s) opening ``turn`` (:data:`REVEAL_TEXT` for a revealing turn)."""
    if not entry.turns[turn] and turn in entry.missed_functions:
        return [{"role": "user", "content": REVEAL_TEXT}]
    return [dict(m) for m in entry.turns[turn]]


class Dialogue:
    """One entry's conversation, world and outputs while it is decoded (the rules: the
    module docstring of ``itool_ray.eval.multi_turn``): ``prompt()`` is what the policy is
    asked next, ``advance(text)`` applies its answer, ``done`` says the entry ended.
    ``copy()`` forks it (the search extends a parent's state by one message)."""

    def __init__(self, entry: MultiTurnEntry, max_steps: int, max_calls: int) -> None:
        self.entry, self.max_steps, self.max_calls = entry, max_steps, max_calls
        self.world = World.from_entry(entry)
        self.messages: list[Message] = []
        self.outputs: list[list[str | None]] = []
        self.turn, self.step, self.queries, self.calls = -1, 0, 0, 0
        self.call_steps = 0  # messages that decoded to a call list (executed)
        self.refused = 0  # calls whose tool result is an execution error (ERROR_PREFIX)
        self.unknown = 0  # of those, calls naming no method of the loaded classes
        self.stopped: str | None = None
        self.done = False
        self._next_turn()

    def copy(self) -> Dialogue:
        twin = object.__new__(Dialogue)
        twin.__dict__.update(self.__dict__)
        twin.world = self.world.copy()
        twin.messages = list(self.messages)
        twin.outputs = [list(t) for t in self.outputs]
        return twin

    def _next_turn(self) -> None:
        self.turn += 1
        self.step = 0
        if self.turn >= self.entry.num_turns:
            self.done = True
            return
        self.outputs.append([])
        self.messages.extend(user_messages(self.entry, self.turn))

    def prompt(self) -> ChatPrompt:
        return ChatPrompt(
            tuple(self.messages),
            self.entry.functions_at(self.turn),
            self.entry.id,
            self.turn,
            self.step,
        )

    def advance(self, text: str | None) -> None:
        if text is not None and not isinstance(text, str):
            raise TypeError(f"responder answered {type(text).__name__} for {self.entry.id}")
        self.queries += 1
        self.outputs[self.turn].append(text)
        if text is None:  # the prompt did not fit: nothing later fits either
            self.outputs.extend([] for _ in range(self.turn + 1, self.entry.num_turns))
            self.stopped, self.done = "context", True
            return
        self.messages.append({"role": "assistant", "content": text})
        calls, _ = decode_step(text)
        if calls is None:
            self._next_turn()
            return
        results = self.world.execute(calls, max_calls=self.max_calls)
        self.messages.extend(tool_messages(calls, results))
        self.calls += len(calls)
        self.call_steps += 1
        self.refused += sum(r.startswith(ERROR_PREFIX) for r in results)
        self.unknown += sum(self.world.spec(c.name) is None for c in calls)
        self.step += 1
        if self.step > self.max_steps:  # BFCL: count > MAXIMUM_STEP_LIMIT, force quit
            self.stopped, self.done = "step_limit", True
