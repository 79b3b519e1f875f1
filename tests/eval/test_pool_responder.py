"""Decoding on a pool survives a replica that fails: its share goes to the others.

FAKE replica actors (real Ray, no engine): they answer ``respond`` with a text naming the
sample, and one of them fails its first call, as a replica whose engine died does.
"""

from __future__ import annotations

import pytest

from itool_ray.data import Sample


class FakeResponder:
    def __init__(self, name: str, fail_first: int = 0) -> None:
        self.name, self.fail_first, self.calls = name, fail_first, 0

    def info(self) -> dict:
        return {"version": 0, "incarnation": self.name}

    def load_policy(self, version, adapter) -> int:
        return version

    def respond(self, samples, max_tokens):
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError("EngineDeadError: engine core died")
        return [f"{self.name}:{s.id}" for s in samples]

    def n_calls(self) -> int:
        return self.calls


def _samples(n: int) -> list[Sample]:
    return [
        Sample(id=f"s{i}", tools=(), messages=({"role": "user", "content": "hi"},), gold="")
        for i in range(n)
    ]


def test_failed_share_is_decoded_again_elsewhere(ray_local):
    from itool_ray.eval.generate import pool_responder
    from itool_ray.rollout import ReplicaPool

    actor = ray_local.remote(num_cpus=0)(FakeResponder)
    good, bad = actor.remote("good"), actor.remote("bad", fail_first=5)
    pool = ReplicaPool([("good", good), ("bad", bad)])
    samples = _samples(7)
    texts = pool_responder(pool, retries=2)(samples)
    # every sample answered once, in order; the failing replica's share went to the good one
    assert texts == [f"good:s{i}" for i in range(7)]
    assert pool.healthy() == [0] and pool.replicas[1].failures == 1
    assert ray_local.get(bad.n_calls.remote()) == 1


def test_gives_up_after_the_retries(ray_local):
    from itool_ray.eval.generate import pool_responder
    from itool_ray.rollout import ReplicaPool

    actor = ray_local.remote(num_cpus=0)(FakeResponder)
    pool = ReplicaPool([("bad", actor.remote("bad", fail_first=100))])
    with pytest.raises(Exception, match="engine core died"):
        pool_responder(pool, retries=1, restart_wait_s=3)(_samples(2))


class FakeChat(FakeResponder):
    def respond_messages(self, prompts, max_tokens):
        return [f"{self.name}:{p.entry_id}:{p.step}" for p in prompts]


def test_every_step_of_a_conversation_goes_to_the_same_replica(ray_local):
    """Multi-turn decoding: an entry's prompts meet one replica at every step (its prefix
    cache holds the conversation), and the entries are spread over the replicas."""
    from itool_ray.eval.job import pool_chat_responder
    from itool_ray.eval.multi_turn import ChatPrompt
    from itool_ray.rollout import ReplicaPool

    actor = ray_local.remote(num_cpus=0)(FakeChat)
    pool = ReplicaPool([(n, actor.remote(n)) for n in ("a", "b", "c")])
    respond = pool_chat_responder(pool)
    owner: dict[str, set[str]] = {}
    for step in range(3):
        ids = [f"e{i}" for i in range(12) if i % 3 or step < 2]  # some entries finish early
        prompts = [ChatPrompt(entry_id=i, messages=(), tools=(), turn=0, step=step) for i in ids]
        texts = respond(prompts)
        assert [t.split(":", 1)[1] for t in texts] == [f"{i}:{step}" for i in ids]  # in order
        for i, t in zip(ids, texts, strict=True):
            owner.setdefault(i, set()).add(t.split(":")[0])
    assert all(len(replicas) == 1 for replicas in owner.values())
    assert len({r for rs in owner.values() for r in rs}) >= 2
