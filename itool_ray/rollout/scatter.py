"""Data-wide work split over a pool's replicas (held-out decoding, perplexity), surviving a
replica that fails mid-way."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any


def scatter(
    pool,
    method: str,
    items: Sequence[Any],
    *args: Any,
    retries: int = 3,
    restart_wait_s: float = 600.0,
    key: Callable[[Any], str] | None = None,
) -> list[Any]:
    """``PolicyReplica.<method>(share, *args)`` over the pool's healthy replicas, every item
    once, results in the order of ``items`` (the method returns one result per item).

    ``key``: items with the same key go to the same replica (a stable hash of the key over
    the live replicas), so a conversation decoded step by step keeps meeting the replica
    whose prefix cache holds it; without one, items are dealt round-robin.

    A replica whose call fails (its engine died, its process was killed) is marked down and
    its share goes again to the live replicas, or to the restarted one (Ray restarts the
    actor; the pool brings it back to the current version), up to ``retries`` times; when
    every replica is down it waits up to ``restart_wait_s`` for one.
    """
    import ray

    results: list[Any] = [None] * len(items)
    todo = list(range(len(items)))
    for attempt in range(retries + 1):
        if not todo:
            break
        live = pool.healthy()
        deadline = time.monotonic() + restart_wait_s
        while not live:
            if time.monotonic() > deadline:
                raise RuntimeError(f"scatter({method}): no healthy replica")
            asyncio.run(pool.revive(timeout=5.0))
            live = pool.healthy() or (time.sleep(2.0) or [])
        if key is None:
            shares = [todo[k :: len(live)] for k in range(len(live))]
        else:
            shares = [[] for _ in live]
            for j in todo:
                shares[zlib.crc32(key(items[j]).encode()) % len(live)].append(j)
        calls = [
            (i, share, pool.call(i, method, [items[j] for j in share], *args))
            for i, share in zip(live, shares, strict=True)
            if share
        ]
        todo = []
        for i, share, ref in calls:
            try:
                out = ray.get(ref)
            except (ray.exceptions.RayError, RuntimeError) as e:
                if attempt == retries:
                    raise
                pool.mark_down(i, f"{method} failed: {type(e).__name__}: {e}"[:300])
                todo += share
                continue
            if len(out) != len(share):
                raise RuntimeError(f"{method}: replica {i} returned {len(out)} for {len(share)}")
            for j, value in zip(share, out, strict=True):
                results[j] = value
    return results
