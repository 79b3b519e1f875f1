"""``jobs/evaluate.py``'s configuration: validated up front, errors naming the key; and the
scoring modules stay free of Ray, vLLM and torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from itool_ray.config import ConfigError, load_config
from itool_ray.eval.job import EvaluateConfig


def test_defaults_and_groups():
    cfg = load_config(
        EvaluateConfig, None, ["model=tiny", "benchmarks={bfcl: 2, seal-tools/hard: null}"]
    )
    assert cfg.model == "tiny" and cfg.adapter is None
    parts = cfg.parts
    assert len(parts) == 11 + 5 + 1  # single-turn BFCL, multi-turn BFCL, seal-tools/hard
    assert parts["bfcl/multi_turn_base"] == 2 and parts["bfcl/multi_turn_composite"] == 2
    assert parts["bfcl/live_relevance"] == 2 and parts["seal-tools/hard"] is None
    assert "api-bank/level-1" not in parts
    default = EvaluateConfig().parts
    assert {p.split("/")[0] for p in default} == {"bfcl", "api-bank", "seal-tools"}


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("model: tiny\nbenchmarks: {api-bank/level-2: 5}\nreplicas: {count: 1}\n")
    cfg = load_config(EvaluateConfig, path, ["max_tokens=64", "adapter=/tmp/adapter"])
    assert cfg.parts == {"api-bank/level-2": 5}
    assert cfg.replicas.count == 1 and cfg.max_tokens == 64 and cfg.adapter == "/tmp/adapter"
    assert cfg.replicas.num_cpus == EvaluateConfig().replicas.num_cpus  # section defaults kept


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("modle=tiny", ["modle: unknown key", "model"]),
        ("replicas.cout=2", ["replicas.cout: unknown key", "count"]),
        ("benchmarks={bfcl/simpel: 2}", ["benchmarks", "unknown benchmark 'bfcl/simpel'"]),
        ("benchmarks={bfcl/java: 2}", ["'bfcl/java' is not supported"]),
        ("benchmarks={api-bank: 0}", ["benchmark 'api-bank': limit must be"]),
        ("benchmarks={}", ["at least one benchmark"]),
        ("max_tokens=2", ["max_tokens"]),
        ("engine.max_model_len=abc", ["engine.max_model_len"]),
    ],
)
def test_bad_values_name_the_key(override, needles):
    with pytest.raises(ConfigError) as err:
        load_config(EvaluateConfig, None, [override])
    for needle in needles:
        assert needle in str(err.value)


def test_oracle_takes_no_adapter():
    assert load_config(EvaluateConfig, None, ["model=oracle"]).model == "oracle"
    with pytest.raises(ConfigError, match="model=oracle takes no adapter"):
        load_config(EvaluateConfig, None, ["model=oracle", "adapter=/tmp/adapter"])


def test_scoring_imports_no_engine():
    code = (
        "import sys, itool_ray.eval.benchmarks, itool_ray.eval.report, itool_ray.eval.job\n"
        "bad = [m for m in ('ray', 'vllm', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_each_decoding_call_is_logged_with_its_count_and_the_total(caplog):
    import logging

    from itool_ray.eval.job import _logged

    fn = _logged(lambda items: [x * 2 for x in items], "records")
    with caplog.at_level(logging.INFO, logger="itool_ray.eval.job"):
        assert fn([1, 2, 3]) == [2, 4, 6]
        assert fn([4]) == [8]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("decoded 3 records in ") and "(call 1; 3 so far" in lines[0]
    assert lines[1].startswith("decoded 1 records in ") and "(call 2; 4 so far" in lines[1]


def test_answers_are_reused_only_under_the_same_decoding(tmp_path):
    """``answer_files``: an interrupted run's answers are kept for the same model, adapter
    files and decoding settings, and removed for any other (or with ``resume=false``)."""
    from itool_ray.eval.job import answer_files

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v1")
    out = tmp_path / "out"

    def cfg(*extra):
        return load_config(EvaluateConfig, None, [f"out_dir={out}", f"adapter={adapter}", *extra])

    def leave_answers():
        for p in answer_files(cfg(), "/models/m"):
            p.write_text('{"key": "k", "text": "t"}\n')

    leave_answers()
    assert all(p.is_file() for p in answer_files(cfg(), "/models/m"))  # same: kept
    for changed in (
        lambda: answer_files(cfg("max_tokens=64"), "/models/m"),
        lambda: answer_files(cfg("engine.dtype=float32"), "/models/m"),
        lambda: answer_files(cfg(), "/models/other"),
        lambda: answer_files(cfg("resume=false"), "/models/m"),
    ):
        leave_answers()
        assert not any(p.exists() for p in changed())
    leave_answers()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v2")  # retrained in place
    assert not any(p.exists() for p in answer_files(cfg(), "/models/m"))
