"""Full-weight sync into running vLLM engines, in buckets (the no-LoRA path).

For users who train all weights (or want the merged model served): the trainer splits the
new state dict into buckets of about ``bucket_mb`` MB, publishes each bucket once to Ray's
object store, and every replica loads them one bucket per engine call, through a small worker
extension of vLLM (``worker_extension_cls``) that hands the tensors to the model's own
``load_weights`` (the same name mapping vLLM uses when it reads a checkpoint). The engine is
not restarted; its prefix cache is reset at the end, since cached KV blocks were computed
with the old weights. Needs ``EngineConfig(enable_lora=False, weight_sync=True)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

EXTENSION = "itool_ray.policy.weight_sync.WeightSyncExtension"
DEFAULT_BUCKET_MB = 256


def buckets(named: Iterable[tuple[str, Any]], bucket_mb: float = DEFAULT_BUCKET_MB) -> Iterator[
    list[tuple[str, Any]]
]:  # fmt: skip
    """Group ``(name, tensor)`` pairs, in order, into lists of at most ``bucket_mb`` MB (a
    tensor larger than that is a bucket of its own). Tensors are detached, contiguous, CPU."""
    limit = int(bucket_mb * (1 << 20))
    if limit <= 0:
        raise ValueError(f"bucket_mb must be > 0, got {bucket_mb}")
    bucket: list[tuple[str, Any]] = []
    size = 0
    for name, tensor in named:
        t = tensor.detach().to("cpu").contiguous()
        nbytes = t.numel() * t.element_size()
        if bucket and size + nbytes > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, t))
        size += nbytes
    if bucket:
        yield bucket


class WeightSyncExtension:
    """Mixed into vLLM's worker class (``worker_extension_cls``); called through
    ``LLM.collective_rpc("itool_load_weights", args=(bucket,))`` on every worker."""

    def itool_load_weights(self, bucket: list[tuple[str, Any]]) -> int:
        model = self.get_model()  # type: ignore[attr-defined]
        device = next(model.parameters()).device
        model.load_weights(weights=[(n, t.to(device)) for n, t in bucket])
        return len(bucket)
