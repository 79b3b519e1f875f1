"""Hard-sample selection (iTool eq. 4): the top alpha fraction by perplexity."""

from __future__ import annotations

import json
import math
import random
import sys

import pytest

from itool_ray.data import Sample
from itool_ray.train import keep_count, select_hard


def _samples(n: int) -> list[Sample]:
    return [Sample(id=f"s{i:02d}", tools=(), messages=(), gold="") for i in range(n)]


def test_keeps_top_20_percent_hardest_first():
    samples = _samples(10)
    ppl = [1.5, 9.0, 2.0, 3.0, 8.5, 1.1, 4.0, 7.0, 2.5, 1.0]
    sel = select_hard(samples, ppl, alpha=0.2)
    assert sel.chosen_ids == ["s01", "s04"]
    assert sel.threshold == 8.5
    assert sel.perplexities == {s.id: p for s, p in zip(samples, ppl, strict=True)}


def test_ties_broken_by_id_whatever_the_input_order():
    samples = _samples(10)
    ppl = {s.id: 5.0 if s.id in ("s07", "s03", "s09") else 1.0 for s in samples}
    expected = ["s03", "s07"]  # three tied at the top, two kept: smallest ids
    for seed in range(5):
        shuffled = samples[:]
        random.Random(seed).shuffle(shuffled)
        assert select_hard(shuffled, ppl, alpha=0.2).chosen_ids == expected
        assert select_hard(shuffled, [ppl[s.id] for s in shuffled], 0.2).chosen_ids == expected


@pytest.mark.parametrize(
    ("n", "alpha", "k"),
    [
        (0, 0.2, 0),
        (1, 0.2, 1),
        (4, 0.2, 1),
        (10, 0.2, 2),
        (12, 0.2, 2),
        (100, 0.29, 29),
        (7, 1.0, 7),
    ],
)
def test_keep_count(n, alpha, k):
    assert keep_count(n, alpha) == k


def test_at_least_one_and_infinite_is_hardest():
    samples = _samples(3)
    sel = select_hard(samples, [2.0, math.inf, 3.0], alpha=0.1)
    assert sel.chosen_ids == ["s01"]
    record = json.loads(json.dumps(sel.to_dict()))
    assert record["k"] == 1 and record["n"] == 3 and record["perplexities"]["s01"] == "inf"
    assert select_hard([], [], 0.2).chosen == ()


def test_errors():
    samples = _samples(3)
    with pytest.raises(ValueError, match="alpha"):
        select_hard(samples, [1, 2, 3], alpha=0.0)
    with pytest.raises(ValueError, match="3 samples but 2 perplexities"):
        select_hard(samples, [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        select_hard(samples, [1, float("nan"), 3])
    with pytest.raises(ValueError, match="no perplexity"):
        select_hard(samples, {"s00": 1.0})
    with pytest.raises(ValueError, match="duplicate"):
        select_hard(samples + samples[:1], [1, 2, 3, 4])


def test_select_module_is_pure():
    import subprocess

    code = (
        "import sys; import itool_ray.train as t; t.select_hard; "
        "bad = [m for m in ('torch', 'trl', 'transformers', 'ray', 'vllm') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
