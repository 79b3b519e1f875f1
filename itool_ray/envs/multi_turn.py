"""BFCL multi-turn tool use as a search environment: a step is one assistant message.

The sample is a :class:`~itool_ray.envs.bfcl_data.MultiTurnEntry` (BFCL's or a synthesized
one). A node's path is the assistant's messages so far; the environment replays it:

* the conversation starts with user turn 0; each message that decodes to calls is executed on
  the entry's world (:class:`~itool_ray.envs.bfcl_exec.World`, the safe executor: parsed with
  the project's AST parser, dispatched by name, never ``eval``) and answered with one tool
  message per call (its result); a message with no call (text, ``[]`` or a text that does not
  parse) ends the user turn and the next user turn follows; at most
  :data:`~itool_ray.envs.bfcl_score.MAX_STEPS_PER_TURN` messages per turn (BFCL's limit: the
  turn is then forced to end);
* the episode is terminal after the last user turn ends;
* the tools offered at a turn are ``entry.functions_at(turn)`` (miss_func reveals withheld
  functions at their turn);
* O at a terminal is BFCL's verdict (:func:`~itool_ray.envs.bfcl_score.score_entry`): 1 or 0;
  before it, the fraction of the user turns finished so far, counted only while every
  finished turn passes BFCL's checks (0 as soon as one fails).

States are never copied into the tree: the world of a path is rebuilt by replaying its calls
from the initial config (deterministic); an LRU of ``cache_worlds`` (path -> world) lets a
child's state extend its parent's by one message, so memory stays bounded whatever the tree
size (``cached`` reports it) and a replay costs one step in the common case.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from itool_ray.envs.base import Prompt
from itool_ray.envs.bfcl_data import MultiTurnEntry
from itool_ray.envs.bfcl_exec import World
from itool_ray.envs.bfcl_score import MAX_STEPS_PER_TURN, decode_step, score_entry


@dataclass(frozen=True)
class Episode:
    """A path replayed: the conversation, the user turn it is in, the messages per turn."""

    messages: tuple[dict[str, str], ...]
    turn: int  # the user turn the next message belongs to (== num_turns: finished)
    outputs: tuple[tuple[str, ...], ...]  # the assistant's messages per finished/current turn


class MultiTurnEnv:
    """BFCL multi-turn (module docstring)."""

    name = "bfcl-multi-turn"
    unit = "message"

    def __init__(self, cache_worlds: int = 64, max_steps_per_turn: int = MAX_STEPS_PER_TURN):
        if cache_worlds < 1:
            raise ValueError(f"cache_worlds must be >= 1, not {cache_worlds}")
        self.cache_worlds = cache_worlds
        self.max_steps_per_turn = max_steps_per_turn
        # (entry id, steps) -> (episode, world after its calls): a path extends its parent's
        self._memo: OrderedDict[tuple[str, tuple[str, ...]], tuple[Episode, World]] = OrderedDict()

    @property
    def cached(self) -> int:
        """Worlds held (bounded by ``cache_worlds``): the environment's memory, reported."""
        return len(self._memo)

    # ---- replay ------------------------------------------------------------------------
    def episode(self, entry: MultiTurnEntry, steps: Sequence[str]) -> Episode:
        """The conversation after the assistant's messages ``steps``."""
        return self._state(entry, tuple(steps))[0]

    def _state(self, entry: MultiTurnEntry, steps: tuple[str, ...]) -> tuple[Episode, World]:
        key = (entry.id, steps)
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
            return hit
        if not steps:
            first = tuple(dict(m) for m in entry.turns[0]) if entry.turns else ()
            out = (Episode(first, 0, ((),)), World.from_entry(entry))
        else:
            parent, world = self._state(entry, steps[:-1])
            out = self._step(entry, parent, world.copy(), steps[-1])
        self._memo[key] = out
        while len(self._memo) > self.cache_worlds:
            self._memo.popitem(last=False)
        return out

    def _step(self, entry: MultiTurnEntry, ep: Episode, world: World, text: str):
        if ep.turn >= entry.num_turns:
            return ep, world  # steps after the end change nothing
        messages = [*ep.messages, {"role": "assistant", "content": text}]
        outputs = [list(o) for o in ep.outputs]
        outputs[-1].append(text)
        calls, _ = decode_step(text)
        if calls:
            messages.extend({"role": "tool", "content": r} for r in world.execute(calls))
        turn = ep.turn
        if not calls or len(outputs[-1]) >= self.max_steps_per_turn:
            turn += 1
            if turn < entry.num_turns:
                messages.extend(dict(m) for m in entry.turns[turn])
                outputs.append([])
        return Episode(tuple(messages), turn, tuple(tuple(o) for o in outputs)), world

    # ---- the protocol ------------------------------------------------------------------
    def prompt(self, entry: MultiTurnEntry, steps: Sequence[str]) -> Prompt:
        ep = self.episode(entry, steps)
        turn = min(ep.turn, max(entry.num_turns - 1, 0))
        return Prompt(ep.messages, tuple(entry.functions_at(turn)), "")

    def terminal(self, entry: MultiTurnEntry, steps: Sequence[str], step_ended: bool) -> bool:
        return self.episode(entry, steps).turn >= entry.num_turns

    def outcome(self, entry: MultiTurnEntry, steps: Sequence[str], terminal: bool) -> float:
        ep = self.episode(entry, steps)
        if ep.turn >= entry.num_turns:
            return 1.0 if score_entry(entry, list(ep.outputs)[: entry.num_turns]).valid else 0.0
        if ep.turn == 0:
            return 0.0
        done = dataclasses.replace(entry, turns=entry.turns[: ep.turn], gold=entry.gold[: ep.turn])
        ok = score_entry(done, list(ep.outputs[: ep.turn])).valid
        return ep.turn / entry.num_turns if ok else 0.0
