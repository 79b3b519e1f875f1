"""Token rows that are prefixes of other rows: computed once, inside the longer row.

The step samples of one multi-turn task are such rows: the prompt of message ``i + 1`` is the
prompt of message ``i``, then message ``i`` itself, its tool results and the next user turn,
and the chat template renders (and the tokenizer encodes) it as exactly that prefix followed
by the new messages. In a causal model every position of a prefix sees the same context in
the longer row, so the log-probs of a prefix's tokens, and their loss and its gradient, are
the same read off the longer row. Scoring or training each message separately computes the
shared conversation once per message (six times for a six-message task, at 5-7k tokens each).

:func:`prefix_hosts` finds, for every row, the row it is read off. Nothing else is assumed:
rows that do not extend one another (every single-turn sample) stay their own host.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def prefix_hosts(rows: Sequence[Sequence[int]]) -> list[int]:
    """For each row, the index of its host: a row it is a strict prefix of and that is a
    strict prefix of no row, or the row itself when it is a strict prefix of none.

    Equal rows are not merged (each stays a row of its own, as two samples with the same text
    are two training rows). O(n log n) comparisons: in lexicographic order a row that is a
    strict prefix of any row is one of its successor's, since every row between a prefix and
    its extension starts with that prefix.
    """
    keys = [tuple(r) for r in rows]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    host = list(range(len(keys)))
    for k in range(len(order) - 2, -1, -1):
        a, b = order[k], order[k + 1]
        ka, kb = keys[a], keys[b]
        if len(ka) < len(kb) and kb[: len(ka)] == ka:
            host[a] = host[b]
    return host


def host_groups(rows: Sequence[Sequence[int]]) -> dict[int, list[int]]:
    """``host -> the rows read off it`` (itself included), hosts and members in input order."""
    groups: dict[int, list[int]] = {}
    hosts = prefix_hosts(rows)
    for h in sorted(set(hosts)):
        groups[h] = []
    for i, h in enumerate(hosts):
        groups[h].append(i)
    return groups


def shared_response_logprobs(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    logprobs_of: Callable[[list[list[int]], list[int]], Sequence[Sequence[float]]],
) -> list[list[float]]:
    """Each ``(prompt, response)``'s response token log-probs, computed on host rows only.

    ``logprobs_of(rows, starts)`` returns, per row, the log-probs of its tokens at positions
    ``starts[i], ..., len(rows[i]) - 1`` (every start >= 1: prompts are never empty). A row
    ``prompt + response`` that is a prefix of another is read off its host (module docstring).
    """
    full = [list(p) + list(r) for p, r in zip(prompts, responses, strict=True)]
    groups = host_groups(full)
    hosts = list(groups)
    starts = [min(len(prompts[m]) for m in groups[h]) for h in hosts]
    got = logprobs_of([full[h] for h in hosts], starts) if hosts else []
    out: list[list[float]] = [[] for _ in full]
    for k, h in enumerate(hosts):
        row = list(got[k])
        for m in groups[h]:
            a = len(prompts[m]) - starts[k]
            out[m] = row[a : a + len(responses[m])]
    return out


def response_perplexities(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    logprobs_of: Callable[[list[list[int]], list[int]], Sequence[Sequence[float]]],
) -> list[float]:
    """h = P(response | prompt) ** (-1/n) per pair (iTool eq. 4) from
    :func:`shared_response_logprobs`; ``inf`` for an empty response."""
    lps = shared_response_logprobs(prompts, responses, logprobs_of)
    return [math.exp(-sum(lp) / len(lp)) if lp else math.inf for lp in lps]
