"""The environment protocol: the one place that knows what a task is (pure).

The search (``itool_ray.mcts.core.SimulationCore``) takes an environment injected, the way
mctx takes its ``recurrent_fn``: a tree node is the list of step texts on its path; the
environment turns that path into what the policy sees next and into the outcome term O of the
reward. The replicas never learn what the task is: they receive a prompt and return steps.

    env.prompt(sample, steps)                 # Prompt: messages + tools + in-turn prefix
    env.terminal(sample, steps, step_ended)   # does the state after `steps` end the episode?
    env.outcome(sample, steps, terminal)      # O(s) in [0, 1]

``unit`` says what one step is, so the engine cuts its samples accordingly: ``"call"`` (one
tool call or one sentence inside a single assistant turn: the single-turn task) or
``"message"`` (one whole assistant message: a multi-turn task, whose calls the environment
executes and answers with tool messages).

A new environment is one module with a class implementing these four members plus an entry
in ``ENVIRONMENTS`` (``itool_ray.envs.registry``). An environment that offers more than one O
takes ``outcome`` (``mcts.outcome``: ``exact`` or ``graded``) and names it in
``outcome_mode``; the tree manager refuses one whose O is not the configured one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

STEP_UNITS = ("call", "message")


@dataclass(frozen=True)
class Prompt:
    """What the policy is asked to continue.

    Attributes:
        messages: the conversation before the assistant's current message (system turns at
            the start are merged into the tool-listing system prompt by the renderer).
        tools: the tools offered at this point.
        prefix: the assistant's current message so far (``"call"`` unit: the steps of this
            turn joined; ``"message"`` unit: empty, every step starts a message).
    """

    messages: tuple[dict[str, str], ...]
    tools: tuple[dict[str, Any], ...]
    prefix: str = ""


class Environment(Protocol):
    """A task the search can run (module docstring)."""

    name: str
    unit: str

    def prompt(self, sample: Any, steps: Sequence[str]) -> Prompt: ...

    def terminal(self, sample: Any, steps: Sequence[str], step_ended: bool) -> bool: ...

    def outcome(self, sample: Any, steps: Sequence[str], terminal: bool) -> float: ...
