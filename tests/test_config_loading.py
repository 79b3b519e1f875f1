"""Job configs read from YAML (issue 17, items 9 and 11): bounded aliases, duplicate keys and
syntax errors refused with one short line naming the file and line; engine and manager
settings defined once, in their dataclasses, and all reachable from a job config."""

from __future__ import annotations

import dataclasses
import time

import pytest

from itool_ray.config import (
    MAX_YAML_VALUES,
    ConfigError,
    EngineSection,
    ManagerSection,
    load_config,
    load_yaml,
)
from itool_ray.policy.config import EngineConfig
from itool_ray.rollout.job import RolloutJobConfig
from itool_ray.rollout.manager import ManagerSettings


def _laughs(indent: str = "") -> str:
    """The billion laughs: nine levels of nine aliases, 9**9 strings from about 400 bytes."""
    names = "abcdefghi"
    lol = ", ".join(["lol"] * 9)
    lines = [f"{indent}a: &a [{lol}]"]
    for prev, name in zip(names, names[1:], strict=False):
        lines.append(f"{indent}{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _bomb(levels: int) -> str:
    """A one-line flow-style bomb: ``levels`` levels of ten aliases."""
    items = ["&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, levels + 1):
        items.append(f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    return "[" + ", ".join(items) + "]"


def _error(tmp_path, text: str, *overrides: str) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(RolloutJobConfig, path, list(overrides))
    return str(info.value)


@pytest.mark.parametrize("where", ["top", "data.synth", "typed field"])
def test_a_billion_laughs_is_refused_quickly_with_a_short_message(tmp_path, where):
    text = {
        "top": _laughs(),
        "data.synth": "data:\n  synth:\n" + _laughs("    "),
        "typed field": "x: " + _bomb(8) + "\nengine: {max_model_len: *l8}\n",
    }[where]
    assert len(text) < 1000
    start = time.perf_counter()
    msg = _error(tmp_path, text)
    assert time.perf_counter() - start < 2.0
    assert f"YAML expands to more than {MAX_YAML_VALUES} values" in msg
    assert msg.startswith(f"{tmp_path / 'job.yaml'}:") and len(msg) < 300


def test_a_bomb_in_an_override_is_refused_too():
    assert len(load_yaml(_bomb(2))) == 3  # 111 values expanded: fine
    with pytest.raises(ConfigError, match="expands to more than") as info:
        load_config(RolloutJobConfig, None, [f"engine.max_model_len={_bomb(6)}"])
    assert len(str(info.value)) < 300


def test_a_recursive_alias_is_refused(tmp_path):
    assert "recursive YAML alias" in _error(tmp_path, "engine: &e {x: *e}\n")


def test_duplicate_keys_name_the_key_and_lines(tmp_path):
    msg = _error(tmp_path, "seed: 1\nengine:\n  dtype: auto\n  dtype: float32\n")
    where = tmp_path / "job.yaml"
    assert msg == f"{where}:4:3: invalid YAML: duplicate key 'dtype' (first given on line 3)"
    # a merge key is not a duplicate: keys beside it override the merged ones
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {count: 2, num_cpus: 1}\nreplicas: {<<: *b, count: 3}\n")
    with pytest.raises(ConfigError, match="base: unknown key"):  # parsed, then validated
        load_config(RolloutJobConfig, path)


@pytest.mark.parametrize(
    ("text", "line"),
    [("engine:\n  dtype: [auto\nseed: 1\n", 3), ("a: b: c\n", 1), ("x: 'open\n", 2)],
)
def test_yaml_syntax_errors_are_one_line_naming_file_and_line(tmp_path, text, line):
    msg = _error(tmp_path, text)
    assert "\n" not in msg and "Traceback" not in msg
    assert msg.startswith(f"{tmp_path / 'job.yaml'}:{line}:") and "invalid YAML" in msg


def test_unreadable_or_odd_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(RolloutJobConfig, tmp_path / "missing.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"seed: 1\nmodel: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"bin\.yaml:2: not UTF-8 text \(byte 0xe9\)"):
        load_config(RolloutJobConfig, tmp_path / "bin.yaml")
    (tmp_path / "bom.yaml").write_text("\ufeffseed: 3\n", encoding="utf-8")
    assert load_config(RolloutJobConfig, tmp_path / "bom.yaml").seed == 3
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(RolloutJobConfig, tmp_path / "list.yaml")


def test_a_long_bad_value_is_not_echoed_whole(tmp_path):
    msg = _error(tmp_path, "engine:\n  max_model_len: " + "x" * 100_000 + "\n")
    assert "engine.max_model_len" in msg and len(msg) < 1000 and "more chars]" in msg
    msg = _error(tmp_path, "seed: [" + ", ".join(["x"] * 5000) + "]\n")
    assert len(msg) < 1000


def _job_fields(section) -> set[str]:
    return set(section._job_fields)


@pytest.mark.parametrize(
    ("section", "settings"), [(EngineSection, EngineConfig), (ManagerSection, ManagerSettings)]
)
def test_each_setting_is_defined_once_with_one_default(section, settings):
    """Every field of the dataclass is a field of the section (except those the job sets),
    with the same type and the same default: the section is generated from the dataclass."""
    own = {"num_cpus"} if section is ManagerSection else set()
    names = {f.name for f in dataclasses.fields(settings)} - _job_fields(section)
    assert set(section.model_fields) == names | own
    for f in dataclasses.fields(settings):
        if f.name in names:
            assert section.model_fields[f.name].default == f.default, f.name
            assert section.model_fields[f.name].description, f"{f.name} is undocumented"


def test_the_engine_section_builds_the_dataclass_defaults():
    assert EngineSection().build("m", seed=5) == EngineConfig(model="m", seed=5)
    assert ManagerSection().build() == ManagerSettings()
    assert EngineSection().cpu_kvcache_gb == EngineConfig(model="m").cpu_kvcache_gb


def test_every_engine_and_manager_setting_is_reachable_from_a_job_config():
    cfg = load_config(
        RolloutJobConfig,
        None,
        [
            "engine.enforce_eager=false",
            "engine.max_loras=3",
            "engine.device=cuda",
            "engine.per_request_seed=true",
            "engine.cpu_kvcache_gb=1.5",
            "manager.revive_every_s=7",
            "manager.keep_trees=0",
        ],
    )
    engine = cfg.engine.build("m")
    assert (engine.enforce_eager, engine.max_loras, engine.device) == (False, 3, "cuda")
    assert engine.per_request_seed and engine.cpu_kvcache_gb == 1.5
    assert (cfg.manager.build().revive_every_s, cfg.manager.build().keep_trees) == (7.0, 0)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("engine.device=tpu", "engine.device"),
        ("engine.dtype=fp8", "EngineConfig.dtype"),
        ("engine.cpu_kvcache_gb=0", "EngineConfig.cpu_kvcache_gb"),
        ("engine.block_size=20", "EngineConfig.block_size"),
        ("engine.max_loras=0", "max_loras"),
        ("engine.model=x", "engine.model: unknown key"),
        ("manager.revive_every_s=0", "manager.revive_every_s"),
        ("manager.keep_trees=-1", "manager.keep_trees"),
        ("manager.max_batch=0", "ManagerSettings.max_batch"),
    ],
)
def test_engine_and_manager_values_are_checked(override, needle):
    with pytest.raises(ConfigError) as info:
        load_config(RolloutJobConfig, None, [override])
    assert needle in str(info.value)


def test_reading_a_config_imports_no_ray_vllm_or_torch():
    """Configs are checked before anything starts: the sections are generated from the
    settings dataclasses without importing the heavy stack."""
    import subprocess
    import sys

    code = (
        "import sys, itool_ray.config, itool_ray.pipeline, itool_ray.rollout.job; "
        "print(sorted(m for m in ('ray', 'vllm', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
