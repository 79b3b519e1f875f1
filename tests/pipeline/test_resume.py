"""Resuming the iTool job: which settings each stage is fingerprinted with, a resume under
other settings refused (or re-run with rerun_changed) before config.json is written, and
run folders that are not the job's own refused. No Ray: the job stops after its data stage."""

from __future__ import annotations

import json

import pytest

from itool_ray.config import ConfigError, load_config
from itool_ray.pipeline import ITOolConfig, run_itool, stage_plan
from itool_ray.stages import StageError, StageSettingsChanged, settings_diff


def _changed(*overrides: str) -> list[str]:
    """The stages whose fingerprinted settings ``overrides`` change."""
    base = stage_plan(load_config(ITOolConfig, None, ["train.iterations=2"]))
    other = stage_plan(load_config(ITOolConfig, None, ["train.iterations=2", *overrides]))
    assert list(base) == list(other)
    return [n for n in base if settings_diff(base[n].settings, other[n].settings)]


def test_each_setting_moves_the_stages_that_depend_on_it():
    assert _changed("train.sft.lr=0.01") == ["sft"]
    assert _changed("train.dpo.beta=0.2") == ["iter1-dpo", "iter2-dpo"]
    assert _changed("mcts.k=4") == ["iter1-mcts", "iter2-mcts"]
    assert _changed("train.alpha=0.3") == ["iter1-select", "iter2-select"]
    assert _changed("data.num_samples=60") == ["data"] == _changed("data.heldout_draw=spread")
    assert _changed("eval.max_tokens=64") == ["eval-base", "eval-sft", "iter1-eval", "iter2-eval"]
    every = list(stage_plan(load_config(ITOolConfig, None, ["train.iterations=2"])))
    assert every[0] == "data" and _changed("model=tiny") == every[1:]
    # the same value spelt out, and settings that only place or schedule work, move nothing
    assert _changed("train.sft.lr=0.001", "train.sft.cpu_threads=2") == []
    assert _changed("train.dpo.checkpoint_steps=5", "data.heldout_draw=first") == []
    placement = ("replicas.count=4", "manager.max_batch=8", "engine.memory_fraction=0.5")
    assert _changed(*placement, "stop_after=sft", "train.num_cpus=2") == []


def test_stages_consume_the_stage_whose_adapter_they_use():
    plan = stage_plan(load_config(ITOolConfig, None, ["train.iterations=2"]))
    assert plan["iter1-mcts"].inputs == ("iter1-select", "sft")
    assert plan["iter2-select"].inputs == ("data", "iter1-dpo")
    assert plan["iter2-eval"].inputs == ("data", "iter2-dpo")
    cold = stage_plan(load_config(ITOolConfig, None, ["train.warmup=false"]))
    assert "sft" not in cold and cold["iter1-dpo"].inputs == ("iter1-mcts",)


def _config(run_dir, model_dir, *extra: str) -> ITOolConfig:
    return load_config(
        ITOolConfig,
        None,
        [
            f"run_dir={run_dir}",
            f"model={model_dir}",
            "stop_after=data",
            "data.num_samples=6",
            "data.heldout={synth: 2}",
            *extra,
        ],
    )


@pytest.fixture
def model_dir(tmp_path):
    """A model folder as far as the job checks before any stage needs the model."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


def test_resuming_with_other_settings_is_refused_before_config_json(tmp_path, model_dir):
    run = tmp_path / "run"
    logs: list[str] = []
    run_itool(_config(run, model_dir), log=logs.append)
    assert "[stage] data: running" in logs
    written = (run / "config.json").read_text()
    assert json.loads(written)["data"]["num_samples"] == 6
    with pytest.raises(StageSettingsChanged, match=r"data: data.num_samples: 6 -> 9"):
        run_itool(_config(run, model_dir, "data.num_samples=9"), log=logs.append)
    assert (run / "config.json").read_text() == written, "config.json claims the old settings"
    # a setting no stage depends on may change
    logs.clear()
    run_itool(_config(run, model_dir, "replicas.count=3"), log=logs.append)
    assert f"[stage] data: done earlier, reusing {run / 'data'}" in logs
    # asked to, the changed stage runs again, and config.json tells its new settings
    logs.clear()
    run_itool(_config(run, model_dir, "data.num_samples=9", "rerun_changed=true"), log=logs.append)
    assert "[stage] data: running" in logs
    assert json.loads((run / "config.json").read_text())["data"]["num_samples"] == 9
    lines = sum(1 for p in (run / "data").glob("*.jsonl") for _ in p.read_text().splitlines())
    assert lines == 9 + 2


def test_a_run_dir_the_job_does_not_own_is_refused(tmp_path, model_dir):
    mine = tmp_path / "papers"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "draft.txt").write_text("keep")
    with pytest.raises(StageError, match="did not make"):
        run_itool(_config(mine, model_dir))
    assert [p.name for p in mine.rglob("*")] == ["data", "draft.txt"]
    for where in ("", "/"):
        with pytest.raises(ConfigError, match="run_dir"):
            load_config(ITOolConfig, None, [f"run_dir={where}"])
