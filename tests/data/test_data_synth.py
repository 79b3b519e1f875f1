"""The ToolACE-style synthesizer: determinism, knobs, the rule layer, grounding."""

from __future__ import annotations

from collections import Counter

import pytest

from itool_ray.calls import parse_calls
from itool_ray.data import (
    Sample,
    SynthConfig,
    check_synth_sample,
    is_grounded,
    seal_tools_pool_tools,
    synthesize,
    verify_sample,
)
from itool_ray.data.synth_catalog import generated_pool
from itool_ray.data.synth_pool import S, T, integer, pick

ONLY = {m: {m: 1.0} for m in ("single", "parallel", "multiple", "parallel_multiple")}


@pytest.fixture(scope="module")
def default_run():
    return synthesize(num_samples=2000, seed=11)


def _query(s: Sample) -> str:
    return s.messages[0]["content"]


def test_same_seed_same_samples_different_seed_different(default_run):
    again = synthesize(num_samples=2000, seed=11)
    assert again.samples == default_run.samples
    assert [s.meta for s in again] == [s.meta for s in default_run]
    other = synthesize(num_samples=2000, seed=12)
    assert sum(a != b for a, b in zip(other, default_run, strict=True)) > 1900


def test_every_sample_passes_the_rules_and_parses(default_run):
    assert len(default_run) == 2000 and default_run.report.dropped == 0
    for s in default_run:
        assert check_synth_sample(s) == [], s.id
        calls = parse_calls(s.gold)
        if s.meta["mode"] == "no_tool":
            assert calls is None
        else:
            assert len(calls) == s.meta["n_calls"]
        assert len({t["name"] for t in s.tools}) == len(s.tools)


def test_values_occur_literally_in_the_query(default_run):
    def leaves(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from leaves(x)
        elif isinstance(v, list):
            for x in v:
                yield from leaves(x)
        else:
            yield v

    checked = 0
    for s in default_run:
        for call in parse_calls(s.gold) or []:
            for value in call.arguments.values():
                for leaf in leaves(value):
                    if not isinstance(leaf, bool):
                        assert str(leaf) in _query(s), (s.id, leaf)
                        checked += 1
    assert checked > 5000


def test_default_mix(default_run):
    modes = Counter(s.meta["mode"] for s in default_run)
    assert set(modes) == {"single", "parallel", "multiple", "parallel_multiple", "no_tool"}
    assert 150 <= modes["no_tool"] <= 250  # 10% of 2000
    assert min(len(s.tools) for s in default_run) >= 2
    assert max(len(s.tools) for s in default_run) == 5
    assert max(s.meta["n_calls"] for s in default_run) == 4
    names = {t["name"] for s in default_run for t in s.tools}
    assert {"Weather Forecast API", "math.factorial", "hotel.search"} <= names


def test_candidate_count_knob():
    run = synthesize(num_samples=300, seed=1, min_candidates=4, max_candidates=4)
    assert {len(s.tools) for s in run} == {4}


def test_single_mode():
    run = synthesize(num_samples=200, seed=2, mode_weights=ONLY["single"], no_tool_fraction=0)
    assert {s.meta["n_calls"] for s in run} == {1}
    assert {len(parse_calls(s.gold)) for s in run} == {1}


def test_parallel_mode_calls_one_tool_several_times():
    run = synthesize(num_samples=200, seed=3, mode_weights=ONLY["parallel"], no_tool_fraction=0)
    for s in run:
        calls = parse_calls(s.gold)
        assert 2 <= len(calls) <= 4 and len({c.name for c in calls}) == 1
        assert len({repr(c.arguments) for c in calls}) == len(calls)  # distinct requests
    assert {len(parse_calls(s.gold)) for s in run} == {2, 3, 4}


def test_multiple_mode_calls_different_tools():
    run = synthesize(
        num_samples=200, seed=4, mode_weights=ONLY["multiple"], no_tool_fraction=0, max_calls=3
    )
    for s in run:
        names = [c.name for c in parse_calls(s.gold)]
        assert 2 <= len(names) <= 3 and len(set(names)) == len(names)


def test_parallel_multiple_mode():
    run = synthesize(
        num_samples=200, seed=5, mode_weights=ONLY["parallel_multiple"], no_tool_fraction=0
    )
    for s in run:
        names = [c.name for c in parse_calls(s.gold)]
        assert 3 <= len(names) <= 4 and 2 <= len(set(names)) < len(names)


def test_no_tool_samples():
    run = synthesize(num_samples=200, seed=6, no_tool_fraction=1.0)
    for s in run:
        assert parse_calls(s.gold) is None
        assert s.meta["asked_tool"] not in {t["name"] for t in s.tools}
        assert s.gold.startswith(("I'm sorry", "None of", "The available"))


def test_nested_knob():
    def nested(s):
        return any(
            isinstance(v, list | dict) for c in parse_calls(s.gold) for v in c.arguments.values()
        )

    run = synthesize(num_samples=300, seed=7, nested_fraction=1.0, no_tool_fraction=0)
    assert all(nested(s) for s in run)
    assert any(
        isinstance(v, dict) for s in run for c in parse_calls(s.gold) for v in c.arguments.values()
    )
    flat = synthesize(
        num_samples=300, seed=7, nested_fraction=0.0, no_tool_fraction=0, optional_prob=0.0
    )
    assert sum(nested(s) for s in flat) < 0.3 * len(flat)  # only tools whose lists are required


def test_optional_prob_zero_uses_required_parameters_only():
    run = synthesize(num_samples=300, seed=8, optional_prob=0.0, nested_fraction=0.0)
    required = {t["name"]: set(t["parameters"]["required"]) for t in generated_pool_tools()}
    for s in run:
        for c in parse_calls(s.gold) or []:
            assert set(c.arguments) == required[c.name]


def generated_pool_tools():
    return [spec.tool for spec in generated_pool()]


def test_catalogue_shape():
    tools = generated_pool_tools()
    assert len(tools) == 36 and len({t["name"] for t in tools}) == 36
    assert any(" " in t["name"] for t in tools) and any("." in t["name"] for t in tools)
    types = {p["type"] for t in tools for p in t["parameters"]["properties"].values()}
    assert types == {"string", "integer", "number", "boolean", "array", "dict"}
    assert any("enum" in p for t in tools for p in t["parameters"]["properties"].values())


def test_rule_layer_drops_and_counts_bad_samples():
    good = [
        T(f"tool{i}", "d", "ok", f"do thing {i} for " + "{x}", S("x", "x", pick(["alpha", "beta"])))
        for i in range(6)
    ]
    # wrong type: an integer for a string parameter
    wrong = T("Wrong", "d", "bad", "use {n}", S("n", "n", integer(1, 9)))
    # ungrounded: the clause never mentions its required value
    silent = T("Silent", "d", "bad", "do the silent thing", S("q", "q", pick(["zeta"])))
    knobs = dict(
        num_samples=300,
        seed=9,
        pool=[*good, wrong, silent],
        mode_weights=ONLY["single"],
        no_tool_fraction=0,
        max_candidates=3,
    )
    run = synthesize(**knobs)
    reasons = run.report.drop_reasons
    assert reasons["type_mismatch"] > 0 and reasons["not_grounded"] > 0
    assert run.report.dropped == sum(reasons.values())
    assert run.report.attempted == len(run) + run.report.dropped
    assert not {"Wrong", "Silent"} & {c.name for s in run for c in parse_calls(s.gold)}
    unchecked = synthesize(**knobs, verify=False)
    assert unchecked.report.dropped == 0
    assert {"Wrong", "Silent"} <= {c.name for s in unchecked for c in parse_calls(s.gold)}


def _sample(gold: str, query: str = "Weather in Paris for 5 days") -> Sample:
    tool = {
        "name": "Weather Forecast API",
        "parameters": {
            "type": "dict",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "units": {"type": "string", "enum": ["metric", "imperial"]},
                "include_hourly": {"type": "boolean"},
            },
            "required": ["city"],
        },
    }
    return Sample("v", (tool,), ({"role": "user", "content": query},), gold)


