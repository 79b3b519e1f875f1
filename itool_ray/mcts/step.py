"""A step (one edge of the tree) and the expansion bookkeeping: merging and priors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """One candidate next step produced by the policy.

    Attributes:
        text: the step's text: one complete tool call with its separator (``"f(x=1), "``,
            ``"[f(x=1), "``, ``"g(y=2)]"``) or one sentence of a plain-text answer.
        token_ids: the step's token ids under the policy's tokenizer.
        logprob: sum of the step's token log-probabilities under the policy.
        terminal: the step ends the response: closed call list (``]``), end of a plain-text
            answer (EOS), or cut at ``max_step_tokens`` (``finish_reason == "length"``). The
            tree also ends a path at ``max_depth`` / ``max_tokens``.
        finish_reason: the engine's reason for stopping the step (``"step"``, ``"stop"``,
            ``"length"``...), kept for diagnostics.
    """

    text: str
    token_ids: tuple[int, ...] = ()
    logprob: float = 0.0
    terminal: bool = False
    finish_reason: str = ""

    @property
    def mean_logprob(self) -> float:
        """Per-token log-probability (``logprob / len(token_ids)``; ``logprob`` if no tokens)."""
        n = len(self.token_ids)
        return self.logprob / n if n else self.logprob


def merge_steps(steps: Sequence[Step]) -> tuple[list[Step], list[float]]:
    """Merge identical steps and return them with their priors p(a|s), largest prior first.

    Prior normalisation (documented choice):

    1. Each sampled step gets the per-token-normalised probability
       ``m = exp(logprob / n_tokens)``, the geometric-mean token probability. Raw sequence
       probabilities ``exp(sum logprob)`` would crush long steps (a call with many arguments)
       by orders of magnitude against short ones; length normalisation keeps them comparable.
    2. Steps with the same ``text`` are one edge: the first occurrence is kept (its token ids,
       terminal flag) and the masses of all copies add up, so a step the policy sampled twice
       weighs twice.
    3. Priors are the masses normalised over the siblings: ``p_i = m_i / sum_j m_j``.

    A positive log-prob (invalid) is clamped to 0, a NaN raises ValueError, and if every mass
    underflows to 0 the priors are uniform.

    The result is sorted by decreasing prior (stable: equal priors keep sampling order), which
    is the tie-break order of selection. Returns ``([], [])`` for no steps.
    """
    index: dict[str, int] = {}
    kept: list[Step] = []
    mass: list[float] = []
    exp = math.exp
    for s in steps:
        n = len(s.token_ids)
        lp = s.logprob / n if n else s.logprob
        if not lp <= 0.0:  # also catches NaN
            if lp != lp:
                raise ValueError(f"merge_steps: NaN logprob for step {s.text!r}")
            lp = 0.0
        i = index.get(s.text)
        if i is None:
            index[s.text] = len(kept)
            kept.append(s)
            mass.append(exp(lp))
        else:
            mass[i] += exp(lp)
    if not kept:
        return [], []
    total = sum(mass)
    if not total > 0.0:  # every step had probability ~0: fall back to uniform
        mass = [1.0] * len(kept)
        total = float(len(kept))
    # stable sort by decreasing mass (reverse=True keeps the order of equal keys)
    order = sorted(range(len(kept)), key=mass.__getitem__, reverse=True)
    return [kept[i] for i in order], [mass[i] / total for i in order]
