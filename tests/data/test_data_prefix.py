"""Rows that are prefixes of other rows are read off the longer row (itool_ray.data.prefix)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from itool_ray.data.prefix import host_groups, prefix_hosts, shared_response_logprobs


def _is_strict_prefix(a, b) -> bool:
    return len(a) < len(b) and list(b[: len(a)]) == list(a)


def test_a_chain_of_prefixes_shares_its_longest_row_and_others_stay_alone():
    rows = [[1, 2], [1, 2, 3, 4], [9], [1], [1, 2, 3], [1, 5]]
    hosts = prefix_hosts(rows)
    assert hosts[1] == 1 and hosts[4] == 1  # the chain 1, 1-2, 1-2-3, 1-2-3-4 reads off 1-2-3-4
    assert hosts[0] == 1
    assert hosts[2] == 2 and hosts[5] == 5  # no longer row extends them
    assert hosts[3] in (1, 5)  # [1] is a prefix of both branches; either host is exact
    assert host_groups(rows)[1] == sorted([0, 1, 4] + ([3] if hosts[3] == 1 else []))


def test_equal_rows_are_not_merged():
    assert prefix_hosts([[1, 2], [1, 2]]) == [0, 1]


@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=6), max_size=12))
def test_every_host_extends_its_members_and_no_host_is_a_strict_prefix_of_a_row(rows):
    hosts = prefix_hosts(rows)
    for i, h in enumerate(hosts):
        assert h == i or _is_strict_prefix(rows[i], rows[h])
        assert hosts[h] == h
    for h in set(hosts):
        duplicate = any(rows[j] == rows[h] and j != h for j in range(len(rows)))
        if not duplicate:  # an equal row may extend into a longer one on its own
            assert not any(_is_strict_prefix(rows[h], r) for r in rows)
    for i, r in enumerate(rows):  # a row that extends into nothing hosts itself
        if not any(_is_strict_prefix(r, o) for o in rows):
            assert hosts[i] == i


def test_shared_response_logprobs_equal_the_per_row_values_and_compute_each_task_once():
    # a fake causal "model": a token's log-prob depends on its position and the tokens before
    def lp_at(row, t):
        return -((sum(row[:t]) * 31 + row[t] * 7 + t) % 13) / 10

    rng = random.Random(0)
    prompts, responses = [], []
    for task in range(3):  # each task: messages whose prompts extend the previous row
        row = [100 + task] + [rng.randrange(50) for _ in range(5)]
        for _ in range(4):
            resp = [rng.randrange(50) for _ in range(rng.randrange(1, 4))]
            prompts.append(list(row))
            responses.append(resp)
            row = row + resp + [rng.randrange(50) for _ in range(3)]
    prompts.append([7, 7])  # and one row of its own
    responses.append([1])
    calls = []

    def logprobs_of(rows, starts):
        calls.append(len(rows))
        return [[lp_at(r, t) for t in range(s, len(r))] for r, s in zip(rows, starts, strict=True)]

    got = shared_response_logprobs(prompts, responses, logprobs_of)
    for p, r, lp in zip(prompts, responses, got, strict=True):
        full = p + r
        assert lp == [lp_at(full, t) for t in range(len(p), len(full))]
    assert calls == [4]  # one host per task, plus the lone row
