"""The iTool loop on multi-turn tasks end to end (``-m long``, by hand: tens of minutes on 2
CPU cores, prompts of 3.5-7.6k tokens; neither the default run nor CI's ``-m slow`` runs it):
SmolLM2 on real vLLM replicas, warm-up SFT on the gold messages of synthesized multi-turn
tasks, hard entries by perplexity, MCTS in the multi-turn environment (calls executed, tool
results in the prompt), DPO on its pairs, evaluation on BFCL's multi_turn_base with its
official checker."""

from __future__ import annotations

import json

import pytest

from itool_ray.config import load_config
from itool_ray.pipeline import MT_HARD, ITOolConfig, run_itool
from itool_ray.rollout import read_pairs
from tests.rollout.conftest import replica_env

pytestmark = [pytest.mark.vllm, pytest.mark.long]


def test_multi_turn_iteration_trains_on_pairs_whose_prompt_holds_the_conversation(
    ray_local, smollm2_dir, tmp_path
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
            "model=smollm2",
            "data.train=synth-multi-turn",
            "data.num_samples=4",
            "data.reinforce_fraction=0.25",
            "data.heldout={bfcl/multi_turn_base: 2}",
            "replicas.count=1",
            f"replicas.env={json.dumps(replica_env())}",
            "engine.max_model_len=8192",
            "engine.cpu_kvcache_gb=2",
            "mcts={k: 2, simulations: 1, max_inflight: 1, max_step_tokens: 48, max_depth: 2}",
            "train.iterations=1",
            "train.alpha=1.0",
            "train.heldout_pairs=0",
            "train.sft={max_steps: 1, batch_size: 1, grad_accum: 1, max_length: 8192, "
            "gradient_checkpointing: true}",
            "train.dpo={max_steps: 1, batch_size: 1, grad_accum: 1, max_length: 8192, "
            "gradient_checkpointing: true}",
            "eval.max_tokens=48",
        ],
    )
    table = run_itool(cfg)
    assert list(table) == ["base", "sft", "iter1"]
    for row in table.values():
        assert row["bfcl/multi_turn_base"]["n"] == 2  # judged, never skipped

    hard = read_multi_turn(run_dir / "iter1-select" / MT_HARD)
    assert len(hard) == 1  # alpha = 1: every reinforcement entry (1 of 4)
    pairs = read_pairs(run_dir / "iter1-mcts" / "pairs.jsonl")
    assert {p.tree_id for p in pairs} <= {e.id for e in hard}
    tok = AutoTokenizer.from_pretrained(str(smollm2_dir))
    for p in pairs:  # a message step: no in-turn prefix; the prompt is the conversation so far
        assert p.prefix == "" and not p.prefix_token_ids
        assert any(m["role"] == "user" for m in p.prompt_messages)
        if p.depth > 0:
            assert any(m["role"] in ("assistant", "tool") for m in p.prompt_messages)
        sample = Sample(
            id=p.tree_id, tools=tuple(p.tools), messages=tuple(p.prompt_messages), gold=""
        )
        assert "<|im_start|>user" in render_prompt(sample, tok)
    dpo = json.loads((run_dir / "iter1-dpo" / "DONE").read_text())
    if pairs:
        assert "skipped" not in dpo and dpo["pairs"] >= 1 and dpo["steps"] >= 1
    results = json.loads((run_dir / "iter1-eval" / "results.json").read_text())
    (part,) = [r for r in results if r["name"] == "bfcl/multi_turn_base"]
    assert len(part["records"]) == 2 and all(r["gold_calls"] >= 1 for r in part["records"])
