"""Job configuration: YAML + overrides, section defaults kept, errors that name the key."""

from __future__ import annotations

import pytest

from itool_ray.config import ConfigError, load_config
from itool_ray.pipeline import ITOolConfig
from itool_ray.rollout.job import RolloutJobConfig


def test_override_inside_a_section_keeps_the_jobs_other_defaults():
    default = ITOolConfig()
    cfg = load_config(ITOolConfig, None, ["mcts.simulations=3", "train.sft.epochs=2"])
    assert cfg.mcts.build().simulations == 3
    # the job's own defaults for the other keys of those sections survive, where they
    # differ from the settings classes' own defaults
    from itool_ray.mcts import MCTSConfig

    job_mcts = default.mcts.model_extra
    differs = [
        k for k, v in job_mcts.items() if getattr(MCTSConfig(), k) != v and k != "simulations"
    ]
    assert differs, "the job sets no MCTS default of its own: this test checks nothing"
    for key in differs:
        assert getattr(cfg.mcts.build(), key) == job_mcts[key], key
    assert cfg.train.sft.build().lr == default.train.sft.build().lr
    assert cfg.train.sft.build().epochs == 2


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("model: tiny\ndata:\n  heldout: {synth: 4}\ntrain:\n  iterations: 3\n")
    cfg = load_config(ITOolConfig, path, ["train.iterations=1"])
    assert cfg.model == "tiny" and cfg.train.iterations == 1
    assert cfg.data.heldout == {"synth": 4}  # a plain mapping is replaced, not merged
    assert cfg.data.num_samples == ITOolConfig().data.num_samples


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.sft.lrr=1", "unknown fields ['lrr']"),
        ("train.dpo.loss=kto", "DPOSettings.loss must be one of"),
        ("mcts.k=0", "MCTSConfig.k must be >= 1"),
        ("train.alpha=2", "train.alpha"),
        ("replicas.cuont=2", "replicas.cuont: unknown key; allowed here: count"),
        ("engine.max_model_len=abc", "engine.max_model_len"),
        ("nokey", "expected KEY.PATH=VALUE"),
    ],
)
def test_wrong_key_or_value_names_itself(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(ITOolConfig, None, [override])
    assert needle in str(e.value)


def test_rollout_job_config_validates_before_anything_starts():
    cfg = load_config(RolloutJobConfig, None, ["mcts.k=2", "replicas.count=3"])
    assert cfg.mcts.build().k == 2 and cfg.mcts.build().simulations == 16
    assert cfg.replicas.count == 3
    with pytest.raises(ConfigError, match="output_format"):
        load_config(RolloutJobConfig, None, ["output_format=csv"])
