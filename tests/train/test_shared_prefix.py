"""Prefix-shared preference training against TRL's stock concatenated forward, on the tiny
model with an SFT adapter: the grouping and batching rules, per-row step log-probs, one
batch's loss and LoRA gradients for each loss (DPO, IPO, SimPO, ORPO), and whole train_dpo
runs with the shared forward on and off."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace

import pytest
import torch

from itool_ray.mcts.pairs import Pair
from itool_ray.train import DPOSettings, make_preference_trainer, pairs_to_dataset, train_dpo
from itool_ray.train._common import encode, load_policy
from itool_ray.train.shared_prefix import (
    SharedLayout,
    fused_preference_output,
    group_by_prefix,
    pair_logps_shared,
    shared_token_logps,
    split_per_sequence,
    tree_grouped_order,
)

from .conftest import CITIES, CONVERT, THREADS, TIME, WEATHER, ZONES

TOOLS = (WEATHER, TIME, CONVERT)
ATOL = 1e-5  # per token (float32)
SUM_TOL = 1e-4  # a step's summed log-prob (tens of nats, float32 sums in another order)


def _tree_pairs(tokenizer, i: int, city: str, zone: str) -> list[Pair]:
    """Four pairs of one tree (one query): two at the root (one node), one at depth 1 and
    one at depth 2, steps of different lengths."""
    calls = [f'[get_weather(city="{city}"), ', f'get_time(zone="{zone}"), ', "convert("]
    steps = [
        (calls[0], '[convert(amount=1, unit="EUR"), '),
        (f'[get_weather(city="{city}")]', "[get_time("),
        (calls[1], f'get_weather(city="{city}")]'),
        ('amount=3, unit="USD")]', "amount=1)]"),
    ]
    prefixes = ["", "", calls[0], calls[0] + calls[1] + calls[2]]
    out = []
    for k, (prefix, (chosen, rejected)) in enumerate(zip(prefixes, steps, strict=True)):
        out.append(
            Pair(
                prompt_messages=({"role": "user", "content": f"Weather and time in {city}?"},),
                tools=TOOLS,
                prefix=prefix,
                chosen=chosen,
                rejected=rejected,
                chosen_token_ids=tuple(encode(tokenizer, chosen)),
                rejected_token_ids=tuple(encode(tokenizer, rejected)),
                chosen_q=1.0,
                rejected_q=-0.5,
                chosen_n=2,
                rejected_n=1,
                tree_id=f"tree-{i}",
                node_id=[0, 0, 2, 5][k],
                depth=[0, 0, 1, 3][k],
                policy_version=0,
                prefix_token_ids=tuple(encode(tokenizer, prefix)),
            )
        )
    return out


@pytest.fixture(scope="module")
def pairs(tokenizer) -> list[Pair]:
    """Three trees of four pairs each (the main job's shape: several pairs per tree, at
    different depths)."""
    out = []
    for i, (city, zone) in enumerate(zip(CITIES, ZONES, strict=True)):
        out.extend(_tree_pairs(tokenizer, i, city, zone))
    return out


@pytest.fixture(scope="module")
def dataset(pairs, tokenizer):
    return pairs_to_dataset(pairs, tokenizer)


def _policy(tiny_model_dir, sft_run):
    return load_policy(tiny_model_dir, sft_run.adapter_dir, None, torch.float32)


# ---- the layout and batching rules (no model) ---------------------------------------------


def test_group_by_prefix_separates_trees_and_shares_nodes():
    rng = random.Random(0)
    chat_a = [rng.randrange(10, 400) for _ in range(200)]
    chat_b = chat_a[:30] + [rng.randrange(10, 400) for _ in range(180)]  # same system start
    prompts = [chat_b + [1, 2], chat_a, chat_a + [5, 6, 7], chat_b, chat_a]
    groups = group_by_prefix(prompts)
    assert [g.rows for g in groups] == [(0, 3), (1, 2, 4)]
    assert groups[0].shared == tuple(chat_b) and groups[1].shared == tuple(chat_a)
    layout = SharedLayout.for_pairs(prompts, [[9]] * 5, [[8, 8]] * 5)
    assert layout.group == (0, 1, 1, 0, 1) * 2
    assert layout.tails[0] == (1, 2, 9) and layout.tails[2] == (5, 6, 7, 9)
    assert layout.tails[5] == (1, 2, 8, 8) and layout.scored[:5] == (1,) * 5
    assert layout.scored[5:] == (2,) * 5 and layout.prefix_weight == (0, 0)
    # ORPO: whole chosen sequences, each group's prefix once per chosen row
    orpo = SharedLayout.for_pairs(prompts, [[9]] * 5, [[8]] * 5, score_chosen_prompt=True)
    assert orpo.scored[:5] == (3, 1, 4, 1, 1) and orpo.prefix_weight == (2, 3)
    # a lone row keeps its whole prompt as the prefix
    (alone,) = group_by_prefix([[3, 4, 5]])
    assert alone.shared == (3, 4, 5)
    with pytest.raises(ValueError, match="empty prompt"):
        group_by_prefix([[]])


def test_tree_grouped_order_keeps_trees_in_steps():
    trees = ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"] * 3 + ["e"]
    for seed in range(5):
        order = tree_grouped_order(trees, 4, random.Random(seed))
        assert sorted(order) == list(range(len(trees)))
        steps = [order[k : k + 4] for k in range(0, len(order), 4)]
        assert len(steps) == math.ceil(len(trees) / 4)
        # a tree that fits in the room left is never split: a, b, d whole; 13 rows in 4 steps
        split = Counter(t for s in steps for t in {trees[i] for i in s})
        assert split["a"] == split["b"] == split["d"] == 1, (seed, steps)
    assert tree_grouped_order(trees, 4, random.Random(1)) == tree_grouped_order(
        trees, 4, random.Random(1)
    )
    big = tree_grouped_order(["x"] * 9, 4, random.Random(0))
    assert sorted(big) == list(range(9))


# ---- the forward against TRL's -----------------------------------------------------------


def test_shared_logps_equal_the_stock_concatenated_forward(
    tiny_model_dir, sft_run, tokenizer, dataset, tmp_path
):
    model = _policy(tiny_model_dir, sft_run)
    settings = DPOSettings(batch_size=12, max_length=1024, shared_prefix=False, cpu_threads=THREADS)
    trainer = make_preference_trainer(model, tokenizer, dataset, settings, tmp_path)
    rows = [
        {k: dataset[i][k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
        for i in range(len(dataset))
    ]
    batch = trainer.data_collator(rows)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    model.eval()
    with torch.no_grad():
        stock = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=labels,
            fused_lm_head=True,
        )
        shared = fused_preference_output(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            labels,
            ("log_probs", "entropy", "mean_logits", "is_top1"),
        )
    diffs = {}
    for name in ("log_probs", "entropy", "mean_logits"):
        diffs[name] = (getattr(stock, name) - getattr(shared, name)).abs().max().item()
    sums = (stock.log_probs.sum(1) - shared.log_probs.sum(1)).abs().max().item()
    print(f"per-token max abs diff {diffs}, per-row summed log-prob max abs diff {sums:.2e}")
    assert max(diffs.values()) < ATOL and sums < SUM_TOL
    assert torch.equal(stock.is_top1, shared.is_top1)
    # the 3 trees offer the same tools and differ only in the query's city, near the end of
    # the prompt: one shared prefix is cheaper than three
    prompts = [r["prompt_ids"] for r in rows]
    layout = SharedLayout.for_pairs(
        prompts, [r["chosen_ids"] for r in rows], [r["rejected_ids"] for r in rows]
    )
    assert len(layout.prefixes) == 1 and len(layout.tails) == 24
    assert len(layout.prefixes[0]) > 0.9 * min(len(p) for p in prompts)
    # the scorer used for the reference and for PairScore agrees with the stock one
    with torch.no_grad():
        lp = shared_token_logps(model, layout)["log_probs"]
    per_seq = [float(x.sum()) for x in split_per_sequence(lp, layout)]
    scored = pair_logps_shared(model, list(dataset), 1024, batch_pairs=4)
    from itool_ray.train.dpo import pair_logps

    one_by_one = pair_logps(model, dataset, tokenizer.pad_token_id, 1024)
    gap = max(
        abs(a - b)
        for p, q in zip(scored, one_by_one, strict=True)
        for a, b in zip(p, q, strict=True)
    )
    print(f"PairScore log-probs: shared vs one pair per forward, max abs diff {gap:.2e}")
    assert gap < SUM_TOL and abs(per_seq[0] - one_by_one[0][0]) < SUM_TOL


def _batch_loss_and_grads(trainer, model, rows, micro: int):
    """Loss of one optimizer step over ``rows`` and the trained LoRA weights' gradients,
    as the training loop computes them: micro-batches of ``micro`` rows, each loss divided
    by their count (a shared-forward trainer gets the whole step as one batch)."""
    model.train()
    model.zero_grad(set_to_none=True)
    parts = [rows[a : a + micro] for a in range(0, len(rows), micro)]
    total = 0.0
    for part in parts:
        inputs = trainer._prepare_inputs(trainer.data_collator(part))
        loss = trainer.compute_loss(model, inputs) / len(parts)
        loss.backward()
        total += loss.item()
    grads = {
        n: p.grad.detach().clone()
        for n, p in model.named_parameters()
        if p.requires_grad and p.grad is not None
    }
    return total, grads


_COLUMNS = {
    "dpo": ("prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps"),
}


@pytest.mark.parametrize(
    ("loss", "checkpointing"),
    [("dpo", False), ("ipo", False), ("simpo", False), ("orpo", False)]
    + [("dpo", True), ("orpo", True)],  # the packed forward (gradient checkpointing)
)
def test_loss_and_lora_gradients_equal_the_stock_forward(
    loss, checkpointing, tiny_model_dir, sft_run, tokenizer, dataset, tmp_path
):
    from itool_ray.train import loss_unavailable_reason
    from itool_ray.train.shared_prefix import PACKED_ATTENTION

    if (why := loss_unavailable_reason(loss)) is not None:
        pytest.skip(why)
    # 6 pairs: two trees of 4 rows cut by a step of 6, micro-batches of 2 (accumulation 3)
    idx = [0, 1, 2, 3, 4, 5]
    base = DPOSettings(
        loss=loss,
        beta=0.5,
        batch_size=2,
        grad_accum=3,
        max_length=1024,
        cpu_threads=THREADS,
        gradient_checkpointing=checkpointing,
    )
    results = {}
    for shared in (False, True):
        model = _policy(tiny_model_dir, sft_run)
        settings = replace(base, shared_prefix=shared)
        trainer = make_preference_trainer(
            model, tokenizer, dataset, settings, tmp_path / str(shared)
        )
        if checkpointing:  # as Trainer.train sets it up
            model.gradient_checkpointing_enable(trainer.args.gradient_checkpointing_kwargs)
            model.enable_input_require_grads()
        data = trainer.train_dataset
        keep = _COLUMNS.get(loss if loss != "ipo" else "dpo")
        if keep is None:  # CPO / ORPO rows: their tokenised columns
            keep = [
                c
                for c in data.column_names
                if c.endswith(("_input_ids", "_attention_mask", "_labels"))
            ]
        keep = [c for c in keep if c in data.column_names]
        rows = [{c: data[i][c] for c in keep} for i in idx]
        micro = len(idx) if shared else settings.batch_size
        results[shared] = _batch_loss_and_grads(trainer, model, rows, micro)
        packed = model.get_base_model().config._attn_implementation == PACKED_ATTENTION
        assert packed == (shared and checkpointing)
    (loss_s, grads_s), (loss_t, grads_t) = results[False], results[True]
    assert grads_s and set(grads_s) == set(grads_t)
    assert all(".default." in n for n in grads_s)
    gap = max((grads_s[n] - grads_t[n]).abs().max().item() for n in grads_s)
    scale = max(grads_s[n].abs().max().item() for n in grads_s)
    print(
        f"{loss}: loss {loss_s:.6f} vs {loss_t:.6f} (diff {abs(loss_s - loss_t):.2e}), "
        f"LoRA grad max abs diff {gap:.2e} (max |grad| {scale:.2e})"
    )
    assert abs(loss_s - loss_t) < ATOL
    assert scale > 0 and gap < ATOL * max(1.0, scale)


@pytest.mark.parametrize("loss", ["dpo", "orpo"])
def test_train_dpo_with_and_without_shared_prefix_gives_the_same_run(
    loss, tiny_model_dir, sft_run, pairs, tmp_path
):
    from itool_ray.train import loss_unavailable_reason

    if (why := loss_unavailable_reason(loss)) is not None:
        pytest.skip(why)
    base = DPOSettings(
        loss=loss,
        lr=5e-3,
        epochs=2,
        batch_size=2,
        grad_accum=2,
        max_length=1024,
        seed=3,
        cpu_threads=THREADS,
    )
    runs = {
        shared: train_dpo(
            tiny_model_dir,
            sft_run.adapter_dir,
            pairs[:10],
            tmp_path / str(shared),
            replace(base, shared_prefix=shared),
            heldout=pairs[10:],
        )
        for shared in (False, True)
    }
    stock, shared = runs[False], runs[True]
    assert stock.steps == shared.steps == 2 * math.ceil(10 / 4)
    gap = max(abs(a - b) for a, b in zip(stock.losses, shared.losses, strict=True))
    print(f"{loss}: losses {stock.losses} vs {shared.losses}, max abs diff {gap:.2e}")
    assert gap < 1e-4
    assert stock.losses[-1] < stock.losses[0]  # it trained
    assert max(abs(x - y) for x, y in zip(stock.margins, shared.margins, strict=True)) < 1e-4
    # pair accuracy counts margins > 0: at the first step the policy is its reference, every
    # margin is 0 up to rounding (1e-7) and its sign is the CPU's summation order, so the two
    # forwards agree on it from the second step on, once the update has moved the margins
    assert stock.accuracies[1:] == shared.accuracies[1:]
    for k in ("trained_pairs", "heldout_pairs"):
        s, t = getattr(stock, k), getattr(shared, k)
        assert s.n == t.n and abs(s.mean_margin - t.mean_margin) < 1e-3


def test_packed_forward_equals_the_cached_one_across_groups(tiny_model_dir, sft_run):
    """Several prefix groups, tails of one token (nothing but the prefix predicts them) and
    longer ones, ORPO's scored prefix: the packed forward (gradient checkpointing) gives the
    KV-cache forward's log-probs and LoRA gradients."""
    from itool_ray.train.shared_prefix import PACKED_ATTENTION, causal_lm

    rng = random.Random(4)
    chat_a = [rng.randrange(10, 400) for _ in range(60)]
    chat_b = [rng.randrange(10, 400) for _ in range(45)]
    prompts = [chat_a, chat_a + [7, 8], chat_b, chat_b + [9]]
    chosen = [[11], [12, 13, 14], [15, 16], [17]]
    rejected = [[21, 22], [23], [24, 25, 26, 27], [28, 29]]
    layout = SharedLayout.for_pairs(prompts, chosen, rejected, score_chosen_prompt=True)
    assert len(layout.prefixes) == 2
    out = {}
    for packed in (False, True):
        model = _policy(tiny_model_dir, sft_run)
        model.train()
        if packed:
            model.gradient_checkpointing_enable({"use_reentrant": False})
            model.enable_input_require_grads()
        model.zero_grad(set_to_none=True)
        values = shared_token_logps(model, layout, ("log_probs", "entropy"))
        (values["log_probs"].sum() + values["prefix_log_probs"].sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        impl = causal_lm(model).config._attn_implementation
        assert (impl == PACKED_ATTENTION) == packed
        out[packed] = ({k: v.detach() for k, v in values.items()}, grads)
    (cached, g_cached), (packed, g_packed) = out[False], out[True]
    for k in ("log_probs", "entropy", "prefix_log_probs"):
        assert cached[k].shape == packed[k].shape
        assert (cached[k] - packed[k]).abs().max().item() < ATOL
    assert g_cached and set(g_cached) == set(g_packed)
    gap = max((g_cached[n] - g_packed[n]).abs().max().item() for n in g_cached)
    assert gap < ATOL * max(1.0, max(g.abs().max().item() for g in g_cached.values()))
