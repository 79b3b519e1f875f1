"""A deterministic, zero-latency fake engine and fake samples, for tests and benchmarks.

``FakeEngine`` answers every ``ExpandRequest`` with ``k`` steps that look like ToolACE calls
(``[f(x=1), `` at the start, ``g(y=2), `` in the middle, ``h(x=0)]`` closing the list, or a
plain-text answer), drawn from a small pool so duplicates are common (exercising merging). The
draw depends only on ``request.seed`` (itself a function of the search seed, the tree id and
the path text) and the engine's own seed, never on call order. Token ids and log-probs are
fixed per pool entry. ``evaluate`` returns a confidence hashed from the response text.
``fake_outcome`` scores a response against the sample's gold call list with partial credit.
"""

from __future__ import annotations

import functools
import random
import zlib
from collections.abc import Sequence

from itool_ray.data.sample import Sample
from itool_ray.mcts.search import EvalRequest, ExpandRequest
from itool_ray.mcts.step import Step

CALLS = tuple(
    f"{fn}({arg}={v})" for fn, arg in (("f", "x"), ("g", "y"), ("h", "x")) for v in range(3)
)
TEXT_ANSWER = "None of the tools can answer this."
_M64 = (1 << 64) - 1


def splitmix64(z: int) -> int:
    """One step of SplitMix64 (Steele et al. 2014): a cheap, well-mixed 64-bit hash."""
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class FakeEngine:
    """Deterministic fake policy: ``expand`` and ``evaluate`` of the ``Engine`` protocol.

    Args:
        seed: fixes the pool's token ids and log-probs and salts every draw.
        p_close: probability that a step closes the call list (terminal).
        p_text: probability that a first step is a plain-text answer (terminal).
        fail_every: if > 0, every ``fail_every``-th expand request fails (returns None),
            simulating a dead replica.
    """

    def __init__(
        self, seed: int = 0, p_close: float = 0.3, p_text: float = 0.05, fail_every: int = 0
    ) -> None:
        rng = random.Random(seed)
        self.seed = seed
        self._salt = splitmix64(seed & _M64)
        self._close = int(p_close * 256)
        self._text = int(p_text * 256)
        self.fail_every = fail_every
        self._n_expand = 0

        def make(text: str, terminal: bool) -> Step:
            n = rng.randint(2, 7)
            ids = tuple(rng.randrange(1000, 150_000) for _ in range(n))
            lp = -sum(rng.uniform(0.01, 1.5) for _ in range(n))
            return Step(text, ids, lp, terminal, "stop" if terminal else "step")

        # pool[first][close][variant]
        self._pool = [
            [
                [make(("[" if first else "") + c + ("]" if close else ", "), close) for c in CALLS]
                for close in (False, True)
            ]
            for first in (False, True)
        ]
        self._answer = make(TEXT_ANSWER, True)

    def expand(self, requests: Sequence[ExpandRequest]) -> list[list[Step] | None]:
        pool, nv, close, text = self._pool, len(CALLS), self._close, self._text
        out: list[list[Step] | None] = []
        for req in requests:
            self._n_expand += 1
            if self.fail_every and self._n_expand % self.fail_every == 0:
                out.append(None)
                continue
            first = not req.prefix
            table = pool[first]
            z = splitmix64(req.seed ^ self._salt)
            steps = []
            for i in range(req.k):
                if i and not i & 3:
                    z = splitmix64(z)
                b = (z >> ((i & 3) << 4)) & 0xFFFF
                if first and (b >> 8) < text:
                    steps.append(self._answer)
                else:
                    steps.append(table[(b & 0xFF) < close][(b >> 8) % nv])
            out.append(steps)
        return out

    def evaluate(self, requests: Sequence[EvalRequest]) -> list[float]:
        salt = self._salt & 0xFFFFFFFF
        return [zlib.crc32(r.response.encode(), salt) % 1001 / 1000.0 for r in requests]


@functools.lru_cache(maxsize=4096)
def gold_steps(gold: str) -> tuple[str, ...]:
    """Split a fake gold call list ``[f(x=1), g(y=2)]`` into its step texts."""
    parts = gold.split(", ")
    return tuple([p + ", " for p in parts[:-1]] + [parts[-1]])


def fake_outcome(sample: Sample, response: str, terminal: bool) -> float:
    """O(s) for fake samples: 1 for the exact gold at the end, 0 for any other end, and
    ``0.5 * matched / len(gold)`` before the end (matched = leading gold steps reproduced)."""
    if terminal:
        return 1.0 if response == sample.gold else 0.0
    matched = 0
    pos = 0
    steps = gold_steps(sample.gold)
    for s in steps:
        if not response.startswith(s, pos):
            break
        matched += 1
        pos += len(s)
    return 0.5 * matched / len(steps)


def make_fake_samples(n: int, seed: int = 0) -> list[Sample]:
    """``n`` samples whose gold is a list of 1-3 calls drawn from the fake pool's calls."""
    rng = random.Random(seed)
    tools = tuple(
        {
            "name": fn,
            "description": f"fake tool {fn}",
            "parameters": {
                "type": "dict",
                "properties": {arg: {"type": "integer"}},
                "required": [arg],
            },
        }
        for fn, arg in (("f", "x"), ("g", "y"), ("h", "x"))
    )
    out = []
    for i in range(n):
        calls = [rng.choice(CALLS) for _ in range(rng.randint(1, 3))]
        gold = "[" + ", ".join(calls) + "]"
        messages = ({"role": "user", "content": f"fake task {i}: do {gold}"},)
        out.append(Sample(f"fake-{i}", tools, messages, gold, source="fake"))
    return out
