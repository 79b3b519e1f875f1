"""The prefill ratio of a rollout (pure): prompt tokens the engines computed over the unique
prefix tokens of the forest.

Every prompt a search sends is a path from the root of one token trie: the tree's system
prompt and query, then the steps on the node's path. A schedule that prefilled every shared
prefix exactly once would compute as many prompt tokens as that trie has nodes; the ratio

    prefill ratio = (prompt tokens - prompt tokens served from the prefix cache) / trie nodes

is 1.0 at that limit, about ``k x depth`` for a search without a prefix cache, and above 1.0
with a cache when a tree's prompts meet a replica that has not seen (or has evicted) its
prefix. The prefix cache reuses whole KV blocks, so the ratio of a perfect cache is a little
above 1.0: the tail of a prompt past its last full block is computed again by each child.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def unique_prefix_tokens(prompts: Iterable[Sequence[int]]) -> int:
    """Nodes of the token trie of ``prompts``: the prompt tokens a perfect prefix cache would
    compute (each distinct prefix once)."""
    root: dict[int, dict] = {}
    nodes = 0
    for prompt in prompts:
        level = root
        for token in prompt:
            nxt = level.get(token)
            if nxt is None:
                nxt = level[token] = {}
                nodes += 1
            level = nxt
    return nodes


def prefill_ratio(prompt_tokens: int, cached_prompt_tokens: int, unique: int) -> float | None:
    """Prompt tokens computed / unique prefix tokens (None without any prompt)."""
    if unique <= 0:
        return None
    return (prompt_tokens - cached_prompt_tokens) / unique


def tail_tokens(prompts: Iterable[Sequence[int]], block: int) -> int:
    """Tokens past the last whole ``block``-token KV block of each prompt, summed: a prefix
    cache holds whole blocks only, so every prompt computes its tail again, however much of
    it an earlier prompt had. ``(computed - tails) / unique`` is the ratio the cache would
    reach with blocks of one token (a lower bound: some tail tokens are new anyway)."""
    if block < 1:
        raise ValueError(f"block must be >= 1, not {block}")
    return sum(len(p) % block for p in prompts)
