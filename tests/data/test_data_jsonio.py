"""JSON list / JSON lines reading with line numbers, and the Sample JSONL round trip."""

from __future__ import annotations

import json

import pytest

from itool_ray.data import DataError, Sample, read_samples, write_samples
from itool_ray.data.jsonio import iter_json_records


def _sample(i: int) -> Sample:
    return Sample(
        id=f"s{i}",
        tools=({"name": "f", "description": "é", "parameters": {"type": "dict"}},),
        messages=({"role": "user", "content": f"q{i}"},),
        gold=f"[f(a={i})]",
        ground_truth=[{"f": {"a": [i]}}] if i % 2 else None,
        source="test",
        meta={"k": i},
    )


def test_round_trip(tmp_path):
    samples = [_sample(i) for i in range(5)]
    path = tmp_path / "sub" / "s.jsonl"
    assert write_samples(path, samples) == 5
    back = read_samples(path)
    assert back == samples
    assert [s.meta for s in back] == [s.meta for s in samples]  # meta is not in ==
    assert "é" in path.read_text(encoding="utf-8")  # not \\u-escaped


def test_read_samples_reports_the_bad_line(tmp_path):
    path = tmp_path / "s.jsonl"
    write_samples(path, [_sample(0)])
    with path.open("a") as f:
        f.write(json.dumps({"id": "x", "tools": []}) + "\n")
    with pytest.raises(DataError, match=r"s\.jsonl:2 \[record x\]: field 'messages'"):
        read_samples(path)


def test_json_list_line_numbers_and_broken_list(tmp_path):
    path = tmp_path / "l.json"
    path.write_text('[\n  {"a": 1},\n\n  {"a": 2}\n]\n')
    recs = list(iter_json_records(path))
    assert [(r.index, r.line, r.value) for r in recs] == [(0, 2, {"a": 1}), (1, 4, {"a": 2})]
    path.write_text('[\n  {"a": 1},\n  {"a": \n]\n')
    with pytest.raises(DataError, match=r"l\.json:4 \[record #1\]: expected valid JSON"):
        list(iter_json_records(path))


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="readable file"):
        list(iter_json_records(tmp_path / "nope.jsonl"))
