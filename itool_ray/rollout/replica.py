"""PolicyReplica: one vLLM engine behind an async Ray actor.

A plain class (unit-testable in-process); ``ray.remote`` is applied where replicas are
launched (``ReplicaPool.start``). Calls that arrive while the engine is busy are coalesced
into the next engine batch, so many trees' expansions share one vLLM call and the engine
never idles while work is queued. The engine (not thread-safe) is only ever used by one
thread at a time, under ``_engine_lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itool_ray import metrics
from itool_ray.mcts.search import EvalRequest, ExpandRequest
from itool_ray.mcts.step import Step


@dataclass(frozen=True)
class Expansion:
    """What a replica returns for one expansion request: the candidate steps (None when the
    request failed), the self-evaluation confidence C of each distinct step text, and the
    policy version that produced them."""

    steps: list[Step] | None
    confidence: dict[str, float] = field(default_factory=dict)
    version: int = 0


AdapterPayload = Mapping[str, bytes]
"""A PEFT adapter folder shipped through the object store: relative file name -> bytes."""


def adapter_payload(adapter_dir: str | os.PathLike[str]) -> dict[str, bytes]:
    """Read a saved PEFT adapter folder into a payload (published once with ``ray.put``)."""
    root = Path(adapter_dir)
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def materialize_adapter(payload: AdapterPayload | str | None, where: Path) -> str | None:
    """A local folder holding the adapter: a path is used as is, a payload is written out."""
    if payload is None or isinstance(payload, str):
        return payload
    where.mkdir(parents=True, exist_ok=True)
    for name, data in payload.items():
        target = (where / name).resolve()
        if where.resolve() not in target.parents:
            raise ValueError(f"adapter payload entry {name!r} escapes its folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return str(where)


ADAPTER_ROOT = "itool-ray-adapters"
"""Folder under the temp dir holding each replica's materialized adapters, one sub-folder per
replica incarnation (``AdapterFolders``)."""
_LOCK = ".lock"
_UNLOCKED_GRACE_S = 600.0  # a folder without a lock file younger than this may be being made


class AdapterFolders:
    """One replica's adapter folders, ``<tmp>/itool-ray-adapters/<incarnation>/v<version>``.

    The replica holds an ``flock`` on ``<incarnation>/.lock`` for its whole life (the kernel
    drops it when the process dies, even killed), so the folders of dead replicas are found
    and removed when a replica starts on the same machine (``sweep``); ``prune`` removes this
    replica's older versions once a new one serves, ``close`` all of them at shutdown.
    """

    def __init__(self, incarnation: str, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.gettempdir()) / ADAPTER_ROOT
        self.path = self.root / incarnation
        # made under a hidden name and renamed once locked, so a sweep never sees it unlocked
        new = self.root / f".new-{incarnation}"
        new.mkdir(parents=True)
        self._lock = (new / _LOCK).open("a")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        new.rename(self.path)
        self._finalizer = weakref.finalize(self, _remove_folder, self.path, self._lock)

    def folder(self, version: int) -> Path:
        return self.path / f"v{int(version)}"

    def prune(self, keep: str | os.PathLike[str] | None) -> list[Path]:
        """Remove this replica's adapter folders other than ``keep`` (the one served)."""
        keep_path = Path(keep).resolve() if keep is not None else None
        removed = []
        for d in sorted(self.path.glob("v*")):
            if d.is_dir() and d.resolve() != keep_path:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
        return removed

    def close(self) -> None:
        """Remove every folder of this replica (at shutdown)."""
        self._finalizer()

    @classmethod
    def sweep(cls, root: str | os.PathLike[str] | None = None) -> list[Path]:
        """Remove the adapter folders of replicas that are gone (their lock is free)."""
        root = Path(root) if root is not None else Path(tempfile.gettempdir()) / ADAPTER_ROOT
        removed = []
        for d in sorted(root.glob("*")) if root.is_dir() else ():
            if not d.is_dir() or d.is_symlink():
                continue
            lock = d / _LOCK
            if d.name.startswith(".") or not lock.is_file():  # being made, or an older kind
                with contextlib.suppress(OSError):
                    if time.time() - d.stat().st_mtime > _UNLOCKED_GRACE_S:
                        shutil.rmtree(d, ignore_errors=True)
                        removed.append(d)
                continue
            try:
                with lock.open("a") as f:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: its owner is gone
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(d)
            except OSError:  # held by a live replica, or already removed
                continue
        return removed


