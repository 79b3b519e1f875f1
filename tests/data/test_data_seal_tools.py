"""Seal-Tools loader on the real files in the shared data folder, and on small bad files."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from itool_ray.calls import Call, parse_calls
from itool_ray.data import DataError, load_seal_tools, load_seal_tools_pool, seal_tools_pool_tools


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def dev(shared_data):
    return load_seal_tools("dev", root=shared_data / "seal-tools")


def test_real_split_counts(shared_data):
    root = shared_data / "seal-tools"
    counts = {s: len(load_seal_tools(s, root=root)) for s in ("test_in_domain", "test_out_domain")}
    assert counts == {"test_in_domain": 700, "test_out_domain": 654}
    assert len(load_seal_tools_pool(root / "tool.jsonl")) == 4076


def test_known_record(dev):
    assert len(dev) == 700 and dev.report.skipped == 0
    s = next(x for x in dev if x.id == "dev-easy-1")
    assert s.source == "seal-tools" and s.meta["line"] == 2
    assert s.messages == (
        {
            "role": "user",
            "content": 'Tell me the engagement metrics for the Facebook post with the ID "rOBhSVKGVKe.',
        },
    )
    assert s.gold == '[getSocialMediaEngagement(platform="Facebook", post_id="rOBhSVKGVKe")]'
    tool = next(t for t in s.tools if t["name"] == "getSocialMediaEngagement")
    assert tool == {
        "name": "getSocialMediaEngagement",
        "description": "Retrieve the engagement metrics of a specific social media post",
        "parameters": {
            "type": "dict",
            "properties": {
                "platform": {
                    "type": "string",
                    "description": "The social media platform on which the post was made "
                    "(e.g., Instagram, Twitter, Facebook)",
                },
                "post_id": {
                    "type": "string",
                    "description": "The ID of the post for which you want to get the "
                    "engagement metrics",
                },
            },
            "required": ["platform", "post_id"],
        },
    }


def test_candidates_are_called_apis_plus_seeded_distractors(dev, shared_data, tmp_path):
    for s in dev:
        called = {c.name for c in parse_calls(s.gold)}
        names = [t["name"] for t in s.tools]
        assert len(names) == len(set(names)) == len(called) + 4
        assert called <= set(names)
    # the candidate list depends on (seed, id) only: same for a reordered, partial file
    rows = (shared_data / "seal-tools" / "dev.jsonl").read_text().splitlines()
    random.Random(0).shuffle(rows)
    path = tmp_path / "dev.jsonl"
    path.write_text("\n".join(rows[:50]) + "\n")
    again = load_seal_tools(path=path, tools_path=shared_data / "seal-tools" / "tool.jsonl")
    by_id = {s.id: s.tools for s in dev}
    assert len(again) == 50
    assert all(s.tools == by_id[s.id] for s in again)
    other_seed = load_seal_tools("dev", root=shared_data / "seal-tools", seed=1)
    assert sum(a.tools != b.tools for a, b in zip(dev, other_seed, strict=True)) > 600


def test_distractors_come_from_the_called_apis_fields(dev, shared_data):
    pool = load_seal_tools_pool(shared_data / "seal-tools" / "tool.jsonl")

    def top(name):
        return pool[name]["field"].split("/")[0]

    same = total = 0
    for s in dev:
        called = {c.name for c in parse_calls(s.gold)}
        fields = {top(n) for n in called}
        for t in s.tools:
            if t["name"] not in called:
                total += 1
                same += top(t["name"]) in fields
    assert total == 4 * 700 and same == total  # every field has >= 4 other apis


def test_num_distractors_knob(shared_data):
    zero = load_seal_tools("dev", root=shared_data / "seal-tools", num_distractors=0)
    assert all(len(s.tools) == len({c.name for c in parse_calls(s.gold)}) for s in zero)


def test_api_call_references_are_kept_as_strings(dev, shared_data):
    s = next(x for x in dev if x.id == "dev-difficult-200")
    calls = parse_calls(s.gold)
    assert calls[2] == Call(
        "getAvailableResources", {"location": "API_call_1", "resource_type": "timber"}
    )
    assert s.meta["references"] == ["API_call_1"]
    with_refs = sum("references" in x.meta for x in dev)
    dropped = load_seal_tools("dev", root=shared_data / "seal-tools", drop_references=True)
    assert with_refs > 0 and len(dropped) == 700 - with_refs
    assert dropped.report.filtered == with_refs and dropped.report.skipped == 0


def test_include_responses(shared_data):
    s = load_seal_tools("dev", root=shared_data / "seal-tools", include_responses=True)[1]
    tool = next(t for t in s.tools if t["name"] == "getSocialMediaEngagement")
    assert list(tool["responses"]) == ["likes", "comments", "shares"]


def test_upstream_candidates_from_finetune_files(shared_data):
    result = load_seal_tools(
        "dev", root=shared_data / "seal-tools", candidates="upstream", on_error="skip"
    )
    assert len(result) == 697 and result.report.skipped == 3
    assert "dev-difficult-228" in result.report.errors[0]
    assert "missing ['getEthicsInDemocracy']" in result.report.errors[0]
    s = next(x for x in result if x.id == "dev-easy-0")
    assert [t["name"] for t in s.tools] == [
        "calculateNursingHours",
        "getHealthWorkforce",
        "getAvailableBeds",
        "getPsychiatricNursingPatient",
        "getPalliativeCareNursingInfo",
    ]


def test_pool_tools_for_the_synthesizer(shared_data):
    tools = seal_tools_pool_tools(shared_data / "seal-tools" / "tool.jsonl")
    assert len(tools) == 4076
    types = {p["type"] for t in tools for p in t["parameters"]["properties"].values()}
    assert types == {"string", "integer", "float", "boolean"}


POOL = [
    {
        "api_name": "getX",
        "api_description": "x",
        "field": "A/B",
        "parameters": {"q": {"type": "str", "description": "q"}},
        "required": ["q"],
        "responses": {},
    },
    {"api_name": "getY", "api_description": "y", "field": "A/C", "parameters": {}, "required": []},
]


@pytest.mark.parametrize(
    "row,needle",
    [
        ({"id": "r1", "calling": []}, "field 'query': expected a string query (missing)"),
        ({"id": "r1", "query": "q", "calling": {}}, "field 'calling'"),
        ({"id": "r1", "query": "q", "calling": [{"api": "nope"}]}, "unknown api 'nope'"),
        (
            {"id": "r1", "query": "q", "calling": [{"api": "getX", "parameters": [1]}]},
            "field 'calling[0].parameters': expected an object",
        ),
    ],
)
def test_malformed_rows(tmp_path, row, needle):
    pool = write_jsonl(tmp_path / "tool.jsonl", POOL)
    good = {"id": "r0", "query": "x", "calling": [{"api": "getX", "parameters": {"q": "x"}}]}
    rows = write_jsonl(tmp_path / "dev.jsonl", [good, row])
    with pytest.raises(DataError) as info:
        load_seal_tools(path=rows, tools_path=pool)
    assert str(info.value).startswith(f"{rows}:2 [record r1]: ")
    assert needle in str(info.value)
    skipped = load_seal_tools(path=rows, tools_path=pool, on_error="skip")
    assert [s.id for s in skipped] == ["r0"] and skipped.report.skipped == 1
    assert skipped[0].gold == '[getX(q="x")]'


def test_bad_pool_entry_raises(tmp_path):
    pool = write_jsonl(tmp_path / "tool.jsonl", [POOL[0], {"api_description": "no name"}])
    with pytest.raises(DataError, match=r"tool\.jsonl:2: field 'api_name'"):
        load_seal_tools_pool(pool)
    (tmp_path / "t2.jsonl").write_text(json.dumps(POOL[0]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"t2\.jsonl:2"):
        load_seal_tools_pool(tmp_path / "t2.jsonl")
