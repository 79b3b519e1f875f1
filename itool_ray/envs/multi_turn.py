"""BFCL multi-turn tool use as a search environment: a step is one assistant message.

The sample is a :class:`~itool_ray.envs.bfcl_data.MultiTurnEntry` (BFCL's or a synthesized
one). A node's path is the assistant's messages so far, played by the same
:class:`~itool_ray.envs.dialogue.Dialogue` the benchmark's decoding loop uses, so the search
sees exactly the prompts the evaluation asks: user turns (BFCL's reveal message for a turn
that reveals withheld functions), calls parsed with the project's AST parser and executed on
the entry's world by name (never ``eval``), one tool message per call, a message without
calls ending the turn, BFCL's step limit force-quitting the entry.

* terminal: the dialogue is over (the last turn ended, or BFCL's force quit);
* O (``outcome="exact"``, the paper's) at a terminal is BFCL's verdict
  (:func:`~itool_ray.envs.bfcl_score.score_entry`): 1 or 0; before it, the fraction of user
  turns finished so far, counted only while every finished turn passes BFCL's checks (0 as
  soon as one fails).
* ``outcome="graded"`` (``mcts.outcome=graded``): 1 for a terminal BFCL accepts, otherwise
  ``scale`` times the share of turns done (:func:`~itool_ray.envs.bfcl_score.turn_progress`:
  turns passed, plus the gold calls matched by name and result in the first turn that is
  not), so a policy that never finishes an entry still ranks its siblings by the calls they
  got right, and no near miss ties with a right answer. The exact O of such a policy is 0
  everywhere, and its pairs are ordered by the self-evaluation alone.

States are never copied into the tree: a node's dialogue is rebuilt from its path (the
world replayed from the initial config, deterministic); an LRU of ``cache_worlds`` (path ->
dialogue) lets a child extend its parent's state by one message, so memory stays bounded
whatever the tree size (``cached`` reports it) and a replay is one step in the common case.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence

from itool_ray.envs.base import Prompt
from itool_ray.envs.bfcl_data import MultiTurnEntry
from itool_ray.envs.bfcl_exec import MAX_CALLS_PER_STEP
from itool_ray.envs.bfcl_score import MAX_STEPS_PER_TURN, score_entry, turn_progress
from itool_ray.envs.dialogue import Dialogue
from itool_ray.mcts.config import OUTCOMES
from itool_ray.mcts.rewards import GRADED_SCALE


class MultiTurnEnv:
    """BFCL multi-turn (module docstring)."""

    name = "bfcl-multi-turn"
    unit = "message"

    def __init__(
        self,
        cache_worlds: int = 64,
        max_steps_per_turn: int = MAX_STEPS_PER_TURN,
        max_calls: int = MAX_CALLS_PER_STEP,
        outcome: str = "exact",
        scale: float = GRADED_SCALE,
    ) -> None:
        if cache_worlds < 1:
            raise ValueError(f"cache_worlds must be >= 1, not {cache_worlds}")
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
        if not 0.0 <= scale < 1.0:
            raise ValueError(f"scale must be in [0, 1), not {scale!r}")
        self.outcome_mode, self.scale = outcome, float(scale)
        self.cache_worlds = cache_worlds
        self.max_steps_per_turn = max_steps_per_turn
        self.max_calls = max_calls
        self._memo: OrderedDict[tuple[str, tuple[str, ...]], Dialogue] = OrderedDict()

    @property
    def cached(self) -> int:
        """Dialogues (each with its world) held: the environment's memory, bounded."""
        return len(self._memo)

    def dialogue(self, entry: MultiTurnEntry, steps: Sequence[str]) -> Dialogue:
        """The conversation after the assistant's messages ``steps`` (do not change it)."""
        key = (entry.id, tuple(steps))
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
            return hit
        if not steps:
            d = Dialogue(entry, self.max_steps_per_turn, self.max_calls)
        else:
            d = self.dialogue(entry, steps[:-1]).copy()
            if not d.done:  # messages after the end change nothing
                d.advance(steps[-1])
        self._memo[key] = d
        while len(self._memo) > self.cache_worlds:
            self._memo.popitem(last=False)
        return d

    # ---- the protocol ------------------------------------------------------------------
    def prompt(self, entry: MultiTurnEntry, steps: Sequence[str]) -> Prompt:
        d = self.dialogue(entry, steps)
        turn = min(d.turn, max(entry.num_turns - 1, 0))
        return Prompt(tuple(d.messages), tuple(entry.functions_at(turn)), "")

    def terminal(self, entry: MultiTurnEntry, steps: Sequence[str], step_ended: bool) -> bool:
        return self.dialogue(entry, steps).done

    def outcome(self, entry: MultiTurnEntry, steps: Sequence[str], terminal: bool) -> float:
        d = self.dialogue(entry, steps)
        if self.outcome_mode == "graded":
            return self._graded(entry, d)
        if d.done:
            return 1.0 if score_entry(entry, [list(t) for t in d.outputs]).valid else 0.0
        if d.turn <= 0:
            return 0.0
        done = dataclasses.replace(entry, turns=entry.turns[: d.turn], gold=entry.gold[: d.turn])
        ok = score_entry(done, [list(t) for t in d.outputs[: d.turn]]).valid
        return d.turn / entry.num_turns if ok else 0.0

    def _graded(self, entry: MultiTurnEntry, d: Dialogue) -> float:
        outputs = [list(t) for t in d.outputs]
        if d.done and score_entry(entry, outputs).valid:
            return 1.0
        finished = len(outputs) if d.done else d.turn
        done = turn_progress(entry, outputs, finished)
        return self.scale * done / max(entry.num_turns, 1)
