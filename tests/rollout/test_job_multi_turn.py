"""The rollout job on multi-turn tasks (real vLLM, tiny model): ``data`` naming a multi-turn
set runs the search in the multi-turn environment (the job picks it from the records), with
``mcts.outcome`` as its O."""

from __future__ import annotations

import pytest

from itool_ray.config import load_config
from tests.conftest import TINY_LONG_CONTEXT
from tests.rollout.conftest import one_long_replica

pytestmark = pytest.mark.vllm


def test_rollout_job_searches_multi_turn_tasks_in_their_environment(
    ray_local, tiny_long_dir, tmp_path
):
    from itool_ray.datasets import load_named
    from itool_ray.rollout import read_pairs
    from itool_ray.rollout.job import RolloutJobConfig, run_rollout_job

    out = tmp_path / "rollout"
    cfg = load_config(
        RolloutJobConfig,
        None,
        [
            f"model={tiny_long_dir}",
            "data=synth-multi-turn",
            "limit=2",
            f"out_dir={out}",
            *one_long_replica(TINY_LONG_CONTEXT),
            "mcts={k: 2, simulations: 2, max_inflight: 2, max_step_tokens: 16, max_depth: 2, "
            "outcome: graded}",
        ],
    )
    summary = run_rollout_job(cfg)
    assert summary["trees_finished"] == 2 and summary["failures"] == 0
    entries = {e.id: e for e in load_named("synth-multi-turn", limit=2, seed=0)}
    pairs = read_pairs(out / "pairs.jsonl")
    assert pairs, "no pair from two trees of k=2"
    for p in pairs:
        entry = entries[p.tree_id]
        # the conversation, not a single-turn sample: the entry's first user turn opens it,
        # every step starts a message of its own
        assert p.prompt_messages[0] == dict(entry.turns[0][0])
        assert p.prefix == "" and p.prefix_token_ids == ()
        assert p.chosen_token_ids and p.rejected_token_ids
