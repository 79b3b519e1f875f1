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


def test_pack_round_trips_every_dtype_byte_for_byte():
    from itool_ray.policy.weight_sync import pack, unpack

    src = [
        ("a", torch.randn(3, 4)),
        ("b", torch.randn(5).to(torch.bfloat16)),
        ("c", torch.arange(6, dtype=torch.int64).reshape(2, 3)),
    ]
    back = unpack(pack(src))
    assert [n for n, _ in back] == ["a", "b", "c"]
    for (_, x), (_, y) in zip(src, back, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)


def test_cpu_engine_refuses_full_weight_sync_up_front(tiny_model_dir):
    """vLLM's CPU backend repacks linear weights after loading (seen: every linear weight is
    an empty Parameter without ``weight_loader`` afterwards), so the engine refuses before it
    is built, with the way out in the message."""
    from itool_ray.policy import EngineConfig, VLLMPolicy

    cfg = EngineConfig(
        model=str(tiny_model_dir),
        dtype="float32",
        max_model_len=512,
        enable_lora=False,
        weight_sync=True,
        device="cpu",
    )
    with pytest.raises(ValueError, match="repacks the linear weights.*weight_sync=lora"):
        VLLMPolicy(cfg)
    with pytest.raises(ValueError, match="needs enable_lora=False"):
        EngineConfig(model="m", weight_sync=True)


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


def test_publish_merged_puts_the_merged_state_dict_in_buckets(ray_local, tiny_model_dir, tmp_path):
    """What the trainer publishes for full-weight sync: every tensor of base + adapter merged,
    in order, split over several buckets when they are small, and different from the base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from itool_ray.train.merge import publish_merged

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    want_base = {k: v.clone() for k, v in base.state_dict().items()}
    model = get_peft_model(
        base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    )
    model.save_pretrained(tmp_path / "adapter")
    want = model.merge_and_unload().state_dict()
    refs = publish_merged(tiny_model_dir, tmp_path / "adapter", bucket_mb=0.05)
    got = [item for ref in refs for item in ray_local.get(ref)]
    assert len(refs) > 1
    assert [name for name, _ in got] == list(want)
    for name, tensor in got:
        torch.testing.assert_close(tensor, want[name].to(tensor.dtype))
    changed = [n for n, t in got if not torch.equal(t, want_base[n].to(t.dtype))]
    assert any("q_proj" in n for n in changed)
