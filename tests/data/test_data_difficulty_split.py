"""Difficulty buckets (iTool eq. 1-3) and the warm-up / reinforcement split."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itool_ray.data import (
    Sample,
    bucket_by_difficulty,
    difficulty_features,
    difficulty_order,
    label_difficulty,
    split_warmup_reinforce,
)
from itool_ray.data.difficulty import _average_ranks, third_sizes


def _tool(i: int, desc_len: int) -> dict:
    return {"name": f"t{i}", "description": "x" * desc_len, "parameters": {"type": "dict"}}


def make(sid: str, n_tools: int, desc_len: int, n_calls: int) -> Sample:
    gold = "[" + ", ".join(f"t0(a={k})" for k in range(n_calls)) + "]" if n_calls else "No."
    return Sample(
        id=sid,
        tools=tuple(_tool(i, desc_len) for i in range(n_tools)),
        messages=({"role": "user", "content": "q"},),
        gold=gold,
    )


def test_features():
    s = make("a", 2, 3, 2)
    f = difficulty_features(s)
    assert (f.n_tools, f.n_calls) == (2, 2)
    assert f.tools_chars == len(
        '[{"name": "t0", "description": "xxx", "parameters": {"type": "dict"}}, '
        '{"name": "t1", "description": "xxx", "parameters": {"type": "dict"}}]'
    )
    # ground truth, when given, counts the calls (BFCL irrelevance: [] -> 0)
    bfcl = Sample("b", s.tools, s.messages, "No call.", ground_truth=[])
    assert difficulty_features(bfcl).n_calls == 0


def test_average_ranks_share_ties():
    assert _average_ranks([5, 1, 5, 3]) == [3.5, 1.0, 3.5, 2.0]


def test_rank_sum_by_hand():
    # a is smallest on every criterion, d largest; b and c trade places per criterion:
    # ranks b = (2, 3, 2) -> 7, c = (3, 2, 3) -> 8
    samples = [
        make("d", 4, 40, 3),
        make("c", 3, 1, 2),
        make("b", 2, 30, 1),
        make("a", 1, 1, 0),
    ]
    assert [s.id for s in difficulty_order(samples)] == ["a", "b", "c", "d"]
    # lexicographic: the number of tools decides first
    assert [s.id for s in difficulty_order(samples, rule="lexicographic")] == ["a", "b", "c", "d"]
    samples.append(make("e", 1, 90, 4))  # few tools but long and many calls
    assert [s.id for s in difficulty_order(samples, rule="lexicographic")][:2] == ["a", "e"]
    assert difficulty_order(samples)[-1].id in ("d", "e")


def test_unknown_rule():
    with pytest.raises(ValueError, match="unknown difficulty rule"):
        difficulty_order([make("a", 1, 1, 1)], rule="vibes")


@pytest.mark.parametrize("n", range(0, 11))
def test_third_sizes(n):
    sizes = third_sizes(n)
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1


def _random_samples(rng: random.Random, n: int) -> list[Sample]:
    return [
        make(f"s{i}", rng.randint(1, 6), rng.randint(0, 50), rng.randint(0, 4)) for i in range(n)
    ]


@pytest.mark.parametrize("rule", ["rank_sum", "lexicographic"])
def test_buckets_equal_monotone_stable(rule):
    rng = random.Random(0)
    samples = _random_samples(rng, 100)
    b = bucket_by_difficulty(samples, rule=rule)
    assert b.sizes == {"easy": 34, "medium": 33, "hard": 33}
    assert {s.id for _, part in b for s in part} == {s.id for s in samples}
    if rule == "rank_sum":  # every criterion counts: each one's mean grows easy -> hard
        for attr in ("n_tools", "tools_chars", "n_calls"):
            means = [
                sum(getattr(difficulty_features(s), attr) for s in part) / len(part)
                for _, part in b
            ]
            assert means[0] < means[1] < means[2], (attr, means)
    else:  # the first criterion decides: tool counts never go down across buckets
        easy, medium, hard = (part for _, part in b)
        assert max(len(s.tools) for s in easy) <= min(len(s.tools) for s in medium)
        assert max(len(s.tools) for s in medium) <= min(len(s.tools) for s in hard)
    # the buckets are contiguous cuts of the difficulty order
    order = {s.id: i for i, s in enumerate(difficulty_order(samples, rule=rule))}
    assert [order[s.id] for _, part in b for s in part] == list(range(100))
    shuffled = samples[:]
    rng.shuffle(shuffled)
    assert bucket_by_difficulty(shuffled, rule=rule) == b


def test_rank_sum_bucket_scores_do_not_overlap():
    samples = _random_samples(random.Random(1), 60)
    from itool_ray.data.difficulty import RULES

    feats = [difficulty_features(s) for s in samples]
    score = dict(zip([s.id for s in samples], RULES["rank_sum"](feats), strict=True))
    easy, medium, hard = (part for _, part in bucket_by_difficulty(samples))
    assert max(score[s.id] for s in easy) <= min(score[s.id] for s in medium)
    assert max(score[s.id] for s in medium) <= min(score[s.id] for s in hard)


def test_ties_are_broken_by_id():
    samples = [make(i, 2, 2, 1) for i in ("c", "a", "b")]
    assert [s.id for s in difficulty_order(samples)] == ["a", "b", "c"]


def test_label_difficulty_keeps_input_order():
    samples = _random_samples(random.Random(2), 9)
    labelled = label_difficulty(samples)
    assert [s.id for s in labelled] == [s.id for s in samples]
    buckets = bucket_by_difficulty(samples)
    for name, part in buckets:
        ids = {s.id for s in part}
        assert all(s.meta["difficulty"] == name for s in labelled if s.id in ids)
    assert "difficulty" not in samples[0].meta  # the input is not mutated


def _ids(n: int) -> list[Sample]:
    return [make(f"id-{i}", 1, 1, 1) for i in range(n)]


def test_split_90_10_deterministic():
    samples = _ids(1000)
    split = split_warmup_reinforce(samples, seed=7)
    assert split.sizes == {"warmup": 900, "reinforce": 100}
    assert split == split_warmup_reinforce(samples, seed=7)
    other = split_warmup_reinforce(samples, seed=8)
    assert {s.id for s in other.reinforce} != {s.id for s in split.reinforce}
    # each part keeps the input order
    pos = {s.id: i for i, s in enumerate(samples)}
    assert [pos[s.id] for s in split.warmup] == sorted(pos[s.id] for s in split.warmup)
    assert "warm-up 900, reinforce 100" in split.summary()


def test_split_fraction_is_configurable_and_checked():
    assert split_warmup_reinforce(_ids(10), reinforce_fraction=0.25).sizes == {
        "warmup": 8,
        "reinforce": 2,
    }
    assert split_warmup_reinforce(_ids(10), reinforce_fraction=0.0).sizes["reinforce"] == 0
    with pytest.raises(ValueError):
        split_warmup_reinforce(_ids(10), reinforce_fraction=1.5)


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(0, 60),
    fraction=st.floats(0, 1),
    seed=st.integers(0, 2**32),
    perm_seed=st.integers(0, 1000),
)
def test_split_is_order_independent(n, fraction, seed, perm_seed):
    samples = _ids(n)
    shuffled = samples[:]
    random.Random(perm_seed).shuffle(shuffled)
    a = split_warmup_reinforce(samples, reinforce_fraction=fraction, seed=seed)
    b = split_warmup_reinforce(shuffled, reinforce_fraction=fraction, seed=seed)
    assert {s.id for s in a.reinforce} == {s.id for s in b.reinforce}
    assert len(a.reinforce) == round(n * fraction)
    assert len(a.warmup) + len(a.reinforce) == n


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5), st.integers(0, 9), st.integers(0, 3)), max_size=40))
def test_buckets_partition_property(specs):
    samples = [make(f"s{i}", *spec) for i, spec in enumerate(specs)]
    b = bucket_by_difficulty(samples)
    sizes = list(b.sizes.values())
    assert sum(sizes) == len(samples) and max(sizes, default=0) - min(sizes, default=0) <= 1
    assert sorted(s.id for _, part in b for s in part) == sorted(s.id for s in samples)
