"""Warm-up SFT with TRL + LoRA on the tiny model: response-only loss, only LoRA weights move,
the loss falls, easy-to-hard order is real, adapters save, load and continue."""

from __future__ import annotations

import math

import pytest
import torch

from itool_ray.data import render_prompt
from itool_ray.train import SFTSettings, build_sft_dataset, make_sft_trainer, warmup_sft
from itool_ray.train._common import encode, end_of_turn, load_base, load_policy

from .conftest import THREADS

FAST = {"batch_size": 2, "max_length": 1024, "cpu_threads": THREADS}


def test_end_of_turn_is_read_from_the_chat_template(tokenizer):
    assert end_of_turn(tokenizer) == "<|im_end|>"


def test_collated_batch_masks_the_prompt(tiny_model_dir, tokenizer, samples, tmp_path):
    from itool_ray.train import LoraSettings

    model = load_policy(tiny_model_dir, None, LoraSettings(), torch.float32)
    rows = samples[:4]
    trainer = make_sft_trainer(
        model, tokenizer, build_sft_dataset(rows, tokenizer), SFTSettings(**FAST), tmp_path
    )
    batches = list(trainer.get_train_dataloader())
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    by_id = {s.id: s for s in rows}
    seen = 0
    for batch in batches:
        ids = trainer.recorder.pending.popleft()
        for r, sid in enumerate(ids):
            s = by_id[sid]
            prompt = encode(tokenizer, render_prompt(s, tokenizer))
            response = encode(tokenizer, s.gold + "<|im_end|>")
            n = len(prompt) + len(response)
            labels, input_ids = batch["labels"][r], batch["input_ids"][r]
            assert input_ids[: len(prompt)].tolist() == prompt
            assert (labels[: len(prompt)] == -100).all(), "prompt tokens must carry no loss"
            assert labels[len(prompt) : n].tolist() == response
            assert response[-1] == im_end, "the model learns to close its turn"
            assert (labels[n:] == -100).all() and (batch["attention_mask"][r, n:] == 0).all()
            seen += 1
    assert seen == len(rows)


def test_sft_step_changes_only_lora_parameters(tiny_model_dir, tokenizer, samples, tmp_path):
    from itool_ray.train import LoraSettings

    model = load_policy(tiny_model_dir, None, LoraSettings(), torch.float32)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    settings = SFTSettings(lr=1e-2, max_steps=2, **FAST)
    trainer = make_sft_trainer(
        model, tokenizer, build_sft_dataset(samples[:4], tokenizer), settings, tmp_path
    )
    trainer.train()
    assert trainer.state.global_step == 2
    for name, param in model.named_parameters():
        if name in trainable:
            assert not torch.equal(param, before[name]), f"{name} did not change"
        else:
            assert torch.equal(param, before[name]), f"base weight {name} changed"
    # and the base weights still equal the ones on disk
    fresh = dict(load_base(tiny_model_dir, torch.float32).named_parameters())
    base = dict(model.get_base_model().named_parameters())
    for name, param in fresh.items():
        key = name if name in base else name.replace(".weight", ".base_layer.weight")
        assert torch.equal(base[key], param), name


def test_easy_to_hard_trains_each_bucket_in_turn(sft_run, samples):
    assert [s.name for s in sft_run.stages] == ["easy", "medium", "hard"]
    # 3 samples per bucket, batch 2 -> 2 steps per epoch, 2 epochs
    assert sft_run.steps_per_stage == {"easy": 4, "medium": 4, "hard": 4}
    order = [sid for stage in sft_run.stages for sid in stage.seen_ids]
    assert len(order) == 3 * 2 * 3  # every sample twice per bucket
    levels = [sid.split("-")[0] for sid in order]
    assert levels == ["easy"] * 6 + ["medium"] * 6 + ["hard"] * 6
    for stage in sft_run.stages:
        assert sorted(set(stage.seen_ids)) == [f"{stage.name}-{i}" for i in range(3)]


