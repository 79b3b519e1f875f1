"""Full-weight sync into running vLLM engines, in buckets (the no-LoRA path).

For users who train all weights (or want the merged model served): the trainer splits the
new state dict into buckets of about ``bucket_mb`` MB, publishes each bucket once to Ray's
object store, and every replica loads them one bucket per engine call, through a small worker
extension of vLLM (``worker_extension_cls``) that hands the tensors to the model's own
``load_weights`` (the same name mapping vLLM uses when it reads a checkpoint). The engine is
not restarted; its prefix cache is reset at the end, since cached KV blocks were computed
with the old weights. Needs ``EngineConfig(enable_lora=False, weight_sync=True)`` and a vLLM
backend that keeps its weights loadable: CUDA vLLM does; vLLM's CPU backend repacks the linear
weights after loading (its oneDNN GEMM), so on CPU this path is refused with a clear error and
policies switch by LoRA. Not exercised on a GPU here (the GPU machines have no vLLM).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

EXTENSION = "itool_ray.policy.weight_sync.WeightSyncExtension"
DEFAULT_BUCKET_MB = 256


def buckets(
    named: Iterable[tuple[str, Any]], bucket_mb: float = DEFAULT_BUCKET_MB
) -> Iterator[list[tuple[str, Any]]]:
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


def pack(bucket: list[tuple[str, Any]]) -> list[tuple[str, str, tuple[int, ...], bytes]]:
    """A bucket as plain ``(name, dtype, shape, raw bytes)`` records: what crosses vLLM's
    engine-to-worker RPC unchanged (its message encoder turns tensors inside lists into lists).
    Any dtype, bfloat16 included, byte for byte."""
    out = []
    for name, t in bucket:
        raw = t.contiguous().reshape(-1).view(_uint8()).numpy().tobytes()
        out.append((name, str(t.dtype).removeprefix("torch."), tuple(t.shape), raw))
    return out


def unpack(records) -> list[tuple[str, Any]]:
    import torch

    out = []
    for name, dtype, shape, raw in records:
        flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        out.append((name, flat.view(getattr(torch, dtype)).reshape(tuple(shape))))
    return out


def _uint8():
    import torch

    return torch.uint8


class WeightSyncExtension:
    """Mixed into vLLM's worker class (``worker_extension_cls``); called through
    ``LLM.collective_rpc("itool_load_weights", args=(pack(bucket),))`` on every worker."""

    def itool_load_weights(self, records) -> int:
        model = self.get_model()  # type: ignore[attr-defined]
        packed = [
            n
            for n, p in model.named_parameters()
            if not hasattr(p, "weight_loader") and p.numel() == 0
        ]
        if packed:
            raise RuntimeError(
                f"full-weight sync: {len(packed)} weights were repacked after loading (e.g. "
                f"{packed[0]}) and cannot be reloaded in place by this vLLM backend"
            )
        device = next(model.parameters()).device
        model.load_weights(weights=[(n, t.to(device)) for n, t in unpack(records)])
        return len(records)
