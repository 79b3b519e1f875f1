"""``mcts.outcome=graded``: a wrong call list earns credit for its right functions and
arguments (``call_similarity``, ``graded_credit``, ``GradedCallsOutcome``), a correct one still
scores 1 and nothing else does; values derived by hand, then checked on real samples and in a
search."""

from __future__ import annotations

import random
import time

import pytest

from itool_ray.calls import Call, check_calls, ground_truth_from_calls, parse_calls
from itool_ray.calls.check import call_similarity, graded_credit
from itool_ray.data import Sample
from itool_ray.mcts import MCTSConfig, search
from itool_ray.mcts.rewards import (
    GRADED_SCALE,
    CallsOutcome,
    GradedCallsOutcome,
    UncachedCallsOutcome,
    UncachedGradedCallsOutcome,
    calls_outcome,
)
from tests.mcts.test_rewards_cache import (  # noqa: F401
    VariantEngine,
    _all_texts,
    _compare,
    samples,
    variants,
)

GOLD = ground_truth_from_calls(
    [
        Call("get_weather", {"city": "Paris", "unit": "celsius"}),
        Call("get_time", {"zone": "Europe/Paris"}),
    ]
)


def test_call_similarity_by_hand():
    weather = GOLD[0]
    assert call_similarity(Call("get_weather", {"city": "Paris", "unit": "celsius"}), weather) == 1
    assert call_similarity(Call("get_time", {"zone": "Europe/Paris"}), weather) == 0.0
    # name right, 1 of 2 arguments right: (1 + 1) / (1 + 2)
    assert call_similarity(Call("get_weather", {"city": "Paris", "unit": "k"}), weather) == (
        pytest.approx(2 / 3)
    )
    # a missing required argument is wrong, an unexpected one counts as one more wrong
    assert call_similarity(Call("get_weather", {"city": "Paris"}), weather) == pytest.approx(2 / 3)
    extra = Call("get_weather", {"city": "Paris", "unit": "celsius", "days": 3})
    assert call_similarity(extra, weather) == pytest.approx(3 / 4)
    # string normalisation as the checker's
    assert call_similarity(Call("get_weather", {"city": "paris", "unit": "Celsius"}), weather) == 1
    # an optional gold argument left out is right
    optional = {"get_weather": {"city": ["Paris"], "unit": ["celsius", ""]}}
    assert call_similarity(Call("get_weather", {"city": "Paris"}), optional) == 1.0


def test_graded_credit_by_hand():
    right = [Call("get_weather", {"city": "Paris", "unit": "celsius"})]
    right.append(Call("get_time", {"zone": "Europe/Paris"}))
    assert graded_credit(right, GOLD) == 1.0
    assert graded_credit(right[::-1], GOLD) == 1.0  # any order, as the checker
    near = [Call("get_weather", {"city": "Paris", "unit": "k"}), right[1]]
    assert graded_credit(near, GOLD) == pytest.approx((2 / 3 + 1) / 2)
    assert graded_credit(right[:1], GOLD) == pytest.approx(1 / 2)  # a missing call
    assert graded_credit([*right, right[0]], GOLD) == pytest.approx(2 / 3)  # an extra call
    assert graded_credit([Call("other", {})], GOLD) == 0.0
    assert graded_credit(None, GOLD) == 0.0 and graded_credit([], GOLD) == 0.0
    assert graded_credit(None, []) == 1.0 and graded_credit(right, []) == 0.0


def test_ten_thousand_calls_score_near_zero_quickly():
    flood = [Call("get_weather", {"city": "Paris", "unit": "celsius"})] * 10_000
    start = time.perf_counter()
    score = graded_credit(flood, GOLD)
    assert score == pytest.approx(1 / 10_000)  # one gold call paired, over 10,000 calls
    assert time.perf_counter() - start < 30  # a bound against a hang, not a speed target


def test_graded_outcome_ranks_near_misses_and_keeps_correct_on_top(samples):  # noqa: F811
    graded, exact = UncachedGradedCallsOutcome(), UncachedCallsOutcome()
    rng = random.Random(0)
    near_misses = 0
    for s in samples:
        for text in variants(s, rng):
            g, e = graded(s, text, True), exact(s, text, True)
            assert (g == 1.0) == (e == 1.0), (s.id, text)
            assert 0.0 <= g <= 1.0 and (g == 1.0 or g <= GRADED_SCALE)
            near_misses += 0 < g < 1
            for cut in range(0, len(text), 7):  # before the end: in [0, scale], never above
                part = graded(s, text[:cut], False)
                assert 0.0 <= part <= GRADED_SCALE or (not parse_calls(s.gold) and part == 1.0)
    assert near_misses >= len(samples)  # the exact O gives all of these 0