def test_mixed_order_shuffles_buckets_together(tiny_model_dir, samples, tmp_path):
    settings = SFTSettings(order="mixed", lr=1e-2, epochs=1, **FAST)
    result = warmup_sft(tiny_model_dir, samples, tmp_path / "a", settings)
    again = warmup_sft(tiny_model_dir, samples, tmp_path / "b", settings)
    assert again.stages[0].seen_ids == result.stages[0].seen_ids, "seeded: same order"
    weights = "adapter_model.safetensors"
    assert (again.adapter_dir / weights).read_bytes() == (result.adapter_dir / weights).read_bytes()
    assert [s.name for s in result.stages] == ["mixed"]
    (stage,) = result.stages
    assert sorted(stage.seen_ids) == sorted(s.id for s in samples)
    rank = {"easy": 0, "medium": 1, "hard": 2}
    levels = [rank[sid.split("-")[0]] for sid in stage.seen_ids]
    assert levels != sorted(levels), "mixed order must not be the curriculum"
    assert result.steps == math.ceil(len(samples) / 2)


def test_loss_falls_when_overfitting(tiny_model_dir, samples, tmp_path):
    settings = SFTSettings(order="mixed", lr=1e-2, epochs=8, **FAST)
    result = warmup_sft(tiny_model_dir, samples[:6], tmp_path, settings)
    (stage,) = result.stages
    assert stage.steps == 24 and len(stage.losses) == 24
    # a random tiny model learns slowly through LoRA alone (its logits start near uniform):
    # about 6.2 -> 4.2 nats per token over 24 steps; ask for a clear 1.5-nat drop
    tail = sum(stage.losses[-3:]) / 3
    assert tail < stage.first_loss - 1.5, stage.losses


def test_adapter_saved_in_peft_format_and_changes_logits(sft_run, tiny_model_dir, tokenizer):
    from peft import PeftModel

    adapter = sft_run.adapter_dir
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "tokenizer_config.json").is_file()
    assert not (adapter / "ref").exists()
    x = tokenizer("[get_weather(city=", return_tensors="pt")
    with torch.no_grad():
        base_logits = load_base(tiny_model_dir, torch.float32)(**x).logits
        model = PeftModel.from_pretrained(load_base(tiny_model_dir, torch.float32), adapter)
        tuned_logits = model(**x).logits
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-3)


