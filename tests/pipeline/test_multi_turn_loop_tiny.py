"""The iTool loop on multi-turn tasks end to end on the tiny model (``-m slow``): real vLLM
replica, warm-up SFT on the gold messages of synthesized multi-turn tasks, hard entries by
perplexity, MCTS in the multi-turn environment (calls executed, tool results in the prompt),
DPO on its token-exact pairs, evaluation on BFCL's multi_turn_base with its official checker.

The tiny model's tokenizer spends 6-16k tokens on these prompts (the classes' function docs),
so the test builds it with a 32k context; its two layers keep every stage to seconds. The same
loop on SmolLM2 is ``test_multi_turn_loop.py`` (``-m long``)."""

from __future__ import annotations

import json

import pytest

from itool_ray.config import load_config
from itool_ray.pipeline import MT_HARD, ITOolConfig, run_itool
from itool_ray.rollout import read_pairs
from tests.conftest import TINY_LONG_CONTEXT
from tests.rollout.conftest import one_long_replica

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

CONTEXT = TINY_LONG_CONTEXT


def test_multi_turn_iteration_trains_dpo_on_token_exact_conversation_pairs(
    ray_local, tiny_long_dir, tmp_path
):
    from transformers import AutoTokenizer

    from itool_ray.data import Sample, render_prompt
    from itool_ray.envs.synth_multi_turn import read_multi_turn

    run_dir = tmp_path / "run"
    cfg = load_config(
        ITOolConfig,
        None,
        [
            f"run_dir={run_dir}",
            f"model={tiny_long_dir}",
            "data.train=synth-multi-turn",
            "data.num_samples=6",
            "data.reinforce_fraction=0.34",
            "data.heldout={bfcl/multi_turn_base: 2, synth-multi-turn: 2}",
            *one_long_replica(CONTEXT),
            "engine.max_lora_rank=8",
            "mcts={k: 2, simulations: 3, max_inflight: 2, max_step_tokens: 24, max_depth: 3}",
            "train.iterations=1",
            "train.alpha=1.0",
            "train.heldout_pairs=0",
            "train.lora={r: 8, alpha: 16}",
            f"train.sft={{max_steps: 2, batch_size: 1, grad_accum: 1, max_length: {CONTEXT}, "
            "lr: 0.01}",
            f"train.dpo={{max_steps: 2, batch_size: 1, grad_accum: 1, max_length: {CONTEXT}, "
            "lr: 0.01}",
            "eval.max_tokens=24",
        ],
    )
    table = run_itool(cfg)
    assert list(table) == ["base", "sft", "iter1"]
    for row in table.values():  # judged, never skipped
        assert row["bfcl/multi_turn_base"]["n"] == 2
        assert row["synth-multi-turn"]["n"] == 2

    hard = read_multi_turn(run_dir / "iter1-select" / MT_HARD)
    assert len(hard) == 2  # alpha = 1: every reinforcement entry (2 of 6)
    pairs = read_pairs(run_dir / "iter1-mcts" / "pairs.jsonl")
    assert pairs, "the multi-turn trees gave no pair"
    assert {p.tree_id for p in pairs} <= {e.id for e in hard}
    tok = AutoTokenizer.from_pretrained(str(tiny_long_dir))
    for p in pairs:  # a message step: no in-turn prefix; the prompt is the conversation so far
        assert p.prefix == "" and not p.prefix_token_ids
        assert any(m["role"] == "user" for m in p.prompt_messages)
        if p.depth > 0:
            assert any(m["role"] in ("assistant", "tool") for m in p.prompt_messages)
        # the sampled ids are what DPO trains on: each step's text decodes from them
        assert p.chosen_token_ids and p.rejected_token_ids
        decoded = tok.decode(p.chosen_token_ids, skip_special_tokens=True)
        assert decoded.strip() == p.chosen.strip()
        sample = Sample(
            id=p.tree_id, tools=tuple(p.tools), messages=tuple(p.prompt_messages), gold=""
        )
        assert "<|im_start|>user" in render_prompt(sample, tok)
    dpo = json.loads((run_dir / "iter1-dpo" / "DONE").read_text())
    assert "skipped" not in dpo and dpo["pairs"] >= 1 and dpo["steps"] >= 1
    assert dpo["pairs"] + dpo["dropped"] == len(pairs) and not dpo["dropped"]  # none too long
    results = json.loads((run_dir / "iter1-eval" / "results.json").read_text())
    (part,) = [r for r in results if r["name"] == "bfcl/multi_turn_base"]
    assert len(part["records"]) == 2 and all(r["gold_calls"] >= 1 for r in part["records"])
