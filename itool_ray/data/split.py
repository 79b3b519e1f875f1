"""Deterministic warm-up / reinforcement split (90 / 10 by default).

Every sample gets the key ``sha256(f"{seed}:{id}")``; the ``round(n * reinforce_fraction)``
samples with the smallest keys form the reinforcement set, the rest the warm-up set. The
sizes are exact, the membership depends only on (seed, ids) -- not on the input order -- and
each part keeps the input order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from itool_ray.data.sample import Sample


@dataclass(frozen=True)
class Split:
    """``warmup`` (SFT) and ``reinforce`` (MCTS + DPO) samples, each in input order."""

    warmup: tuple[Sample, ...]
    reinforce: tuple[Sample, ...]
    reinforce_fraction: float
    seed: int

    @property
    def sizes(self) -> dict[str, int]:
        return {"warmup": len(self.warmup), "reinforce": len(self.reinforce)}

    def summary(self) -> str:
        n = len(self.warmup) + len(self.reinforce)
        return (
            f"split seed={self.seed}: {n} samples -> warm-up {len(self.warmup)}, "
            f"reinforce {len(self.reinforce)} (fraction {self.reinforce_fraction:g})"
        )


def split_key(sample_id: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()


def split_warmup_reinforce(
    samples: Sequence[Sample], *, reinforce_fraction: float = 0.1, seed: int = 0
) -> Split:
    """Split ``samples`` (see the module docstring). Duplicate ids tie on the key and are
    ordered by position, so give samples unique ids."""
    if not 0.0 <= reinforce_fraction <= 1.0:
        raise ValueError(f"reinforce_fraction must be in [0, 1], got {reinforce_fraction}")
    n_reinforce = round(len(samples) * reinforce_fraction)
    order = sorted(range(len(samples)), key=lambda i: (split_key(samples[i].id, seed), i))
    chosen = set(order[:n_reinforce])
    return Split(
        warmup=tuple(s for i, s in enumerate(samples) if i not in chosen),
        reinforce=tuple(s for i, s in enumerate(samples) if i in chosen),
        reinforce_fraction=reinforce_fraction,
        seed=seed,
    )
