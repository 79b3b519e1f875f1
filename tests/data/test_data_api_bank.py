"""API-Bank loader on the real files, its lenient call parser, and bad records."""

from __future__ import annotations

import json

import pytest

from itool_ray.calls import Call, parse_calls
from itool_ray.data import DataError, load_api_bank, parse_api_request, verify_sample


@pytest.fixture(scope="module")
def level1(shared_data):
    return load_api_bank("level-1", root=shared_data / "api-bank")


def test_real_counts(shared_data, level1):
    root = shared_data / "api-bank"
    assert len(level1) == 399 and level1.report.skipped == 0
    assert len(load_api_bank("level-2", root=root)) == 135
    assert len(load_api_bank("lv3-train", root=root)) == 907


def test_known_level1_record(level1):
    s = level1[0]
    assert s.id == "api-bank-l1-0" and s.source == "api-bank"
    assert s.meta["file"] == "ModifyRegistration-QueryHealthData-CancelRegistration-level-2-2.jsonl"
    assert [t["name"] for t in s.tools] == [
        "QueryHealthData",
        "CancelRegistration",
        "ModifyRegistration",
    ]
    modify = s.tools[2]
    assert modify["parameters"]["properties"]["new_appointment_date"] == {
        "type": "string",
        "description": "The new appointment date. Format: %Y-%m-%d.",
    }
    assert modify["parameters"]["required"] == []
    assert [m["role"] for m in s.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert s.messages[0]["content"] == "The current year is 2023."
    assert s.messages[3]["content"] == (
        "The appointment ID is 34567890 and the new date is March 26th with Dr. Lee."
    )
    assert s.gold == (
        '[ModifyRegistration(appointment_id="34567890", new_appointment_date="2023-03-26", '
        'new_appointment_doctor="Dr. Lee")]'
    )


def test_ids_are_unique(level1):
    assert len({s.id for s in level1}) == 399
    assert [(s.id, s.meta["upstream_id"]) for s in level1[:3]] == [
        ("api-bank-l1-0", 0),
        ("api-bank-l1-1", 2),
        ("api-bank-l1-2", 4),
    ]


def test_history_calls_become_call_and_tool_turns(level1):
    s = level1[1]  # its input holds an earlier "API-Request: [...]->success"
    roles = [m["role"] for m in s.messages]
    i = roles.index("tool")
    assert roles[i - 1] == "assistant"
    assert parse_calls(s.messages[i - 1]["content"])[0].name == "ModifyRegistration"
    assert json.loads(s.messages[i]["content"]) == [
        {"name": "ModifyRegistration", "results": "success"}
    ]
    assert parse_calls(s.gold) == [
        Call(
            "QueryHealthData",
            {
                "user_id": "J46801",
                "start_time": "2023-03-05 00:00:00",
                "end_time": "2023-03-12 00:00:00",
            },
        )
    ]


def test_level2_discovered_tools_join_the_candidates(shared_data):
    l2 = load_api_bank("level-2", root=shared_data / "api-bank")
    assert [t["name"] for t in l2[0].tools] == ["ToolSearcher"]
    s = l2[1]
    assert [t["name"] for t in s.tools] == ["ToolSearcher", "QueryHistoryToday"]
    assert s.meta["discovered_tools"] == ["QueryHistoryToday"]
    assert s.gold == '[QueryHistoryToday(date="10-06")]'
    # upstream defect kept (evaluation sets stay complete): 14 golds call a tool that the
    # dialogue never retrieved; every other gold passes the schema rules
    problems = {x.id: verify_sample(x, check_grounding=False) for x in l2}
    bad = {k: v for k, v in problems.items() if v}
    assert len(bad) == 14
    assert all(len(v) == 1 and "not among the candidates" in v[0] for v in bad.values())
    assert "api-bank-l2-3" in bad  # GetUserToken, named only in AI text


def test_level1_gold_tools_are_always_described(level1):
    for s in level1:
        assert not any("candidates" in v for v in verify_sample(s, check_grounding=False))
    # '2' for an int parameter was coerced (upstream writes room_count='2')
    types = {
        type(v)
        for s in level1
        for c in parse_calls(s.gold)
        for k, v in c.arguments.items()
        if k in ("room_count", "adult_count")
    }
    assert types == {int}


def test_lv3_tools_from_input_and_odd_results(shared_data):
    lv3 = load_api_bank("lv3-train", root=shared_data / "api-bank")
    s = lv3[72]  # a result repr with "patient's" and an {'none'} parameter set
    assert [t["name"] for t in s.tools] == [
        "ToolSearcher",
        "AntibioticDosageRecommendation",
        "AntibioticFormulations",
    ]
    assert s.tools[1]["parameters"]["properties"]["condition"]["description"] == (
        "The patient's condition for antibiotic treatment."
    )
    assert s.tools[2]["parameters"]["properties"] == {}
    assert s.gold == "[AntibioticFormulations()]"
    assert lv3[706].gold == '[MedicationInteractionChecker(drug1="Amoxicillin", drug2="Ibuprofen")]'
    assert lv3[515].gold == '[PharmacyLocator(location="New York")]'


def test_lenient_parser_cases():
    tools = [
        {
            "name": "AddMeeting",
            "parameters": {
                "type": "dict",
                "properties": {"attendees": {"type": "array"}, "topic": {"type": "string"}},
            },
        }
    ]
    broken = "API-Request: [AddMeeting(topic='Sync, weekly', attendees='['John', 'Jane']')]"
    assert parse_api_request(broken, tools) == [
        Call("AddMeeting", {"topic": "Sync, weekly", "attendees": ["John", "Jane"]})
    ]
    # without the schema the quoted list stays a string
    assert parse_api_request(broken)[0].arguments["attendees"] == "['John', 'Jane']"
    assert parse_api_request("API-Request: [Ping()]") == [Call("Ping", {})]
    with pytest.raises(DataError, match="cannot parse"):
        parse_api_request("API-Request: nothing here")


def _record(**changes):
    rec = {
        "file": "x.jsonl",
        "id": 7,
        "instruction": "Do it.\nThe current year is 2023.\nAPI descriptions:\n"
        + json.dumps({"name": "Ping", "description": "p", "input_parameters": {}}),
        "input": "User: ping please\nGenerate API Request:\n",
        "expected_output": "API-Request: [Ping()]",
    }
    rec.update(changes)
    return rec


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"expected_output": None}, "field 'expected_output'"),
        ({"expected_output": "API-Request: Ping("}, "field 'expected_output'"),
        ({"instruction": "no descriptions"}, "field 'instruction'"),
        ({"instruction": "API descriptions:\n{bad json"}, "field 'instruction'"),
        ({"input": "AI: hello\nGenerate API Request:\n"}, "field 'input'"),
    ],
)
def test_malformed_records(tmp_path, changes, needle):
    path = tmp_path / "level-1-api.json"
    path.write_text(json.dumps([_record(), _record(**changes)], indent=1))
    with pytest.raises(DataError) as info:
        load_api_bank("level-1", path=path)
    assert str(info.value).startswith(f"{path}:")
    assert "[record 1]" in str(info.value) and needle in str(info.value)
    result = load_api_bank("level-1", path=path, on_error="skip")
    assert len(result) == 1 and result.report.skipped == 1
    assert result[0].gold == "[Ping()]"
