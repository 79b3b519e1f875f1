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


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data.synth.bogus=1"], "data.synth: unknown SynthConfig fields ['bogus']; allowed: "),
        (["data.synth.max_calls=x"], "data.synth: SynthConfig.max_calls: Input should be a valid"),
        (["data.synth.no_tool_fraction=2"], "SynthConfig: no_tool_fraction must be in [0, 1]"),
        (["data.synth.mode_weights={nope: 1}"], "unknown modes ['nope']"),
        (["data.synth.seed=3"], "SynthConfig.seed is set by seed, not here"),
        (["data.synth.num_samples=3"], "SynthConfig.num_samples is set by data.num_samples"),
        (["data.heldout={synth: -1}"], "data.heldout.synth: Input should be greater than or equal"),
        (
            ["stop_after=iter2-mcts"],
            "stop_after: 'iter2-mcts' is not a stage of this job; its stages: data, eval-base, "
            "sft, eval-sft, iter1-select, iter1-mcts, iter1-dpo, iter1-eval",
        ),
        (["stop_after=sft", "train.warmup=false"], "stop_after: 'sft' is not a stage"),
        (
            ["eval.max_tokens=512", "engine.max_model_len=512"],
            "eval.max_tokens (512) must be < engine.max_model_len (512)",
        ),
        (["train.lora.r=32"], "train.lora.r (32) must be <= engine.max_lora_rank (16)"),
    ],
)
def test_sections_checked_against_each_other_and_synth_against_synth_config(overrides, needle):
    with pytest.raises(ConfigError) as e:
        load_config(ITOolConfig, None, overrides)
    assert needle in str(e.value)
    assert "Value error" not in str(e.value)


def test_what_the_cross_checks_still_accept():
    cfg = load_config(
        ITOolConfig,
        None,
        [
            "data.synth={max_candidates: '3', max_calls: 3}",
            "data.heldout={synth: 0, bfcl/simple: null}",
            "stop_after=iter2-dpo",
            "train.iterations=2",
            "train.lora.r=32",
            "train.weight_sync=full",  # no adapter on the replicas: max_lora_rank does not apply
        ],
    )
    assert cfg.data.synth == {"max_candidates": 3, "max_calls": 3}  # read by SynthConfig
    assert cfg.data.heldout == {"synth": 0, "bfcl/simple": None}  # null: the whole set
    assert cfg.stop_after == "iter2-dpo"


def test_eval_max_tokens_is_auto_or_at_least_eight():
    assert load_config(ITOolConfig, None, []).eval.max_tokens == "auto"
    assert load_config(ITOolConfig, None, ["eval.max_tokens=64"]).eval.max_tokens == 64
    for bad in ("eval.max_tokens=4", "eval.max_tokens=lots"):
        with pytest.raises(ConfigError, match="max_tokens"):
            load_config(ITOolConfig, None, [bad])


def test_the_auto_budget_cuts_no_gold_answer_of_the_default_held_out_sets(tmp_path):
    """The main job's held-out sets, tokenized as the replicas do: the resolved budget holds
    every gold answer and its end-of-turn token (80, the earlier fixed budget, cut 4 of the
    40 synthesized golds: answers that could never be right)."""
    from transformers import AutoTokenizer

    from itool_ray.models import resolve_model
    from itool_ray.pipeline import Runtime, _data_stage, _decode_budget, heldout_sets

    cfg = load_config(ITOolConfig, None, [f"run_dir={tmp_path}"])
    _data_stage(cfg, tmp_path / "data")
    model_dir = str(resolve_model(cfg.model))
    sets = heldout_sets(tmp_path / "data")
    budget = _decode_budget(Runtime(cfg, model_dir), sets, {})
    tok = AutoTokenizer.from_pretrained(model_dir)
    lengths = [
        len(tok(s.gold + "<|im_end|>", add_special_tokens=False)["input_ids"])
        for samples in sets.values()
        for s in samples
    ]
    assert len(lengths) >= 100 and max(lengths) <= budget
    assert budget < cfg.engine.max_model_len // 2
