"""The Trainer: warm-up SFT, step-level DPO, perplexity and adapter publishing for one base
model, as a plain class; ``ray.remote(Trainer)`` makes it the trainer actor
(``num_gpus=1`` on GPU), see :func:`start_trainer`.

Publishing: :meth:`Trainer.publish` returns an adapter folder as a payload (file name ->
bytes). Called through :meth:`TrainerClient.publish` its result lives in the object store once;
the driver hands that ``ObjectRef`` to ``ReplicaPool.broadcast`` and every replica fetches it
from there (the driver never copies the weights), writes it to local disk and switches its
vLLM engine to it as a new LoRA id, without a restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from itool_ray.train.config import DPOSettings, LoraSettings, SFTSettings


def _release_memory() -> None:
    """Give the models of a finished stage back (the actor lives for the whole job)."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed arenas otherwise
    except (OSError, AttributeError):
        pass
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _progress_file(out_dir: str):
    """The callback writing a run's steps to its stage folder, which the driver follows."""
    from itool_ray.console import PROGRESS_FILE
    from itool_ray.train._common import ProgressFile

    return ProgressFile(Path(out_dir) / PROGRESS_FILE)


class Trainer:
    """Training for one base model (``model_dir``, any local Hugging Face folder).

    Every method returns JSON-ready dicts (what ran, losses, where the adapter is), so the
    actor's results are small; adapters stay on disk until published.
    """

    def __init__(self, model_dir: str | os.PathLike[str], lora: LoraSettings | None = None):
        from itool_ray.console import log_to_file

        log_to_file("trainer")  # the job's run_dir/logs/trainer.log (unless --verbose)
        self.model_dir = str(model_dir)
        self.lora = lora or LoraSettings()

    def warmup_sft(
        self, data: Any, out_dir: str, settings: SFTSettings | None = None
    ) -> dict[str, Any]:
        """Easy-to-hard (or mixed) LoRA SFT on ``data`` (``DifficultyBuckets`` or samples);
        the adapter lands in ``out_dir/adapter``, the steps in ``out_dir/progress.jsonl``."""
        from itool_ray.train.sft import warmup_sft

        progress = [_progress_file(out_dir)]
        try:
            return warmup_sft(
                self.model_dir, data, out_dir, settings, self.lora, callbacks=progress
            ).to_dict()
        finally:
            _release_memory()

    def dpo(
        self,
        adapter_in: str | None,
        pairs: Sequence[Any],
        out_dir: str,
        settings: DPOSettings | None = None,
        heldout: Sequence[Any] = (),
    ) -> dict[str, Any]:
        """One preference-optimisation round from ``adapter_in`` (reference = that policy);
        ``heldout`` pairs (trees not trained on) are scored after it; the steps are
        appended to ``out_dir/progress.jsonl``."""
        from itool_ray.train.dpo import train_dpo

        try:
            return train_dpo(
                self.model_dir,
                adapter_in,
                list(pairs),
                out_dir,
                settings,
                self.lora,
                heldout=list(heldout),
                callbacks=[_progress_file(out_dir)],
            ).to_dict()
        finally:
            _release_memory()

    def perplexity(
        self, adapter: str | None, samples: Sequence[Any], threads: int | None = 2
    ) -> list[float]:
        """Gold-response perplexity of each sample under base + ``adapter`` (eq. 4)."""
        from itool_ray.train.perplexity import hf_perplexity

        try:
            return hf_perplexity(self.model_dir, adapter, list(samples), threads=threads)
        finally:
            _release_memory()

    @staticmethod
    def publish(adapter_dir: str) -> dict[str, bytes]:
        """The adapter folder as a payload for the object store (see the module docstring)."""
        from itool_ray.rollout.replica import adapter_payload

        if not (Path(adapter_dir) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"publish: {adapter_dir} holds no PEFT adapter_config.json")
        return adapter_payload(adapter_dir)

    def publish_weights(self, adapter_dir: str | None, bucket_mb: float = 256) -> list:
        """Full-weight sync (no LoRA on the replicas): base + ``adapter_dir`` merged, split
        into buckets of about ``bucket_mb`` MB, each put in the object store once; returns
        the bucket references for ``ReplicaPool.broadcast_weights``."""
        from itool_ray.train.merge import publish_merged

        return publish_merged(self.model_dir, adapter_dir, bucket_mb)

    def export_merged(self, adapter_dir: str, out_dir: str) -> str:
        """Base + adapter merged into one model folder for serving."""
        from itool_ray.train.merge import export_merged

        return str(export_merged(self.model_dir, adapter_dir, out_dir))


