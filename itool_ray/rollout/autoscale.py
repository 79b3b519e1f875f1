"""When the tree manager adds or removes policy replicas (pure: no Ray here).

The manager knows what the Ray autoscaler cannot see: how many trees wait because every
replica's queue is full. :class:`ScalePolicy` turns that into replica actors to start (each
asks for a custom resource such as ``rollout_slot``, so the Ray autoscaler adds a node for
it) and idle replicas to stop (their node then goes idle and the autoscaler removes it).

Rules, checked once per manager turn:

* **Up**: trees have waited for a free replica for ``up_after_s`` without a break, and no
  replica is starting: start ``ceil(waiting_leaves / max_batch)`` replicas (at least one),
  never beyond ``max_replicas`` counting those starting. One wave at a time, because a
  replica's start (node, engine, weights) takes long and its capacity is not known before.
* **Down**: a replica this manager started that has had no request for ``idle_s`` is
  stopped, while more than ``min_replicas`` serve; at the end of a rollout all of them are.
  Replicas handed to the manager at start (the pool's minimum) are never stopped by it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class AutoscaleSettings:
    """Bounds and delays of replica autoscaling (see the module docstring)."""

    min_replicas: int = 1
    max_replicas: int = 1
    up_after_s: float = 2.0
    idle_s: float = 30.0
    start_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise ValueError(
                "AutoscaleSettings: need 0 <= min_replicas <= max_replicas and max_replicas >= 1 "
                f"(got min {self.min_replicas}, max {self.max_replicas})"
            )
        if self.up_after_s < 0 or self.idle_s < 0 or self.start_timeout_s <= 0:
            raise ValueError("AutoscaleSettings: delays must be >= 0 (start_timeout_s > 0)")


@dataclass(frozen=True)
class ScaleDecision:
    add: int = 0
    retire: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.retire)


class ScalePolicy:
    """Stateful rule book: remembers since when trees have been waiting."""

    def __init__(self, settings: AutoscaleSettings, max_batch: int) -> None:
        self.settings = settings
        self.max_batch = max(1, max_batch)
        self._waiting_since: float | None = None

    def decide(
        self,
        now: float,
        *,
        waiting_leaves: int,
        serving: int,
        starting: int,
        idle_since: Mapping[int, float],
    ) -> ScaleDecision:
        """``waiting_leaves``: leaves that could be expanded now but found every queue full;
        ``serving``/``starting``: replicas answering / being started; ``idle_since``: for
        each replica this manager started that is serving with nothing in flight, since when.
        """
        s = self.settings
        if waiting_leaves > 0:
            if self._waiting_since is None:
                self._waiting_since = now
        else:
            self._waiting_since = None
        add = 0
        total = serving + starting
        if (
            self._waiting_since is not None
            and now - self._waiting_since >= s.up_after_s
            and starting == 0
            and total < s.max_replicas
        ):
            add = min(s.max_replicas - total, max(1, math.ceil(waiting_leaves / self.max_batch)))
            self._waiting_since = None  # the next wave waits for this one to serve
        retire: list[int] = []
        if waiting_leaves == 0:
            spare = serving - max(s.min_replicas, 1)
            for i, since in sorted(idle_since.items(), key=lambda kv: kv[1]):
                if len(retire) >= spare:
                    break
                if now - since >= s.idle_s:
                    retire.append(i)
        return ScaleDecision(add, tuple(retire))
