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


def block_limit_tokens(prompts: Iterable[Sequence[int]], block: int) -> int:
    """Prompt tokens a prefix cache of whole ``block``-token KV blocks computes at best, the
    prompts run in the order given and nothing ever evicted: each prompt reuses its longest
    prefix of whole blocks seen before and computes the rest (at least its last token, whose
    logits are needed). The tail past a prompt's last whole block is computed by every prompt
    that has it, which is why a real cache's ratio to :func:`unique_prefix_tokens` sits above
    1.0 (generated tokens' blocks, which the engine caches too, are not counted here)."""
    if block < 1:
        raise ValueError(f"block must be >= 1, not {block}")
    seen: set[tuple[int, ...]] = set()
    total = 0
    for prompt in prompts:
        p = tuple(prompt)
        full = len(p) // block
        hit = 0
        while hit < full and p[: (hit + 1) * block] in seen:
            hit += 1
        cached = min(hit * block, max(len(p) - 1, 0))
        total += len(p) - cached
        for b in range(hit, full):
            seen.add(p[: (b + 1) * block])
    return total