def test_wrong_value_scores_above_wrong_function():
    gold = '[get_weather(city="Paris", unit="celsius"), get_time(zone="Europe/Paris")]'
    s = Sample("s", (), ({"role": "user", "content": "weather and time in Paris?"},), gold)
    o = GradedCallsOutcome()
    one_wrong = '[get_weather(city="Paris", unit="kelvin"), get_time(zone="Europe/Paris")]'
    wrong_fn = '[get_news(city="Paris", unit="celsius"), get_time(zone="Europe/Paris")]'
    assert o(s, one_wrong, True) == pytest.approx(GRADED_SCALE * (2 / 3 + 1) / 2)
    assert o(s, wrong_fn, True) == pytest.approx(GRADED_SCALE * 1 / 2)
    assert o(s, s.gold, True) == 1.0
    assert o(s, '[get_weather(city="Paris", unit="celsius"), ', False) == GRADED_SCALE / 2
    assert o(s, "I think it is sunny.", True) == 0.0 and o(s, "[get_weather(", True) == 0.0
    assert check_calls(parse_calls(one_wrong), GOLD).correct is False


def test_config_names_the_outcome_and_the_search_uses_it(samples):  # noqa: F811
    with pytest.raises(ValueError, match="outcome must be one of"):
        MCTSConfig(outcome="partial")
    assert isinstance(calls_outcome(MCTSConfig()), CallsOutcome)
    assert isinstance(calls_outcome(MCTSConfig(outcome="graded")), GradedCallsOutcome)
    cfg = MCTSConfig(k=4, simulations=24, max_depth=8, seed=7)
    engine = VariantEngine(samples)
    graded = search(samples, engine, cfg, reward_fn=GradedCallsOutcome())
    by_id = {s.id: s for s in samples}

    def exact_values(tree_id):  # what the exact O can give: k / n, for n gold calls
        n = len(parse_calls(by_id[tree_id].gold) or [])
        return {k / n for k in range(n + 1)} if n else {0.0, 1.0}

    graded_only = [
        p
        for p in graded.pairs
        for o in (p.chosen_o, p.rejected_o)
        if o not in (0.0, 1.0)
        and round(o / GRADED_SCALE, 9) not in {round(v, 9) for v in exact_values(p.tree_id)}
    ]
    assert graded_only  # argument-level credit: near misses ranked where the exact O ties


def test_an_environment_scoring_another_outcome_is_refused():
    from itool_ray.config import load_config
    from itool_ray.envs.registry import make_environment
    from itool_ray.pipeline import ITOolConfig
    from itool_ray.rollout.manager import TreeManager

    for name in ("calls", "bfcl-multi-turn"):
        with pytest.raises(ValueError, match="computes O as 'exact'"):
            TreeManager([], MCTSConfig(outcome="graded"), [], env=make_environment(name))
    for train in ("synth", "synth-multi-turn"):  # both tasks have a graded O
        cfg = load_config(ITOolConfig, None, [f"data.train={train}", "mcts.outcome=graded"])
        assert cfg.mcts.build().outcome == "graded"


def test_the_single_turn_environment_scores_the_graded_outcome_too(samples):  # noqa: F811
    from itool_ray.envs.registry import make_environment

    cfg = MCTSConfig(k=3, simulations=8, max_depth=6, seed=3, outcome="graded")
    plain = search(samples, VariantEngine(samples), cfg, reward_fn=GradedCallsOutcome())
    env = make_environment("calls", outcome="graded")
    via_env = search(samples, VariantEngine(samples), cfg, env=env)
    assert [t.to_dict() for t in via_env.trees] == [t.to_dict() for t in plain.trees]
    assert [p.to_dict() for p in via_env.pairs] == [p.to_dict() for p in plain.pairs]
    exact = search(samples, VariantEngine(samples), cfg, env=make_environment("calls"))
    assert [t.to_dict() for t in exact.trees] != [t.to_dict() for t in plain.trees]


@pytest.mark.parametrize(("max_states", "max_steps"), [(1 << 17, 1 << 14), (7, 3)])
def test_cached_graded_outcome_equals_the_uncached_on_every_prefix(samples, max_states, max_steps):  # noqa: F811
    import pickle

    plain = UncachedGradedCallsOutcome()
    items = [
        (s, text[:n], terminal, plain(s, text[:n], terminal))
        for s, text in _all_texts(samples[:: 1 if max_states > 100 else 3])
        for n in [*range(0, len(text), 2), len(text)]  # every other cut: continued scans
        for terminal in (False, True)
    ]
    assert len({want for *_, want in items}) > 10  # graded: many distinct values
    cached = GradedCallsOutcome(max_results=97, max_states=max_states, max_steps=max_steps)
    assert _compare(cached, items) > 1_000
    shuffled = list(items)
    random.Random(max_states).shuffle(shuffled)
    _compare(cached, shuffled)
    shipped = pickle.loads(pickle.dumps(GradedCallsOutcome(scale=0.25)))
    assert shipped.scale == 0.25 and isinstance(shipped, GradedCallsOutcome)
    with pytest.raises(ValueError, match="scale must be in"):
        GradedCallsOutcome(scale=1.0)
