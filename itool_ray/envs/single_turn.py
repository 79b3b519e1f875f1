"""Single-turn tool calls: one assistant turn of calls (or sentences), judged against gold.

A step is one tool call with its separator or one sentence (``unit = "call"``); the state is
the partial response (the steps joined); the episode ends when the engine ends the response
(closed call list, end of text) or the tree's depth / token limits do; O is the call
checker's (``itool_ray.mcts.rewards.CallsOutcome``: 1/0 at the end, partial credit before;
``GradedCallsOutcome`` with ``outcome="graded"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from itool_ray.envs.base import Prompt


class SingleTurnCalls:
    """The single-turn task (module docstring). ``use_tools`` is passed to the checker;
    ``outcome`` (``mcts.outcome``) picks it: ``exact`` or ``graded``."""

    name = "calls"
    unit = "call"

    def __init__(self, use_tools: bool = True, outcome: str = "exact") -> None:
        from itool_ray.mcts.rewards import calls_outcome_named

        self._outcome = calls_outcome_named(outcome, use_tools)
        self.outcome_mode = outcome

    def prompt(self, sample: Any, steps: Sequence[str]) -> Prompt:
        return Prompt(tuple(sample.messages), tuple(sample.tools), "".join(steps))

    def terminal(self, sample: Any, steps: Sequence[str], step_ended: bool) -> bool:
        return step_ended

    def outcome(self, sample: Any, steps: Sequence[str], terminal: bool) -> float:
        return self._outcome(sample, "".join(steps), terminal)
