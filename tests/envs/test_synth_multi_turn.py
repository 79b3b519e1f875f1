"""The multi-turn task synthesizer: deterministic, every gold executes and scores valid on the
safe executor, disjoint from BFCL's 1,000 multi-turn entries, varied, and kept in JSON lines."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections import Counter

import pytest

from itool_ray.calls import Call
from itool_ray.datasets import load_named
from itool_ray.envs import (
    ERROR_PREFIX,
    KNOWN_CLASSES,
    BfclEntryError,
    World,
    class_function_docs,
    class_specs,
    gold_calls,
    gold_defects,
    oracle_outputs,
    score_entry,
)
from itool_ray.envs.synth_multi_turn import (
    NEAR_DUPLICATE_JACCARD,
    SYNTH_CATEGORY,
    TEMPLATES,
    _bfcl_index,
    _Draft,
    _draft_problem,
    _failure,
    _value,
    bfcl_overlaps,
    normalise_query,
    read_multi_turn,
    synthesize_multi_turn,
    write_multi_turn,
)

N = 200


@pytest.fixture(scope="module")
def synthesized():
    report: Counter = Counter()
    return synthesize_multi_turn(N, seed=0, report=report), report


def _called_classes(entry) -> set[str]:
    owner = {name: c for c in entry.involved_classes for name in class_specs(c)}
    return {owner[call.name] for t in range(entry.num_turns) for call in gold_calls(entry, t)}


def test_deterministic_by_seed():
    first = synthesize_multi_turn(12, seed=7)
    assert synthesize_multi_turn(12, seed=7) == first
    assert synthesize_multi_turn(5, seed=7) == first[:5]  # entry i does not depend on n
    other = synthesize_multi_turn(12, seed=8)
    assert [e.initial_config for e in other] != [e.initial_config for e in first]
    assert {e.id for e in first}.isdisjoint(e.id for e in other)  # ids carry the seed


def test_same_entries_in_processes_with_other_string_hashes(tmp_path):
    """Nothing depends on set order, which ``PYTHONHASHSEED`` changes between processes."""
    script = (
        "import sys; from itool_ray.envs.synth_multi_turn import *; "
        "write_multi_turn(sys.argv[1], synthesize_multi_turn(15, seed=11))"
    )
    texts = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"h{hash_seed}.jsonl"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env)
        texts.append(out.read_text(encoding="utf-8"))
    assert texts[0] == texts[1]
    assert read_multi_turn(tmp_path / "h1.jsonl") == synthesize_multi_turn(15, seed=11)


def test_entries_have_the_loaders_shape(synthesized):
    entries, report = synthesized
    assert len(entries) == N and report["entries"] == N
    assert len({e.id for e in entries}) == N
    for e in entries:
        assert e.category == SYNTH_CATEGORY and not e.long_context and not e.missed_functions
        assert 2 <= e.num_turns <= 4 and len(e.gold) == e.num_turns
        assert all(len(t) == 1 and t[0]["role"] == "user" and t[0]["content"] for t in e.turns)
        assert e.functions == tuple(d for c in e.involved_classes for d in class_function_docs(c))
        assert 1 <= len(e.involved_classes) <= 2
        assert set(e.initial_config) == set(e.involved_classes) - {"MathAPI"}
        json.dumps(e.initial_config)  # plain JSON values
        assert _called_classes(e) == set(e.involved_classes)  # every involved class is used


def test_every_gold_executes_without_error_and_the_oracle_scores_valid(synthesized):
    entries, _ = synthesized
    for e in entries:
        assert gold_defects(e) == []
        world = World.from_entry(e)
        for turn, texts in enumerate(e.gold):
            assert texts, f"{e.id} turn {turn} has no gold call"
            for text, result in zip(texts, world.execute_gold(texts), strict=True):
                assert not result.startswith(ERROR_PREFIX), (e.id, text, result)
                value = _value(result)
                assert not (isinstance(value, dict) and "error" in value), (e.id, text, result)
        verdict = score_entry(e, oracle_outputs(e))
        assert verdict.valid, (e.id, verdict.to_json())
        assert not score_entry(e, [["I am not sure."] for _ in e.turns]).valid


def test_disjoint_from_all_bfcl_entries(synthesized, all_entries):
    entries, _ = synthesized
    bfcl = [e for es in all_entries.values() for e in es]
    assert len(bfcl) == 1000
    bfcl_configs = [e.initial_config for e in bfcl]
    bfcl_scenarios = [(c, s) for config in bfcl_configs for c, s in config.items()]
    bfcl_queries = {normalise_query(m["content"]) for e in bfcl for t in e.turns for m in t}
    by_size: dict[int, list[frozenset[str]]] = {}
    for q in bfcl_queries:
        by_size.setdefault(len(set(q.split())), []).append(frozenset(q.split()))
    checked = 0
    for e in entries:
        assert all(e.initial_config != config for config in bfcl_configs), e.id
        assert all((c, e.initial_config.get(c)) != (c, s) for c, s in bfcl_scenarios), e.id
        for turn in e.turns:
            text = normalise_query(turn[0]["content"])
            assert text not in bfcl_queries, (e.id, text)
            words = frozenset(text.split())
            low = math.ceil(len(words) * NEAR_DUPLICATE_JACCARD)  # Jaccard bounds the sizes
            high = math.floor(len(words) / NEAR_DUPLICATE_JACCARD)
            for size in range(low, high + 1):
                for other in by_size.get(size, ()):
                    similarity = len(words & other) / len(words | other)
                    assert similarity < NEAR_DUPLICATE_JACCARD, (e.id, text, other)
            checked += 1
    assert checked == sum(e.num_turns for e in entries)
    assert bfcl_overlaps(entries) == []


def test_near_duplicates_of_bfcl_are_caught(synthesized, all_entries):
    index = _bfcl_index()
    bfcl = [e for es in all_entries.values() for e in es]
    queries = sorted({m["content"] for e in bfcl for t in e.turns for m in t})
    long_ones = [q for q in queries if len(normalise_query(q).split()) >= 12][:200]
    for q in long_ones:
        words = q.split()
        edited = " ".join(words[:3] + words[4:]).upper() + " !!"  # a word dropped, shouted
        assert index.query_seen(q) == "equal to a BFCL query"
        assert index.query_seen(edited) is not None, edited
    entry = synthesized[0][0]
    copied = dataclasses.replace(
        entry,
        initial_config=bfcl[0].initial_config,
        turns=(({"role": "user", "content": queries[0]},),),
    )
    found = bfcl_overlaps([copied])
    assert any("initial_config" in f for f in found) and any("turn 0" in f for f in found)


def test_verification_rejects_failing_or_idle_golds():
    world = World({"GorillaFileSystem": {}}, ["GorillaFileSystem"])
    before = world.state()
    bad = _Draft("Go into 'nowhere'.", [Call("cd", {"folder": "nowhere"})])
    trial = world.copy()
    assert "failed" in _draft_problem(bad, trial, trial.execute(bad.calls), before)
    idle = _Draft("Where am I?", [Call("pwd", {})], changes=True)
    trial = world.copy()
    assert _draft_problem(idle, trial, trial.execute(idle.calls), before) == "state unchanged"
    wrong = _Draft("Make 'a'.", [Call("mkdir", {"dir_name": "a"})], check=lambda w: False)
    trial = world.copy()
    outcome = _draft_problem(wrong, trial, trial.execute(wrong.calls), before)
    assert outcome == "intended state not reached"
    assert _failure(_value(ERROR_PREFIX + "name 'x' is not defined"))
    assert _failure({"login_status": False, "message": "User ID 'U' not found."})
    assert _failure(["Error: User not authenticated."]) and _failure([{"error": "no"}])
    assert _failure({"result": 3.0}) is None


def test_variety_of_classes_and_templates(synthesized):
    entries, report = synthesized
    classes = Counter(c for e in entries for c in _called_classes(e))
    assert len(classes) >= 6, classes
    used = {k.removeprefix("template ") for k in report if k.startswith("template ")}
    assert used <= set(TEMPLATES) and len(used) >= 30, len(used)
    assert sum(v for k, v in report.items() if k.startswith("template ")) == sum(
        e.num_turns for e in entries
    )
    assert len({t[0]["content"] for e in entries for t in e.turns}) > 0.85 * sum(
        e.num_turns for e in entries
    )
    assert {c for t in TEMPLATES.values() for c in t} == set(KNOWN_CLASSES)


def test_classes_and_turns_are_honoured():
    entries = synthesize_multi_turn(8, seed=3, classes=("TradingBot", "MathAPI"), turns=(3, 3))
    assert all(e.num_turns == 3 for e in entries)
    assert all(set(e.involved_classes) <= {"TradingBot", "MathAPI"} for e in entries)
    assert all(e.involved_classes[0] == "TradingBot" for e in entries)
    alone = synthesize_multi_turn(3, seed=3, classes=("MathAPI",))
    assert all(e.involved_classes == ("MathAPI",) and e.initial_config == {} for e in alone)
    for bad in ({"classes": ("Nope",)}, {"classes": ()}, {"turns": (0, 2)}, {"turns": (3, 2)}):
        with pytest.raises(ValueError):
            synthesize_multi_turn(1, seed=0, **bad)


def test_jsonl_round_trip_and_located_errors(synthesized, tmp_path):
    entries = synthesized[0][:25]
    path = write_multi_turn(tmp_path / "tasks.jsonl", entries)
    assert read_multi_turn(path) == entries
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(json.loads(line)["category"] == SYNTH_CATEGORY for line in lines)
    (tmp_path / "twice.jsonl").write_text(lines[0] + "\n" + lines[0] + "\n", encoding="utf-8")
    with pytest.raises(BfclEntryError, match=r"twice\.jsonl:2 .*repeated"):
        read_multi_turn(tmp_path / "twice.jsonl")
    record = json.loads(lines[1])
    del record["ground_truth"]
    (tmp_path / "bad.jsonl").write_text(lines[0] + "\n" + json.dumps(record) + "\n")
    with pytest.raises(BfclEntryError, match=r"bad\.jsonl:2 .*ground_truth"):
        read_multi_turn(tmp_path / "bad.jsonl")
    (tmp_path / "torn.jsonl").write_text(lines[0] + "\n{not json\n")
    with pytest.raises(BfclEntryError, match=r"torn\.jsonl:2"):
        read_multi_turn(tmp_path / "torn.jsonl")


def test_registered_dataset_name():
    assert load_named("synth-multi-turn", limit=3, seed=4) == synthesize_multi_turn(3, seed=4)