def _remove_folder(path: Path, lock) -> None:
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        lock.close()


def _engine_dead(exc: BaseException) -> bool:
    """vLLM's engine process is gone; this replica cannot serve again without a restart."""
    return type(exc).__name__ in {
        "EngineDeadError",
        "EngineGenerateError",
    } or "Worker failed" in str(exc)


class PolicyReplica:
    """Serves expansions, self-evaluations, perplexities and greedy generations."""

    def __init__(
        self,
        engine_config,
        replica_id: str = "replica",
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
    ) -> None:
        from itool_ray.console import log_to_file

        log_to_file(replica_id)  # the job's run_dir/logs/<replica>.log, engine included
        from itool_ray.policy import VLLMPolicy
        from itool_ray.policy.steps import StepEngine

        self.replica_id = replica_id
        self.incarnation = uuid.uuid4().hex[:12]
        self.policy = VLLMPolicy(engine_config)
        self.engine = StepEngine(self.policy, temperature=temperature, top_p=top_p)
        self.started = time.monotonic()
        self.busy_seconds = 0.0
        self.requests_in_flight = 0
        self.expansions = 0
        self._published_tokens = 0
        self._engine_lock = asyncio.Lock()
        self._pending: list[tuple[list[ExpandRequest], asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None
        AdapterFolders.sweep()  # folders left by replicas killed on this machine
        self._adapters = AdapterFolders(self.incarnation)

    # ---- status ----------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        st = self.policy.stats
        wall = max(time.monotonic() - self.started, 1e-9)
        return {
            "replica_id": self.replica_id,
            "incarnation": self.incarnation,
            "pid": os.getpid(),
            "version": self.policy.version,
            "requests_in_flight": self.requests_in_flight,
            "queued_calls": len(self._pending),
            "expansions": self.expansions,
            "busy_seconds": self.busy_seconds,
            "uptime_seconds": wall,
            "prompt_tokens": st.prompt_tokens,
            "cached_prompt_tokens": st.cached_prompt_tokens,
            "generated_tokens": st.generated_tokens,
            "prefix_cache_hit_rate": st.prefix_cache_hit_rate,
            "scores_prompts": self.policy.scores_prompts,
        }

    def take_prompts(self) -> list[tuple[int, ...]]:
        """The engine's prompts since the last call (``EngineConfig.record_prompts``)."""
        return self.policy.take_prompts()

    async def _in_engine(self, fn, *args):
        async with self._engine_lock:
            start = time.monotonic()
            try:
                return await asyncio.to_thread(fn, *args)
            except Exception as e:
                if _engine_dead(e):  # let Ray restart this actor with a fresh engine
                    asyncio.get_running_loop().call_later(0.5, os._exit, 1)
                raise
            finally:
                self.busy_seconds += time.monotonic() - start
                self._publish()

    def _publish(self) -> None:
        """This replica's metrics (Prometheus / dashboard), after every engine call."""
        st, tag = self.policy.stats, self.replica_id
        metrics.inc(
            "generated_tokens_total", st.generated_tokens - self._published_tokens, replica=tag
        )
        self._published_tokens = st.generated_tokens
        wall = max(time.monotonic() - self.started, 1e-9)
        metrics.set_gauge("replica_busy_fraction", self.busy_seconds / wall, replica=tag)
        metrics.set_gauge("prefix_cache_hit_rate", st.prefix_cache_hit_rate, replica=tag)

    # ---- policy versions -------------------------------------------------------------
    async def load_policy(self, version: int, adapter: AdapterPayload | str | None) -> int:
        """Switch to policy ``version`` (a LoRA adapter folder or payload; None = base)."""
        folder = materialize_adapter(adapter, self._adapters.folder(version))
        loaded = await self._in_engine(self.policy.load_policy, version, folder)
        self._adapters.prune(keep=folder)  # the engine has dropped the older versions
        return loaded

    async def load_full_weights(self, version: int, buckets: Sequence[Any]) -> int:
        """Full-weight sync: load every bucket (a list of ``(hf_name, tensor)``, or an
        ``ObjectRef`` to one, fetched one at a time) and serve the result as ``version``.
        Holds the engine for the whole update: no request sees half-updated weights."""
        import ray

        loaded = 0
        async with self._engine_lock:
            start = time.monotonic()
            try:
                for b in buckets:
                    bucket = await b if isinstance(b, ray.ObjectRef) else b
                    loaded += await asyncio.to_thread(self.policy.load_weight_bucket, bucket)
                await asyncio.to_thread(self.policy.finish_weight_update, version)
            finally:
                self.busy_seconds += time.monotonic() - start
        return loaded

    # ---- MCTS ------------------------------------------------------------------------
    async def expand(self, requests: Sequence[ExpandRequest]) -> list[Expansion]:
        """Expand and self-evaluate; coalesced with concurrent calls into one engine batch."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((list(requests), fut))
        self.requests_in_flight += len(requests)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        try:
            return await fut
        finally:
            self.requests_in_flight -= len(requests)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            flat = [r for reqs, _ in batch for r in reqs]
            try:
                out = await self._in_engine(self._expand_and_evaluate, flat)
            except Exception as e:  # the engine failed: every caller of this batch hears it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            i = 0
            for reqs, fut in batch:
                if not fut.done():
                    fut.set_result(out[i : i + len(reqs)])
                i += len(reqs)

    def _expand_and_evaluate(self, requests: list[ExpandRequest]) -> list[Expansion]:
        version = self.policy.version
        results = self.engine.expand(requests)
        evals: list[EvalRequest] = []
        owners: list[tuple[int, str]] = []
        for i, (r, steps) in enumerate(zip(requests, results, strict=True)):
            for text in dict.fromkeys(s.text for s in steps or ()):
                evals.append(
                    EvalRequest(r.tree_id, r.node_id, r.messages, r.tools, r.prefix + text, False)
                )
                owners.append((i, text))
        conf = self.engine.evaluate(evals) if evals else []
        maps: list[dict[str, float]] = [{} for _ in requests]
        for (i, text), c in zip(owners, conf, strict=True):
            maps[i][text] = c
        self.expansions += len(requests)
        return [Expansion(steps, maps[i], version) for i, steps in enumerate(results)]

    async def evaluate(self, requests: Sequence[EvalRequest]) -> list[float]:
        return await self._in_engine(self.engine.evaluate, list(requests))

    # ---- data-wide scoring -----------------------------------------------------------
    async def perplexity(self, samples: Sequence[Any]) -> list[float]:
        """h = P(y | q, T) ** (-1/n) of each sample's gold response (eq. 4)."""
        return await self._in_engine(self.engine.perplexity, list(samples))

    async def respond(self, samples: Sequence[Any], max_tokens: int = 192) -> list[str | None]:
        """Greedy full responses (evaluation); None where the prompt does not fit."""
        from itool_ray.data import render_prompt

        def run() -> list[str | None]:
            tok = self.policy.tokenizer
            limit = self.policy.config.max_model_len - max_tokens
            ids = [
                tok(render_prompt(s, tok), add_special_tokens=False)["input_ids"] for s in samples
            ]
            keep = [i for i, p in enumerate(ids) if len(p) <= limit]
            outs = self.policy.generate(
                [ids[i] for i in keep], n=1, max_tokens=max_tokens, temperature=0.0
            )
            texts: list[str | None] = [None] * len(samples)
            for i, (c,) in zip(keep, outs, strict=True):
                texts[i] = c.text
            return texts

        return await self._in_engine(run)

    async def respond_messages(
        self, prompts: Sequence[Any], max_tokens: int = 192
    ) -> list[str | None]:
        """Greedy assistant messages for chat prompts (multi-turn evaluation): each
        ``itool_ray.eval.multi_turn.ChatPrompt`` (messages + tools) rendered by
        ``render_chat_prompt`` (system prompt listing its tools, tool results as ``tool``
        turns where the chat template renders them); None where the prompt does not fit."""
        from itool_ray.eval.multi_turn import render_chat_prompt

        def run() -> list[str | None]:
            tok = self.policy.tokenizer
            limit = self.policy.config.max_model_len - max_tokens
            ids = [
                tok(render_chat_prompt(p, tok), add_special_tokens=False)["input_ids"]
                for p in prompts
            ]
            keep = [i for i, p in enumerate(ids) if len(p) <= limit]
            outs = self.policy.generate(
                [ids[i] for i in keep], n=1, max_tokens=max_tokens, temperature=0.0
            )
            texts: list[str | None] = [None] * len(prompts)
            for i, (c,) in zip(keep, outs, strict=True):
                texts[i] = c.text
            return texts

        return await self._in_engine(run)

    def shutdown(self) -> None:
        try:
            self.policy.close()
        finally:
            self._adapters.close()
