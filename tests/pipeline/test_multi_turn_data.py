"""The iTool job on multi-turn data (pure parts, no engine): the data stage splits entries
whole, warms up on their gold messages as step samples, keeps the reinforcement entries for
the search, writes multi-turn held-out sets apart; the select stage ranks entries by their
steps' perplexities; multi-turn held-out sets are judged by BFCL's multi-turn checker."""

from __future__ import annotations

import math

import pytest

from itool_ray.config import load_config
from itool_ray.data import read_samples
from itool_ray.envs import NO_CALL_TEXT, load_multi_turn, oracle_outputs
from itool_ray.envs.steps import entry_perplexities, gold_path, step_samples, warmup_buckets
from itool_ray.envs.synth_multi_turn import read_multi_turn
from itool_ray.eval.generate import score_multi_turn_sets
from itool_ray.eval.multi_turn import oracle_chat_responder
from itool_ray.pipeline import (
    MT_REINFORCE,
    ITOolConfig,
    _data_stage,
    heldout_sets,
    multi_turn_heldout_sets,
)
from itool_ray.pipeline import (
    warmup_buckets as read_warmup,
)


def _entry_of(sample_id: str) -> str:
    return sample_id.rsplit("#", 1)[0]


def test_data_stage_on_a_multi_turn_training_set(tmp_path):
    cfg = load_config(
        ITOolConfig,
        None,
        [
            f"run_dir={tmp_path / 'run'}",
            "data.train=synth-multi-turn",
            "data.num_samples=12",
            "data.reinforce_fraction=0.25",
            "data.heldout={bfcl/multi_turn_base: 2, synth: 3}",
        ],
    )
    out = tmp_path / "data"
    out.mkdir()
    summary = _data_stage(cfg, out)
    assert summary["multi_turn"] and summary["reinforce"] == 3

    reinforce = read_multi_turn(out / MT_REINFORCE)
    warm = read_warmup(out)
    warm_entries = {_entry_of(s.id) for _, part in warm for s in part}
    assert len(warm_entries) == summary["warmup_entries"] == 9
    assert not warm_entries & {e.id for e in reinforce}  # entries are split whole
    for _, part in warm:  # every step of an entry, in order, in one bucket
        ids = [s.id for s in part]
        for eid in {_entry_of(i) for i in ids}:
            steps = [i for i in ids if _entry_of(i) == eid]
            assert steps == [f"{eid}#{k}" for k in range(len(steps))]
    # the reinforcement steps are what perplexity scores: every gold message of those entries
    steps = read_samples(out / "reinforce.jsonl")
    assert [s.id for s in steps] == [s.id for e in reinforce for s in step_samples(e)]
    assert [s.gold for s in steps[: len(gold_path(reinforce[0]))]] == gold_path(reinforce[0])

    # multi-turn held-out sets are entries, apart from the single-turn ones
    mt = multi_turn_heldout_sets(out)
    assert list(mt) == ["bfcl/multi_turn_base"]
    assert [e.id for e in mt["bfcl/multi_turn_base"]] == ["multi_turn_base_0", "multi_turn_base_1"]
    assert list(heldout_sets(out)) == ["synth"] and len(heldout_sets(out)["synth"]) == 3


def test_warmup_buckets_go_from_fewer_to_more_gold_calls():
    from itool_ray.datasets import load_named

    entries = load_named("synth-multi-turn", limit=12, seed=1)
    buckets = warmup_buckets(entries)

    def calls(part):
        by = {}
        for s in part:
            by.setdefault(_entry_of(s.id), 0)
        return [sum(len(t) for t in next(e for e in entries if e.id == i).gold) for i in by]

    easy, medium, hard = (calls(p) for _, p in buckets)
    assert max(easy) <= min(medium) and max(medium) <= min(hard)
    assert sum(buckets.sizes.values()) == sum(len(gold_path(e)) for e in entries)


def test_an_entry_perplexity_is_the_geometric_mean_of_its_scored_steps():
    entries = load_multi_turn("multi_turn_base")[:3]
    a, b, c = (e.id for e in entries)
    ppl = entry_perplexities(
        entries,
        {f"{a}#0": 2.0, f"{a}#1": 8.0, f"{b}#0": math.inf, f"{b}#1": 3.0, f"{c}#0": math.inf},
    )
    assert ppl == {a: pytest.approx(4.0), b: pytest.approx(3.0), c: math.inf}


def test_multi_turn_heldout_sets_are_judged_by_bfcls_checker():
    entries = list(load_multi_turn("multi_turn_base")[:3])
    sets = {"bfcl/multi_turn_base": entries}
    (gold,) = score_multi_turn_sets(sets, oracle_chat_responder(entries))
    assert (gold.n, gold.correct) == (3, 3)
    assert [r["gold_calls"] for r in gold.records] == [sum(len(t) for t in e.gold) for e in entries]
    (silent,) = score_multi_turn_sets(sets, lambda prompts: [NO_CALL_TEXT] * len(prompts))
    needs_calls = sum(any(t != [NO_CALL_TEXT] for t in oracle_outputs(e)) for e in entries)
    assert silent.n == 3 and silent.correct == 3 - needs_calls and needs_calls >= 1


def test_a_spread_held_out_draw_covers_the_set_and_keeps_old_fingerprints(tmp_path):
    """``data.heldout_draw=spread`` evaluates records drawn over the whole set (BFCL's first
    multi_turn_base entries all use the file system; a spread draw reaches the other classes),
    seeded and in the set's order; the default, ``first``, leaves the data stage's settings
    as they were before the setting existed, so runs made then resume."""
    from itool_ray.datasets import draw
    from itool_ray.pipeline import stage_plan

    def data_of(*extra):
        cfg = load_config(
            ITOolConfig,
            None,
            [f"run_dir={tmp_path / 'run'}", "data.heldout={bfcl/multi_turn_base: 20}", *extra],
        )
        out = tmp_path / "data" / str(len(extra))
        out.mkdir(parents=True)
        _data_stage(cfg, out)
        return cfg, multi_turn_heldout_sets(out)["bfcl/multi_turn_base"]

    first_cfg, first = data_of()
    spread_cfg, spread = data_of("data.heldout_draw=spread")
    ids = [e.id for e in load_multi_turn("multi_turn_base")]
    assert [e.id for e in first] == ids[:20]
    picked = [e.id for e in spread]
    assert len(set(picked)) == 20 and picked == sorted(picked, key=ids.index) and picked != ids[:20]
    assert all("GorillaFileSystem" in e.involved_classes for e in first)
    classes = {c for e in spread for c in e.involved_classes}
    assert len(classes) >= 6 and classes - {c for e in first for c in e.involved_classes}
    assert picked == [
        e.id for e in draw(load_multi_turn("multi_turn_base"), 20, how="spread", seed=1)
    ]

    assert "heldout_draw" not in stage_plan(first_cfg)["data"].settings["data"]
    assert stage_plan(spread_cfg)["data"].settings["data"]["heldout_draw"] == "spread"
    assert draw([1, 2, 3], None, how="spread") == [1, 2, 3] == draw([1, 2, 3], 5, how="spread")
    with pytest.raises(ValueError, match="unknown draw 'last'"):
        draw([1, 2], 1, how="last")
