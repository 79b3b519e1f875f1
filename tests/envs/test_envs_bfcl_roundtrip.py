"""Gold round trip over all 1,000 multi-turn entries: the safe executor and BFCL's own
``execute_multi_turn_func_call`` (on the trusted gold strings) give the same results and the
same instance states after every turn; replay is deterministic; the class modules' globals,
``mpmath`` and ``decimal`` settings are left as they were."""

from __future__ import annotations

import decimal

import mpmath
from bfcl.eval_checker.multi_turn_eval.multi_turn_checker import state_checker

from itool_ray.calls import parse_calls, render_calls
from itool_ray.envs import World, WorldCache, gold_calls, gold_defects, replay
from tests.envs.bfcl_helpers import (
    SYNTAX_ERROR_GOLD,
    bfcl_execute,
    class_globals,
    clear_bfcl_instances,
    new_tag,
)


def _model_path(world: World, entry, turn: int) -> list[str]:
    """The gold of one turn through the model's path: rendered, parsed, executed."""
    try:
        calls = gold_calls(entry, turn)
    except SyntaxError:
        return world.execute_gold(entry.gold[turn])  # no model text can carry it
    return world.execute(parse_calls(render_calls(calls)) if calls else [])


def test_gold_round_trip_on_all_1000_entries(all_entries, restore_class_globals):
    mismatches, turns, calls, entries = [], 0, 0, 0
    for entry in (e for es in all_entries.values() for e in es):
        tag = new_tag()
        gold_world, model_world = World.from_entry(entry), World.from_entry(entry)
        for turn, texts in enumerate(entry.gold):
            ours = gold_world.execute_gold(texts)
            via_text = _model_path(model_world, entry, turn)
            theirs, instances = bfcl_execute(entry, texts, tag)
            if not (ours == via_text == theirs):
                mismatches.append((entry.id, turn, "results"))
            for world, path in ((gold_world, "gold"), (model_world, "model")):
                if not state_checker(world.instances, instances)["valid"]:
                    mismatches.append((entry.id, turn, f"state ({path} path)"))
            turns, calls = turns + 1, calls + len(texts)
        clear_bfcl_instances(tag)
        entries += 1
    assert mismatches == []
    assert (entries, turns, calls) == (1000, 4528, 5961)


def test_the_gold_that_is_not_python_is_exactly_the_listed_set(all_entries):
    found = {e.id: gold_defects(e) for es in all_entries.values() for e in es if gold_defects(e)}
    assert set(found) == set(SYNTAX_ERROR_GOLD)
    for entry_id, reason in SYNTAX_ERROR_GOLD.items():
        assert len(found[entry_id]) == 1 and reason in found[entry_id][0], found[entry_id]


def test_the_safe_path_writes_nothing_outside_its_instances(all_entries):
    before = class_globals()
    dps, prec = mpmath.mp.dps, decimal.getcontext().prec
    for entry in (e for es in all_entries.values() for e in es):
        world = World.from_entry(entry)
        for texts in entry.gold:
            world.execute_gold(texts)
    assert class_globals() == before
    assert (mpmath.mp.dps, decimal.getcontext().prec) == (dps, prec)


def _gold_steps(entry):
    return [gold_calls(entry, t) for t in range(entry.num_turns)]


def test_replay_is_deterministic_and_the_cache_extends_prefixes(all_entries):
    cache = WorldCache(max_worlds=4)
    sample = [es[i] for es in all_entries.values() for i in range(0, 200, 25)]
    sample = [e for e in sample if not gold_defects(e)]
    for entry in sample:
        steps = _gold_steps(entry)
        fresh = replay(entry, steps)
        again = replay(entry, steps)
        assert state_checker(fresh.instances, again.instances)["valid"], entry.id
        assert fresh.steps == again.steps == tuple(tuple(s) for s in steps)
        replay(entry, steps[:1], cache=cache)  # caches the initial and the 1-step world
        hits = cache.hits
        cached = replay(entry, steps, cache=cache)  # extends the 1-step world
        assert cache.hits == hits + 1
        assert state_checker(cached.instances, fresh.instances)["valid"], entry.id
        # the world handed out is a copy: running more on it leaves the cache as it was
        cached.execute(steps[0])
        assert state_checker(replay(entry, steps, cache=cache).instances, fresh.instances)["valid"]
        # next results after replay equal those of the world that was never rebuilt
        probe = steps[-1] or steps[0]
        assert replay(entry, steps).execute(probe) == fresh.copy().execute(probe), entry.id
    assert len(cache) <= 4


def test_a_world_copy_is_independent(entries_by_id):
    entry = entries_by_id["multi_turn_base_0"]
    world = World.from_entry(entry)
    world.execute(gold_calls(entry, 0))
    twin = world.copy()
    twin.execute(gold_calls(entry, 1))
    assert len(world.steps) == 1 and len(twin.steps) == 2
    assert not state_checker(world.instances, replay(entry, []).instances)["valid"]
    assert state_checker(world.instances, replay(entry, [gold_calls(entry, 0)]).instances)["valid"]
