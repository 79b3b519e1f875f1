"""Multi-turn entries as per-step training samples (pure).

The gold path of an entry is, per user turn, its gold calls as one assistant message (the
oracle's message) followed by a closing text message that ends the turn (:data:`TURN_CLOSE`),
or the oracle's refusal text for a turn without gold calls. Replayed through the multi-turn
environment, each message of the path becomes one single-turn ``Sample``: the conversation
before it (earlier turns, executed calls' tool results) as messages, the tools visible at its
turn, the message as gold. Warm-up SFT and perplexity then treat a multi-turn task like any
other data; the search runs it as an environment.
"""

from __future__ import annotations

from itool_ray.data.sample import Sample
from itool_ray.envs.bfcl_data import MultiTurnEntry
from itool_ray.envs.bfcl_score import NO_CALL_TEXT, oracle_outputs
from itool_ray.envs.multi_turn import MultiTurnEnv

TURN_CLOSE = "Done."
"""The assistant's message that ends a turn after its calls ran (a message without calls)."""


def gold_path(entry: MultiTurnEntry) -> list[str]:
    """The assistant's messages of the gold answer, in order (module docstring)."""
    path: list[str] = []
    for turn in oracle_outputs(entry):
        path.extend(turn)
        if turn != [NO_CALL_TEXT]:
            path.append(TURN_CLOSE)
    return path


def step_samples(entry: MultiTurnEntry, env: MultiTurnEnv | None = None) -> list[Sample]:
    """One ``Sample`` per message of the gold path (module docstring); ids ``<entry>#<i>``."""
    env = env or MultiTurnEnv()
    path = gold_path(entry)
    out = []
    for i, text in enumerate(path):
        prompt = env.prompt(entry, path[:i])
        out.append(
            Sample(
                id=f"{entry.id}#{i}",
                tools=tuple(dict(t) for t in prompt.tools),
                messages=tuple(dict(m) for m in prompt.messages),
                gold=text,
            )
        )
    return out
