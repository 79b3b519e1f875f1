"""Step-level preference training with TRL + LoRA on hand-made pairs (a right call preferred to
a wrong one): data layout, reference = the previous policy, margin up, one servable adapter,
and each loss variant."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from itool_ray.data import Sample, render_prompt
from itool_ray.mcts.pairs import Pair
from itool_ray.train import (
    LOSSES,
    DPOSettings,
    LossUnavailableError,
    loss_unavailable_reason,
    make_preference_trainer,
    pairs_to_dataset,
    train_dpo,
)
from itool_ray.train._common import encode, load_base, load_policy
from itool_ray.train.perplexity import response_logprobs

from .conftest import CITIES, CONVERT, THREADS, TIME, WEATHER, ZONES

TOOLS = (WEATHER, TIME, CONVERT)

FAST = {"batch_size": 2, "max_length": 1024, "cpu_threads": THREADS}


def _pair(
    i: int, prefix: str, chosen: str, rejected: str, user: str, ids=None, tokenizer=None
) -> Pair:
    cid, rid = ids or ((), ())
    prefix_ids = tuple(encode(tokenizer, prefix)) if tokenizer is not None else None
    return Pair(
        prompt_messages=({"role": "user", "content": user},),
        tools=TOOLS,
        prefix=prefix,
        chosen=chosen,
        rejected=rejected,
        chosen_token_ids=tuple(cid),
        rejected_token_ids=tuple(rid),
        chosen_q=1.2,
        rejected_q=-0.4,
        chosen_n=3,
        rejected_n=1,
        tree_id=f"tree-{i}",
        node_id=0 if not prefix else 2,
        depth=0 if not prefix else 1,
        policy_version=0,
        prefix_token_ids=prefix_ids,
    )


@pytest.fixture(scope="module")
def pairs(tokenizer) -> list[Pair]:
    """Root pairs (the weather call preferred to a currency conversion nobody asked for) and
    second-step pairs after a correct first call (the time call preferred to a conversion).

    The wrong step is a ``convert`` call in both kinds. A random tiny model barely tells its
    contexts apart, so pairs that prefer a call in one context and reject the same call in
    another (get_time wrong at the root, right at step two) cancel out in its LoRA update;
    a real model learns both, the tiny one would not show a clean margin."""
    out = []
    for i, (city, zone) in enumerate(zip(CITIES, ZONES, strict=True)):
        out.append(
            _pair(
                i,
                "",
                f'[get_weather(city="{city}")]',
                '[convert(amount=1, unit="EUR")]',
                f"Weather in {city}?",
                tokenizer=tokenizer,
            )
        )
        out.append(
            _pair(
                i + 10,
                f'[get_weather(city="{city}"), ',
                f'get_time(zone="{zone}")]',
                'convert(amount=2, unit="USD")]',
                f"Weather and time in {city}?",
                tokenizer=tokenizer,
            )
        )
    return out


def _step_logps(model, tokenizer, dataset) -> list[tuple[float, float]]:
    out = []
    for row in dataset:
        c, r = response_logprobs(
            model,
            [row["prompt_ids"]] * 2,
            [row["chosen_ids"], row["rejected_ids"]],
            tokenizer.pad_token_id,
        )
        out.append((sum(c), sum(r)))
    return out


def test_pairs_to_dataset_layout(pairs, tokenizer):
    sampled = encode(tokenizer, pairs[1].chosen)  # as if the policy had sampled these ids
    with_ids = _pair(
        99,
        pairs[1].prefix,
        pairs[1].chosen,
        pairs[1].rejected,
        "Weather and time in Paris?",
        ids=(sampled, encode(tokenizer, pairs[1].rejected)),
        tokenizer=tokenizer,
    )
    ds = pairs_to_dataset([pairs[0], pairs[1], with_ids], tokenizer)
    sample = Sample(id="x", tools=TOOLS, messages=pairs[1].prompt_messages, gold="")
    chat = render_prompt(sample, tokenizer)
    row = ds[1]
    assert row["prompt"] == chat + pairs[1].prefix
    assert row["prompt_ids"] == encode(tokenizer, chat) + encode(tokenizer, pairs[1].prefix)
    # steps are raw continuations: no template, no EOS appended
    assert row["chosen_ids"] == encode(tokenizer, pairs[1].chosen)
    assert tokenizer.decode(row["chosen_ids"]) == 'get_time(zone="Europe/Paris")]'
    eos = tokenizer.eos_token_id
    assert eos not in row["chosen_ids"] and eos not in row["rejected_ids"]
    assert ds[0]["prompt"] == render_prompt(
        Sample(id="y", tools=TOOLS, messages=pairs[0].prompt_messages, gold=""), tokenizer
    )
    assert ds[2]["chosen_ids"] == sampled
    assert (ds[1]["tree_id"], ds[1]["depth"], ds[1]["chosen_q"]) == ("tree-10", 1, 1.2)
    with pytest.raises(ValueError, match="empty"):
        pairs_to_dataset([_pair(0, "", "", "x", "q")], tokenizer)


def test_pair_score_and_split_by_tree(pairs):
    from itool_ray.mcts import split_by_tree
    from itool_ray.train.dpo import PairScore

    s = PairScore.of([(-1.0, -3.0), (-2.0, -1.0)], [(-2.0, -2.0), (-2.0, -2.0)])
    assert (s.n, s.accuracy, s.mean_margin) == (2, 0.5, ((1 + 1) + (0 - 1)) / 2)
    train, held = split_by_tree(pairs, 0.3, seed=1)
    assert train and held and len(train) + len(held) == len(pairs)
    assert not {p.tree_id for p in train} & {p.tree_id for p in held}
    assert split_by_tree(pairs, 0.3, seed=1) == (train, held)  # deterministic
    assert split_by_tree(pairs, 0.0) == (list(pairs), [])


def test_training_rows_hold_the_sampled_prefix_ids(pairs, tokenizer):
    """A prefix sampled one character per token decodes to the same text as the tokenizer's
    own encoding but is another token sequence: the row must hold the sampled one."""
    p = pairs[1]
    canonical = encode(tokenizer, p.prefix)
    sampled = [t for ch in p.prefix for t in encode(tokenizer, ch)]
    assert sampled != canonical and tokenizer.decode(sampled) == tokenizer.decode(canonical)
    pair = replace(p, prefix_token_ids=tuple(sampled))
    (row,) = pairs_to_dataset([pair], tokenizer)
    chat = encode(
        tokenizer,
        render_prompt(Sample(id="x", tools=TOOLS, messages=p.prompt_messages, gold=""), tokenizer),
    )
    assert row["prompt_ids"] == chat + sampled
    (re_encoded,) = pairs_to_dataset([pair], tokenizer, use_token_ids=False)
    assert re_encoded["prompt_ids"] == chat + canonical  # the ablation re-encodes
    with pytest.raises(ValueError, match="prefix_token_ids"):
        pairs_to_dataset([replace(p, prefix_token_ids=None)], tokenizer)


def test_reference_is_a_frozen_copy_of_the_incoming_adapter(
    sft_run, tiny_model_dir, pairs, tokenizer, tmp_path
):
    model = load_policy(tiny_model_dir, sft_run.adapter_dir, None, torch.float32)
    settings = DPOSettings(lr=1e-2, max_steps=2, **FAST)
    trainer = make_preference_trainer(
        model, tokenizer, pairs_to_dataset(pairs, tokenizer), settings, tmp_path
    )
    assert set(model.peft_config) == {"default", "ref"}
    ref = {n: p.detach().clone() for n, p in model.named_parameters() if ".ref." in n}
    default = {n: p.detach().clone() for n, p in model.named_parameters() if ".default." in n}
    assert ref and all(not p.requires_grad for n, p in model.named_parameters() if ".ref." in n)
    for n, p in ref.items():  # the reference starts equal to the policy
        assert torch.equal(p, default[n.replace(".ref.", ".default.")])
    trainer.train()
    for n, p in model.named_parameters():
        if ".ref." in n:
            assert torch.equal(p, ref[n]), f"reference weight {n} moved"
        elif ".default." in n and "lora_" in n:
            assert not torch.equal(p, default[n]), f"policy weight {n} did not move"


def test_dpo_raises_the_margin_from_an_sft_adapter(
    sft_run, tiny_model_dir, pairs, tokenizer, tmp_path
):
    from peft import PeftModel

    settings = DPOSettings(lr=5e-3, epochs=3, **FAST)
    result = train_dpo(
        tiny_model_dir, sft_run.adapter_dir, pairs, tmp_path, settings, heldout=pairs[:3]
    )
    assert result.pairs == len(pairs) and result.steps == 3 * math.ceil(len(pairs) / 2)
    # reference = the SFT policy itself: at the first step the policy equals it exactly
    assert abs(result.first_margin) < 1e-5
    assert result.first_loss == pytest.approx(math.log(2), abs=1e-5)
    # logged per batch of 2 pairs, before that step's update
    assert result.last_margin > result.first_margin + 0.5, result.margins
    assert result.last_loss < result.first_loss - 0.2, result.losses

    # one PEFT adapter relative to the original base, loadable as is
    adapter = result.adapter_dir
    assert sorted(p.name for p in adapter.iterdir() if p.is_dir()) == []
    before = PeftModel.from_pretrained(
        load_base(tiny_model_dir, torch.float32), sft_run.adapter_dir
    )
    after = PeftModel.from_pretrained(load_base(tiny_model_dir, torch.float32), adapter)
    x = tokenizer('[get_weather(city="Paris")]', return_tensors="pt")
    with torch.no_grad():
        assert not torch.allclose(before(**x).logits, after(**x).logits, atol=1e-4)
    # measured outside TRL: log p(chosen) - log p(rejected) grew on every pair
    ds = pairs_to_dataset(pairs, tokenizer)
    with torch.no_grad():
        old = _step_logps(before, tokenizer, ds)
        new = _step_logps(after, tokenizer, ds)
    for (oc, orj), (nc, nr) in zip(old, new, strict=True):
        assert nc - nr > oc - orj
    # the stage's own post-training score agrees: trained policy vs its reference (the SFT)
    margins = [(nc - oc) - (nr - orj) for (oc, orj), (nc, nr) in zip(old, new, strict=True)]
    score = result.trained_pairs
    assert (score.n, score.accuracy, score.when) == (len(pairs), 1.0, "after")
    assert score.mean_margin == pytest.approx(sum(margins) / len(margins), rel=1e-3)
    assert result.heldout_pairs.n == 3
    assert result.heldout_pairs.mean_margin == pytest.approx(sum(margins[:3]) / 3, rel=1e-3)
    assert result.to_dict()["trained_pairs"]["accuracy"] == 1.0


@pytest.mark.parametrize("loss", ["ipo", "simpo", "orpo"])
def test_loss_variants_run_one_step(loss, sft_run, tiny_model_dir, pairs, tmp_path):
    reason = loss_unavailable_reason(loss)
    if reason is not None:
        pytest.skip(f"{loss} not available in this TRL: {reason}")
    settings = DPOSettings(loss=loss, lr=1e-2, max_steps=1, **FAST)
    result = train_dpo(tiny_model_dir, sft_run.adapter_dir, pairs, tmp_path, settings)
    assert result.steps == 1 and result.loss == loss
    assert len(result.losses) == 1 and math.isfinite(result.losses[0])
    assert len(result.margins) == 1 and math.isfinite(result.margins[0])
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    if loss == "ipo":  # (0 - 1 / (2 beta)) ** 2 at the first step: policy == reference
        assert result.losses[0] == pytest.approx(25.0, abs=1e-3)


def test_unavailable_loss_says_why(monkeypatch, pairs, tiny_model_dir, tmp_path):
    def missing():
        raise LossUnavailableError("trl x.y has no trl.experimental.orpo")

    monkeypatch.setitem(LOSSES, "orpo", replace(LOSSES["orpo"], probe=missing))
    assert "no trl.experimental.orpo" in loss_unavailable_reason("orpo")
    with pytest.raises(LossUnavailableError, match="'orpo' is not available: trl x.y"):
        train_dpo(tiny_model_dir, None, pairs, tmp_path, DPOSettings(loss="orpo", **FAST))
    assert "unknown loss" in loss_unavailable_reason("kto")


def test_fresh_adapter_uses_the_base_as_reference(tiny_model_dir, pairs, tmp_path):
    settings = DPOSettings(lr=1e-2, max_steps=2, **FAST)
    result = train_dpo(tiny_model_dir, None, pairs, tmp_path, settings)
    assert result.steps == 2 and abs(result.first_margin) < 1e-6
    assert result.last_margin > result.first_margin


def test_nan_weights_fail_preference_training_before_saving(tiny_model_dir, pairs, tmp_path):
    from transformers import TrainerCallback

    from itool_ray.train._common import NonFiniteTrainingError

    class Poison(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            with torch.no_grad():
                next(p for n, p in model.named_parameters() if "lora_A" in n).fill_(float("nan"))

    settings = DPOSettings(lr=1e-3, epochs=2, **FAST)
    with pytest.raises(NonFiniteTrainingError):
        train_dpo(tiny_model_dir, None, pairs, tmp_path, settings, callbacks=[Poison()])
    assert not (tmp_path / "adapter").exists()


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_a_stopped_round_continues_from_its_last_checkpoint(
    shared_prefix, sft_run, tiny_model_dir, pairs, tmp_path, monkeypatch
):
    """A round stopped after its second optimizer step resumes from that checkpoint and ends
    where an uninterrupted round ends (same losses, same adapter); a finished round leaves no
    checkpoint; a round with other settings does not resume another's checkpoint. The
    reference's scores of the pairs are kept for the resume and given to TRL as its
    precomputed reference: no reference pass runs again, with either forward."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    settings = DPOSettings(lr=5e-3, max_steps=4, shared_prefix=shared_prefix, **FAST)
    whole = train_dpo(tiny_model_dir, sft_run.adapter_dir, pairs, tmp_path / "whole", settings)
    left = [p.name for p in (tmp_path / "whole" / "runs").glob("*")]
    assert whole.resumed_at == 0 and not [n for n in left if n.startswith("checkpoint-")]
    assert "reference.json" not in left and "ROUND" not in left

    class StopAfterTwo(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise RuntimeError("stopped at step 2")

    out = tmp_path / "stopped"
    with pytest.raises(RuntimeError, match="stopped at step 2"):
        train_dpo(
            tiny_model_dir, sft_run.adapter_dir, pairs, out, settings, callbacks=[StopAfterTwo()]
        )
    assert [c.name for c in (out / "runs").glob("checkpoint-*")] == ["checkpoint-2"]
    assert (out / "runs" / "reference.json").is_file()
    import itool_ray.train.dpo as dpo_module
    import itool_ray.train.shared_prefix as shared_module

    calls, shared_calls = [], []
    scorer, shared_scorer = dpo_module.pair_logps, shared_module.pair_logps_shared
    monkeypatch.setattr(
        dpo_module, "pair_logps", lambda *a, **k: calls.append(1) or scorer(*a, **k)
    )
    monkeypatch.setattr(
        shared_module,
        "pair_logps_shared",
        lambda *a, **k: shared_calls.append(1) or shared_scorer(*a, **k),
    )
    resumed = train_dpo(tiny_model_dir, sft_run.adapter_dir, pairs, out, settings)
    # only the trained pairs' score after the update: no reference pass, in TRL's either
    assert len(calls) == 1 and len(shared_calls) == int(shared_prefix)
    monkeypatch.undo()
    assert resumed.resumed_at == 2 and resumed.steps == 4
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-5)
    a = load_file(whole.adapter_dir / "adapter_model.safetensors")
    b = load_file(resumed.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert resumed.trained_pairs.accuracy == whole.trained_pairs.accuracy

    with pytest.raises(RuntimeError, match="stopped at step 2"):
        train_dpo(
            tiny_model_dir, sft_run.adapter_dir, pairs, out, settings, callbacks=[StopAfterTwo()]
        )
    other = train_dpo(tiny_model_dir, sft_run.adapter_dir, pairs, out, replace(settings, lr=1e-3))
    assert other.resumed_at == 0 and other.steps == 4
