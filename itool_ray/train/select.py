"""Hard-sample selection for the replay buffer (iTool section 4.3, eq. 4).

Each reinforcement sample's complexity is the perplexity h = P(y | q, T) ** (-1/n) of its gold
response under the current policy (computed by the vLLM replicas, or by
:func:`itool_ray.train.hf_perplexity` as a fallback). The top ``alpha`` fraction by h (the
hardest; the paper finds alpha = 20% best) is searched this iteration.

Pure Python: no torch, ray or vllm import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from itool_ray.data import Sample

_EPS = 1e-9


def keep_count(n: int, alpha: float) -> int:
    """How many of ``n`` samples the top-``alpha`` cut keeps: floor(alpha * n) (a float
    product such as 0.29 * 100 = 28.999... counts as 29), at least 1 when n > 0."""
    if n <= 0:
        return 0
    return min(n, max(1, math.floor(alpha * n + _EPS)))


@dataclass(frozen=True)
class Selection:
    """The hard samples chosen for one iteration, and every perplexity seen.

    Attributes:
        chosen: the kept samples, hardest first (perplexity descending, then id ascending).
        perplexities: sample id -> perplexity, for every candidate (kept or not).
        alpha: the fraction asked for.
        threshold: the lowest perplexity kept (None when nothing was kept).
    """

    chosen: tuple[Sample, ...]
    perplexities: dict[str, float] = field(default_factory=dict)
    alpha: float = 0.2
    threshold: float | None = None

    @property
    def chosen_ids(self) -> list[str]:
        return [s.id for s in self.chosen]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (non-finite perplexities become strings "inf" / "nan")."""

        def num(x: float) -> float | str:
            return x if math.isfinite(x) else str(x)

        return {
            "alpha": self.alpha,
            "n": len(self.perplexities),
            "k": len(self.chosen),
            "threshold": None if self.threshold is None else num(self.threshold),
            "chosen_ids": self.chosen_ids,
            "perplexities": {k: num(v) for k, v in self.perplexities.items()},
        }


def select_hard(
    samples: Sequence[Sample],
    perplexities: Sequence[float] | Mapping[str, float],
    alpha: float = 0.2,
) -> Selection:
    """Keep the top ``alpha`` fraction of ``samples`` by perplexity (see :func:`keep_count`).

    Args:
        samples: candidates, with unique ids.
        perplexities: one per sample, in the same order, or a mapping sample id -> value.
            ``inf`` (nothing scored) counts as hardest; NaN is an error.
        alpha: fraction in (0, 1].

    Ties are broken by sample id (ascending), so the result does not depend on input order.
    """
    if not (0.0 < alpha <= 1.0):
        raise ValueError(f"select_hard: alpha must be in (0, 1], got {alpha!r}")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"select_hard: duplicate sample ids {dup[:5]}")
    if isinstance(perplexities, Mapping):
        missing = [i for i in ids if i not in perplexities]
        if missing:
            raise ValueError(f"select_hard: no perplexity for samples {missing[:5]}")
        values = [float(perplexities[i]) for i in ids]
    else:
        values = [float(v) for v in perplexities]
        if len(values) != len(samples):
            raise ValueError(f"select_hard: {len(samples)} samples but {len(values)} perplexities")
    for i, v in zip(ids, values, strict=True):
        if math.isnan(v):
            raise ValueError(f"select_hard: perplexity of sample {i!r} is NaN")
    order = sorted(range(len(samples)), key=lambda j: (-values[j], ids[j]))
    k = keep_count(len(samples), alpha)
    kept = order[:k]
    return Selection(
        chosen=tuple(samples[j] for j in kept),
        perplexities=dict(zip(ids, values, strict=True)),
        alpha=alpha,
        threshold=values[kept[-1]] if kept else None,
    )