@pytest.mark.parametrize(
    "gold,problem",
    [
        ('[Weather Forecast API(city="Paris", days=5)]', None),
        ("[Weather Forecast API(days=5)]", "required parameter 'city' missing"),
        ('[Weather Forecast API(city="Paris", wind=1)]', "unknown parameter 'wind'"),
        ('[Weather Forecast API(city="Paris", days="5")]', "expected integer, got str"),
        ('[Weather Forecast API(city="Paris", units="kelvin")]', "not in enum"),
        ('[Weather Forecast API(city="Lima")]', "value 'Lima' not grounded"),
        ('[Weather Forecast API(city="Paris", days=50)]', "value 50 not grounded"),
        ('[Weather API(city="Paris")]', "tool not among the candidates"),
        ('[Weather Forecast API(city="Paris"', "not a valid call list"),
        ("I cannot help with that.", None),
    ],
)
def test_verify_sample_rules(gold, problem):
    problems = verify_sample(_sample(gold))
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_grounding_rules():
    assert is_grounded(5, "for 5 days") and not is_grounded(5, "for 15 days")
    assert not is_grounded(2.5, "costs 2.55") and is_grounded(2.5, "costs 2.5.")
    assert is_grounded(True, "and Include Hourly data", param="include_hourly")
    assert not is_grounded(True, "hourly data", param="include_hourly")
    assert is_grounded(["a b", 3], "a b and 3") and not is_grounded({"k": "x"}, "y")
    assert is_grounded(None, "")


def test_real_pool_from_seal_tools(shared_data):
    pool = seal_tools_pool_tools(shared_data / "seal-tools" / "tool.jsonl")
    run = synthesize(num_samples=500, seed=3, pool=pool)
    assert len(run) == 500
    names = {t["name"] for t in pool}
    assert all(t["name"] in names for s in run for t in s.tools)
    assert all(check_synth_sample(s) == [] for s in run)


def test_config_validation():
    with pytest.raises(ValueError, match="min_candidates"):
        SynthConfig(min_candidates=3, max_candidates=2)
    with pytest.raises(ValueError, match="needs max_calls >= 3"):
        SynthConfig(max_calls=2)
    with pytest.raises(ValueError, match="needs min_candidates >= 2"):
        SynthConfig(min_candidates=1)
    SynthConfig(min_candidates=1, mode_weights=ONLY["parallel"])  # fine: one tool suffices
    with pytest.raises(ValueError, match="unknown modes"):
        SynthConfig(mode_weights={"chaotic": 1.0})
    with pytest.raises(ValueError, match="no_tool_fraction"):
        SynthConfig(no_tool_fraction=1.5)
    with pytest.raises(TypeError, match="unknown SynthConfig fields"):
        synthesize(num_samples=1, sed=3)
    with pytest.raises(ValueError, match="max_candidates must be smaller"):
        synthesize(num_samples=1, pool=generated_pool_tools()[:5])
