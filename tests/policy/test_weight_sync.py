"""Full-weight sync in buckets: the bucketing, a real vLLM (CPU) engine loading another
model's weights without a restart, and the pool's broadcast / restart path."""

from __future__ import annotations

import asyncio

import pytest
import torch

from itool_ray.policy.weight_sync import buckets


def test_buckets_keep_order_and_bound_size():
    named = [(f"w{i}", torch.zeros(256, dtype=torch.float32)) for i in range(5)]  # 1 KiB each
    named.insert(2, ("big", torch.zeros(1024, dtype=torch.float32)))  # 4 KiB: alone
    out = list(buckets(named, bucket_mb=2.5 / 1024))  # 2.5 KiB
    assert [[n for n, _ in b] for b in out] == [["w0", "w1"], ["big"], ["w2", "w3"], ["w4"]]
    assert all(t.is_contiguous() and t.device.type == "cpu" for b in out for _, t in b)
    with pytest.raises(ValueError, match="bucket_mb"):
        list(buckets(named, bucket_mb=0))


@pytest.mark.vllm
def test_engine_serves_new_full_weights_without_restart(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from itool_ray.models.tiny import TinyModelSpec, build_tiny_model
    from itool_ray.policy import EngineConfig, VLLMPolicy

    other_dir = build_tiny_model(tmp_path / "tiny-seed1", TinyModelSpec(seed=1))
    other = AutoModelForCausalLM.from_pretrained(str(other_dir), dtype=torch.float32)
    prompt = list(range(5, 40))

    def hf_greedy(model) -> list[int]:
        out = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                             min_new_tokens=12)  # fmt: skip
        return out[0, len(prompt) :].tolist()

    policy = VLLMPolicy(EngineConfig(model=str(tiny_model_dir), dtype="float32",
                                     max_model_len=512, enable_lora=False, weight_sync=True))  # fmt: skip
    try:

        def greedy() -> list[int]:
            (c,) = policy.generate([prompt], n=1, max_tokens=12, temperature=0.0)[0]
            return list(c.token_ids)

        before = greedy()  # also fills the prefix cache with the old weights' KV blocks
        state = other.state_dict()
        parts = list(buckets(state.items(), bucket_mb=0.25))
        assert len(parts) > 3  # really in buckets, not one call
        loaded = sum(policy.load_weight_bucket(b) for b in parts)
        assert loaded == len(state)
        assert policy.finish_weight_update(7) == 7 and policy.version == 7
        after = greedy()
        assert after != before
        assert after == hf_greedy(other)  # the engine now computes exactly the other model
    finally:
        policy.close()


class _Method:
    def __init__(self, fn) -> None:
        self._fn = fn

    def remote(self, *args):
        return asyncio.ensure_future(self._fn(*args))


class _FakeReplica:
    """A FAKE replica handle recording what it was asked to load."""

    def __init__(self, name: str, version: int = 0) -> None:
        self.name, self.version, self.loads = name, version, []
        self.info = _Method(self._info)
        self.load_full_weights = _Method(self._load_full)
        self.load_policy = _Method(self._load_policy)

    async def _info(self):
        return {"version": self.version, "incarnation": self.name}

    async def _load_full(self, version, refs):
        self.loads.append(("weights", version, list(refs)))
        self.version = version
        return len(refs)

    async def _load_policy(self, version, adapter):
        self.loads.append(("adapter", version, adapter))
        self.version = version
        return version


def test_pool_broadcasts_weights_and_restarted_replicas_catch_up():
    from itool_ray.rollout import ReplicaPool

    a, b = _FakeReplica("a"), _FakeReplica("b")
    pool = ReplicaPool([("a", a), ("b", b)])
    seconds = asyncio.run(pool.broadcast_weights(3, ["ref0", "ref1"]))
    assert seconds >= 0 and pool.version == 3 and pool.adapter is None
    assert a.loads == b.loads == [("weights", 3, ["ref0", "ref1"])]
    b.version = 0  # restarted: a fresh engine at the base weights
    asyncio.run(pool.sync(1))
    assert b.loads[-1] == ("weights", 3, ["ref0", "ref1"])
    # a later adapter broadcast switches the pool back to the LoRA path
    asyncio.run(pool.broadcast(4, "adapter-payload"))
    assert pool.weights is None and a.loads[-1] == ("adapter", 4, "adapter-payload")
