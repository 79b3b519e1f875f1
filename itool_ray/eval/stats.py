"""Honest numbers for accuracies: Wilson 95% intervals and exact paired tests (pure).

Two models scored on the same records are compared record by record (McNemar's exact test:
of the records where they disagree, how many each got right; under "no difference" the
split is Binomial(b + c, 1/2)), never by their marginal accuracies alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95% by default); (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b records right only under A, c only under B."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Paired:
    """A on the left, B on the right, on the records both were scored on."""

    n: int
    a_correct: int
    b_correct: int
    only_a: int
    only_b: int
    p_value: float

    @property
    def difference(self) -> float:
        """Accuracy of B minus accuracy of A (points as a fraction)."""
        return (self.b_correct - self.a_correct) / self.n if self.n else 0.0

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "a_correct": self.a_correct,
            "b_correct": self.b_correct,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "difference": self.difference,
            "p_value": self.p_value,
        }


def paired(a: Mapping[str, bool], b: Mapping[str, bool]) -> Paired:
    """McNemar on the records present in both ``a`` and ``b`` (record id -> correct)."""
    common = [r for r in a if r in b]
    only_a = sum(a[r] and not b[r] for r in common)
    only_b = sum(b[r] and not a[r] for r in common)
    return Paired(
        n=len(common),
        a_correct=sum(bool(a[r]) for r in common),
        b_correct=sum(bool(b[r]) for r in common),
        only_a=only_a,
        only_b=only_b,
        p_value=mcnemar_exact(only_a, only_b),
    )
