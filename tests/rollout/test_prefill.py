"""The prefill ratio's parts (pure): unique prefix tokens are the nodes of the prompts' trie."""

from itool_ray.rollout.prefill import prefill_ratio, unique_prefix_tokens


def test_unique_prefix_tokens_counts_each_shared_prefix_once():
    root = (1, 2, 3, 4)
    prompts = [root, root + (5, 6), root + (5, 7), root + (8,), (1, 2, 9)]
    # trie: 1-2-3-4 (4), 5 (1), 6 and 7 (2), 8 (1), 9 under 1-2 (1)
    assert unique_prefix_tokens(prompts) == 9
    assert unique_prefix_tokens(prompts + prompts) == 9  # repeats add nothing
    assert unique_prefix_tokens([]) == 0


def test_unique_prefix_tokens_equals_distinct_prefixes():
    import random

    rng = random.Random(0)
    prompts = [tuple(rng.randrange(4) for _ in range(rng.randrange(1, 12))) for _ in range(200)]
    distinct = {p[:i] for p in prompts for i in range(1, len(p) + 1)}
    assert unique_prefix_tokens(prompts) == len(distinct)


def test_prefill_ratio():
    assert prefill_ratio(1000, 600, 400) == 1.0
    assert prefill_ratio(1000, 0, 250) == 4.0
    assert prefill_ratio(0, 0, 0) is None


def test_tail_tokens_are_the_parts_past_the_last_whole_block():
    from itool_ray.rollout.prefill import tail_tokens

    assert tail_tokens([tuple(range(10)), tuple(range(8)), tuple(range(3))], 4) == 2 + 0 + 3
    assert tail_tokens([tuple(range(10))], 1) == 0