class TrainerClient:
    """The driver's side of the trainer actor: one method per :class:`Trainer` method, so the
    job calls ``trainer.dpo(...)`` and never handles ``.remote`` or ``ray.get`` itself.

    ``wait(ref, out_dir)`` waits for a training call (``warmup_sft``, ``dpo``) that reports
    its steps to ``out_dir`` (the console follows them; default ``ray.get``). ``publish``
    returns the payload's ``ObjectRef`` (left in the object store for the replicas to fetch);
    every other method returns its result.
    """

    def __init__(self, handle: Any, wait: Callable[[Any, str], Any] | None = None):
        self.handle = handle
        self._wait = wait or (lambda ref, _out_dir: _get(ref))

    def warmup_sft(self, data: Any, out_dir: str, settings: SFTSettings | None = None) -> dict:
        return self._wait(self.handle.warmup_sft.remote(data, out_dir, settings), out_dir)

    def dpo(
        self,
        adapter_in: str | None,
        pairs: Sequence[Any],
        out_dir: str,
        settings: DPOSettings | None = None,
        heldout: Sequence[Any] = (),
    ) -> dict:
        ref = self.handle.dpo.remote(adapter_in, pairs, out_dir, settings, heldout)
        return self._wait(ref, out_dir)

    def perplexity(self, adapter: str | None, samples: Sequence[Any]) -> list[float]:
        return _get(self.handle.perplexity.remote(adapter, samples))

    def publish(self, adapter_dir: str) -> Any:
        """The adapter payload's ``ObjectRef`` (stored once, fetched by every replica)."""
        return self.handle.publish.remote(adapter_dir)

    def publish_weights(self, adapter_dir: str | None) -> list:
        return _get(self.handle.publish_weights.remote(adapter_dir))

    def export_merged(self, adapter_dir: str, out_dir: str) -> str:
        return _get(self.handle.export_merged.remote(adapter_dir, out_dir))

    def kill(self) -> None:
        import ray

        ray.kill(self.handle)


def _get(ref: Any) -> Any:
    import ray

    return ray.get(ref)


def start_trainer(
    model_dir: str,
    lora: LoraSettings | None = None,
    *,
    num_cpus: float = 1,
    num_gpus: float = 0,
    resources: dict[str, float] | None = None,
    env: dict[str, str] | None = None,
    wait: Callable[[Any, str], Any] | None = None,
) -> TrainerClient:
    """Launch the trainer actor (one per job; ``num_gpus=1`` on a GPU cluster); ``wait``: see
    :class:`TrainerClient`."""
    import ray

    from itool_ray.actors import actor_options

    opts = actor_options(
        num_cpus=num_cpus, num_gpus=num_gpus, resources=resources, env=env or {}, max_restarts=1
    )
    return TrainerClient(ray.remote(Trainer).options(**opts).remote(model_dir, lora), wait)


def sharded_perplexity(
    model_dir: str,
    adapter: str | None,
    samples: Sequence[Any],
    shards: int,
    *,
    num_cpus: float = 1,
    threads: int | None = 1,
) -> list[float]:
    """Perplexity of ``samples`` in ``shards`` parallel Ray tasks (input order kept).

    vLLM cannot return prompt log-probs from a LoRA-enabled engine on this version (the
    request crashes the engine), so the replicas do not score adapters; these tasks run the
    same computation with transformers, spread over the cluster's CPUs or GPUs.
    """
    import ray

    from itool_ray.train.perplexity import hf_perplexity

    samples = list(samples)
    if not samples:
        return []
    shards = max(1, min(shards, len(samples)))
    task = ray.remote(hf_perplexity).options(num_cpus=num_cpus)
    parts = [samples[i::shards] for i in range(shards)]
    results = ray.get([task.remote(model_dir, adapter, part, threads=threads) for part in parts])
    out: list[float] = [0.0] * len(samples)
    for i, values in enumerate(results):
        for j, v in enumerate(values):
            out[i + j * shards] = v
    return out
