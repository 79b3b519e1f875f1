"""Settings: defaults, validation errors naming the field, dict round trip."""

from __future__ import annotations

import pytest

from itool_ray.train import LOSS_NAMES, DPOSettings, LoraSettings, SFTSettings


def test_defaults():
    assert LoraSettings() == LoraSettings(r=8, alpha=16, dropout=0.0, target_modules="all-linear")
    assert SFTSettings().order == "easy_to_hard"
    assert DPOSettings().beta == 0.1 and DPOSettings().loss == "dpo"
    assert set(LOSS_NAMES) == {"dpo", "ipo", "simpo", "orpo"}


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (LoraSettings, {"r": 0}, "r"),
        (LoraSettings, {"dropout": 1.0}, "dropout"),
        (LoraSettings, {"target_modules": []}, "target_modules"),
        (SFTSettings, {"lr": 0.0}, "lr"),
        (SFTSettings, {"lr": float("nan")}, "lr"),
        (SFTSettings, {"batch_size": 0}, "batch_size"),
        (SFTSettings, {"order": "hard_to_easy"}, "order"),
        (SFTSettings, {"max_steps": 0}, "max_steps"),
        (SFTSettings, {"warmup_ratio": 1.0}, "warmup_ratio"),
        (SFTSettings, {"lr_scheduler": "nope"}, "lr_scheduler"),
        (DPOSettings, {"beta": -1.0}, "beta"),
        (DPOSettings, {"loss": "kto"}, "loss"),
        (DPOSettings, {"simpo_gamma": -0.1}, "simpo_gamma"),
        (DPOSettings, {"epochs": 0}, "epochs"),
    ],
)
def test_invalid_values_name_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field}\b"):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (SFTSettings, {"batch_size": 2.5}, "batch_size"),
        (SFTSettings, {"gradient_checkpointing": 1}, "gradient_checkpointing"),
        (DPOSettings, {"max_length": True}, "max_length"),
        (LoraSettings, {"r": "8"}, "r"),
    ],
)
def test_wrong_types_name_the_field(cls, kwargs, field):
    with pytest.raises(TypeError, match=rf"{cls.__name__}\.{field}\b"):
        cls(**kwargs)


def test_dict_round_trip_and_unknown_keys():
    s = DPOSettings(loss="ipo", beta=0.3, max_steps=5)
    assert DPOSettings.from_dict(s.to_dict()) == s
    lora = LoraSettings(target_modules=["q_proj", "v_proj"])
    assert lora.target_modules == ("q_proj", "v_proj")
    assert LoraSettings.from_dict(lora.to_dict()) == lora
    with pytest.raises(ValueError, match="unknown fields \\['lr_rate'\\]"):
        SFTSettings.from_dict({"lr_rate": 1e-4})


def test_lora_to_peft():
    cfg = LoraSettings(r=4, alpha=8, dropout=0.1).to_peft()
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (4, 8, 0.1)
    assert cfg.target_modules == "all-linear"
