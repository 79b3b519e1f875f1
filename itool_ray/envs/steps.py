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

import math
from collections.abc import Mapping, Sequence

from itool_ray.data.difficulty import DifficultyBuckets, third_sizes
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


def entry_difficulty(entry: MultiTurnEntry) -> tuple[int, int, int]:
    """Sort key, easiest first: gold calls over all turns, turns, functions offered."""
    return (sum(len(t) for t in entry.gold), entry.num_turns, len(entry.functions))


def warmup_buckets(
    entries: Sequence[MultiTurnEntry], env: MultiTurnEnv | None = None
) -> DifficultyBuckets:
    """Easy-to-hard warm-up data of multi-turn entries: the entries cut into thirds by
    :func:`entry_difficulty` (ties by id), each bucket the :func:`step_samples` of its entries
    in that order, an entry's steps kept together (its later steps need its earlier ones)."""
    env = env or MultiTurnEnv()
    ordered = sorted(entries, key=lambda e: (entry_difficulty(e), e.id))
    a, b, _ = third_sizes(len(ordered))
    parts = (ordered[:a], ordered[a : a + b], ordered[a + b :])
    steps = [tuple(s for e in part for s in step_samples(e, env)) for part in parts]
    return DifficultyBuckets(*steps, rule="multi_turn_gold_calls")


def entry_perplexities(
    entries: Sequence[MultiTurnEntry], step_ppl: Mapping[str, float]
) -> dict[str, float]:
    """An entry's perplexity from its step samples' (ids ``<entry>#<i>``): their geometric
    mean, over the steps that were scored (finite); ``inf`` when none was."""
    logs: dict[str, list[float]] = {e.id: [] for e in entries}
    for sid, h in step_ppl.items():
        eid = sid.rsplit("#", 1)[0]
        if eid in logs and math.isfinite(h) and h > 0:
            logs[eid].append(math.log(h))
    return {eid: math.exp(sum(v) / len(v)) if v else math.inf for eid, v in logs.items()}