def test_continues_from_an_existing_adapter(sft_run, tiny_model_dir, samples, tmp_path):
    from safetensors.torch import load_file

    settings = SFTSettings(order="mixed", lr=1e-2, max_steps=1, **FAST)
    fresh = warmup_sft(tiny_model_dir, samples, tmp_path / "fresh", settings)
    cont = warmup_sft(
        tiny_model_dir, samples, tmp_path / "cont", settings, adapter_in=sft_run.adapter_dir
    )
    # the continued run starts from the trained adapter: its first loss is already low
    assert cont.stages[0].first_loss < fresh.stages[0].first_loss - 0.5
    a = load_file(sft_run.adapter_dir / "adapter_model.safetensors")
    b = load_file(cont.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_empty_input_is_an_error(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="no samples"):
        warmup_sft(tiny_model_dir, [], tmp_path, SFTSettings(**FAST))


# ---- non-finite training fails the run before anything is saved -------------------------------


def test_learning_rate_is_bounded_in_validation():
    from itool_ray.config import ConfigError, load_config
    from itool_ray.pipeline import ITOolConfig
    from itool_ray.train import DPOSettings

    for bad in (1e30, 1.5, 0.0, float("inf")):
        with pytest.raises(ValueError, match="lr"):
            SFTSettings(lr=bad)
        with pytest.raises(ValueError, match="lr"):
            DPOSettings(lr=bad)
    assert SFTSettings(lr=1.0).lr == 1.0
    for key in ("train.sft.lr=1.0e+30", "train.dpo.lr=2"):
        with pytest.raises(ConfigError, match="lr must be <= 1"):
            load_config(ITOolConfig, None, [key])


def test_finite_guard_names_the_logged_value_and_the_weight(tiny_model_dir):
    from itool_ray.train import LoraSettings
    from itool_ray.train._common import NonFiniteTrainingError, check_finite_training

    model = load_policy(tiny_model_dir, None, LoraSettings(), torch.float32)
    good = [{"loss": 6.1, "grad_norm": 1.2, "step": 1}, {"train_runtime": 3.0, "step": 1}]
    check_finite_training(model, good)
    with pytest.raises(NonFiniteTrainingError, match=r"loss=nan at step 2.*nothing was saved"):
        check_finite_training(model, [*good, {"loss": float("nan"), "step": 2}], what="SFT")
    with pytest.raises(NonFiniteTrainingError, match="grad_norm=inf"):
        check_finite_training(model, [{"grad_norm": float("inf"), "step": 1}])
    name, param = next((n, p) for n, p in model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        param[0, 0] = float("inf")
    with pytest.raises(NonFiniteTrainingError, match=rf"1 of \d+ trained weight tensors.*{name}"):
        check_finite_training(model, good)


def _unvalidated(settings: SFTSettings, **fields) -> SFTSettings:
    """``settings`` with fields set past validation (a config made before the lr bound)."""
    for key, value in fields.items():
        object.__setattr__(settings, key, value)
    return settings


def test_diverging_sft_fails_before_the_adapter_is_saved(tiny_model_dir, samples, tmp_path):
    from itool_ray.train._common import NonFiniteTrainingError

    settings = _unvalidated(SFTSettings(max_steps=3, **FAST), lr=1e30)
    with pytest.raises(NonFiniteTrainingError, match=r"warm-up SFT easy \(lr=1e\+30\) diverged"):
        warmup_sft(tiny_model_dir, samples, tmp_path, settings)
    assert not (tmp_path / "adapter").exists()


def test_nan_weights_stop_training_and_fail_it(tiny_model_dir, samples, tmp_path):
    from transformers import TrainerCallback

    from itool_ray.train._common import NonFiniteTrainingError

    class Poison(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, model=None, **kwargs):
            Poison.steps += 1
            with torch.no_grad():
                next(p for n, p in model.named_parameters() if "lora_A" in n).fill_(float("nan"))

    settings = SFTSettings(order="mixed", lr=1e-2, max_steps=6, **FAST)
    with pytest.raises(NonFiniteTrainingError, match=r"loss=nan at step 2.*NaN/Inf"):
        warmup_sft(tiny_model_dir, samples, tmp_path, settings, callbacks=[Poison()])
    assert Poison.steps == 2, "training stops at the first non-finite loss"
    assert not (tmp_path / "adapter").exists()


def test_a_stopped_warmup_continues_after_its_last_finished_bucket(
    tiny_model_dir, samples, tmp_path
):
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from itool_ray.train.sft import BUCKETS_SUBDIR

    settings = SFTSettings(lr=1e-2, **FAST)
    runs: list[int] = []

    class Count(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            runs.append(1)

    class StopAtHard(TrainerCallback):  # a stop while the third bucket trains
        def on_train_begin(self, args, state, control, **kwargs):
            if len(runs) == 3:
                raise KeyboardInterrupt

    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        warmup_sft(tiny_model_dir, samples, out, settings, callbacks=[Count(), StopAtHard()])
    assert sorted(p.name for p in (out / BUCKETS_SUBDIR).iterdir()) == ["easy", "medium"]

    runs.clear()
    resumed = warmup_sft(tiny_model_dir, samples, out, settings, callbacks=[Count()])
    assert len(runs) == 1  # only the hard bucket trained again
    assert [s.name for s in resumed.stages] == ["easy", "medium", "hard"]
    assert not (out / BUCKETS_SUBDIR).exists()

    whole = warmup_sft(tiny_model_dir, samples, tmp_path / "whole", settings)
    assert [s.seen_ids for s in whole.stages] == [s.seen_ids for s in resumed.stages]
    a = load_file(str(resumed.adapter_dir / "adapter_model.safetensors"))
    b = load_file(str(whole.adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # the same adapter as a run that was never stopped
        assert torch.allclose(a[k], b[k], atol=1e-5), k
