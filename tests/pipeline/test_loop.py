"""The iTool loop end to end on the tiny model: real vLLM replicas, real MCTS on Ray, real TRL
SFT and DPO in the trainer actor, LoRA broadcast; stopped between stages and resumed."""

from __future__ import annotations

import json

import pytest

from itool_ray.config import load_config
from itool_ray.pipeline import ITOolConfig, run_itool
from tests.rollout.conftest import replica_env

pytestmark = pytest.mark.vllm


def _config(tiny_model_dir, run_dir, *extra: str) -> ITOolConfig:
    env = json.dumps(replica_env())
    return load_config(
        ITOolConfig,
        None,
        [
            f"model={tiny_model_dir}",
            f"run_dir={run_dir}",
            "data.num_samples=30",
            "data.reinforce_fraction=0.3",
            "data.heldout={synth: 4, bfcl/simple: 2}",
            "replicas.count=1",
            f"replicas.env={env}",
            "engine.dtype=float32",
            "engine.memory_fraction=0.1",
            "engine.max_logprobs=4096",
            "engine.cpu_kvcache_gb=1",
            "engine.max_lora_rank=8",
            "mcts={k: 3, simulations: 6, max_inflight: 2, max_step_tokens: 12, max_depth: 3, "
            "max_tokens: 256}",
            "manager.checkpoint_every_s=0.5",
            "train.iterations=1",
            "train.alpha=0.5",
            "train.lora={r: 8, alpha: 16}",
            "train.sft={max_steps: 2, batch_size: 2, max_length: 2048, lr: 0.01}",
            "train.dpo={max_steps: 2, batch_size: 2, max_length: 2048, lr: 0.01}",
            "eval.max_tokens=16",
            *extra,
        ],
    )


def test_one_iteration_stops_between_stages_and_resumes(ray_local, tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    logs: list[str] = []
    first = run_itool(_config(tiny_model_dir, run_dir, "stop_after=iter1-select"), log=logs.append)
    assert set(first) == {"base", "sft"}
    assert (run_dir / "iter1-select" / "DONE").is_file()
    assert not (run_dir / "iter1-mcts").exists()
    assert any("stopped after stage iter1-select" in line for line in logs)
    sft = json.loads((run_dir / "sft" / "DONE").read_text())
    assert [s["name"] for s in sft["stages"]] == ["easy", "medium", "hard"]

    logs.clear()
    table = run_itool(_config(tiny_model_dir, run_dir), log=logs.append)
    for stage in ("data", "eval-base", "sft", "eval-sft", "iter1-select"):
        assert f"[stage] {stage}: done earlier, reusing {run_dir / stage}" in logs
    for stage in ("iter1-mcts", "iter1-dpo", "iter1-eval"):
        assert f"[stage] {stage}: running" in logs
    assert list(table) == ["base", "sft", "iter1"]
    assert [table[k]["version"] for k in table] == [0, 1, 2]
    assert table["iter1"]["synth"]["n"] + table["iter1"]["bfcl/simple"]["n"] >= 1

    # hard samples: the top alpha by perplexity under the SFT policy
    sel = json.loads((run_dir / "iter1-select" / "selection.json").read_text())
    assert (
        json.loads((run_dir / "iter1-select" / "DONE").read_text())["perplexity_on"] == "replicas"
    )
    ppl = sel["perplexities"]
    assert sel["k"] == len(sel["chosen_ids"]) >= 1 and len(ppl) == 9
    assert min(ppl[i] for i in sel["chosen_ids"]) >= max(
        v for i, v in ppl.items() if i not in sel["chosen_ids"]
    )
    # MCTS ran on the SFT policy (version 1) over exactly the chosen samples
    pairs = [
        json.loads(x) for x in (run_dir / "iter1-mcts" / "pairs.jsonl").read_text().split("\n") if x
    ]
    assert pairs and {p["policy_version"] for p in pairs} == {1}
    assert {p["tree_id"] for p in pairs} <= set(sel["chosen_ids"])
    # DPO trained from the SFT adapter and the replicas switched to it without a restart
    dpo = json.loads((run_dir / "iter1-dpo" / "DONE").read_text())
    # whole trees held out of training (train.heldout_pairs) are scored after it
    assert dpo["pairs"] + (dpo["heldout_pairs"] or {}).get("n", 0) == len(pairs)
    assert dpo["trained_pairs"]["n"] == dpo["pairs"] and dpo["trained_pairs"]["when"] == "after"
    assert dpo["trained_trees"] + dpo["heldout_trees"] == len({p["tree_id"] for p in pairs})
    assert dpo["steps"] >= 1
    assert (run_dir / "iter1-dpo" / "adapter" / "adapter_model.safetensors").is_file()
    broadcasts = [json.loads(x) for x in (run_dir / "broadcasts.jsonl").read_text().splitlines()]
    assert [b["version"] for b in broadcasts][-1] == 2
