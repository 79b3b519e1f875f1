"""Grouped LoRA kernels for vLLM's CPU backend (a vLLM general plugin, opt-in per engine).

vLLM's CPU LoRA path (``vllm.lora.ops.torch_ops``) applies the adapters with a gathered
batched mat-vec: ``einsum("bi,boi->bo", x, W[token_lora_indices])``. That materialises one
copy of the adapter matrix *per token* before multiplying, for every LoRA'd projection of
every layer. On a ~1,000-token prompt of SmolLM2-135M this makes a prefill with an adapter
several times slower than without one (``jobs/bench_cpu_lora.py``), and every request of a
fine-tuned policy pays it: MCTS expansions, self-evaluation, held-out evaluation.

The kernels here compute the same product as one GEMM per distinct adapter in the batch (in
practice one: a replica serves one policy version at a time). Rows whose index is negative
(requests without a LoRA) get zero, as vLLM's GPU kernels give them; the torch ops instead
index ``W[-1]``, the last adapter slot, which adds that slot's adapter to such a request as
soon as every slot is in use.

Registration: ``pyproject.toml`` declares :func:`register` as a ``vllm.general_plugins``
entry point, which vLLM calls in each of its processes (engine core and workers included).
It patches only when the variable :data:`ENV` is ``"1"`` and the platform is the CPU.
:class:`~itool_ray.policy.vllm_engine.VLLMPolicy` sets it for its CPU engines (unless
the user set it already; ``0`` turns the kernels off), so other vLLM users in the same
environment are unaffected.
"""

from __future__ import annotations

import os
from typing import Any

ENV = "ITOOL_RAY_CPU_LORA_KERNELS"
_PATCHED = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice")
_installed = False


def gathered_matmul(inputs: Any, weights: Any, indices: Any, dtype: Any) -> Any:
    """``einsum("bi,boi->bo", inputs, weights[indices])`` without the per-token copy.

    ``weights`` is the stacked adapter tensor ``(slots, out, in)`` or ``(slots, 1, out, in)``;
    ``indices`` one slot per row of ``inputs``, negative for "no adapter" (zero output).

    One exception to one-index-per-row: the LoRA logits processor maps adapters per
    *request*, and for prompt log-probs it is handed one row per prompt *token* (vLLM's own op
    fails there on the shape, vllm-project/vllm#29955). When the batch uses a single adapter,
    as an engine serving one policy version does, that adapter is every row's, so it is applied
    to all rows; with several, which row is whose is unknown, and this raises.
    """
    import torch

    if weights.dim() == 4:
        weights = weights.squeeze(1)
    x = inputs.to(dtype=dtype)
    slots = torch.unique(indices).tolist()
    if len(slots) == 1:  # the common case: one policy version (or none) for the whole batch
        if slots[0] < 0:
            return torch.zeros((x.shape[0], weights.shape[1]), dtype=dtype, device=x.device)
        return torch.matmul(x, weights[slots[0]].to(dtype=dtype).t())
    if indices.shape[0] != x.shape[0]:
        raise ValueError(
            f"LoRA kernel: {indices.shape[0]} adapter indices for {x.shape[0]} rows with "
            f"adapters {slots} in one batch; prompt log-probs need a single adapter per batch"
        )
    out = torch.zeros((x.shape[0], weights.shape[1]), dtype=dtype, device=x.device)
    for slot in slots:
        if slot >= 0:
            rows = indices == slot
            out[rows] = torch.matmul(x[rows], weights[slot].to(dtype=dtype).t())
    return out


def bgmv_shrink(inputs, lora_b_weights, output_tensor, lora_indices_tensor, scaling=1.0):
    outputs = gathered_matmul(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs=True):
    outputs = gathered_matmul(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    # as vLLM's op: a single row is added to every output row; the adapter and the model may
    # pad the output dimension differently
    limit = 1 if outputs.shape[0] == 1 and output_tensor.shape[0] != 1 else output_tensor.shape[0]
    width = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :width] += outputs[:limit, :width]
    else:
        output_tensor[:, :width] = outputs[:limit, :width]


def bgmv_expand_slice(
    inputs,
    lora_b_weights,
    output_tensor,
    lora_indices_tensor,
    slice_offset,
    slice_size,
    add_inputs=True,
):
    outputs = gathered_matmul(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs


def install() -> None:
    """Swap vLLM's CPU LoRA ops for the grouped ones in this process (idempotent).

    The ``sgmv_*`` (prefill) ops call the ``bgmv_*`` ones by module-global name, and the CPU
    punica wrapper imported all of them by name, so both modules are patched.
    """
    global _installed
    if _installed:
        return
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    for name in _PATCHED:
        for module in (lora_ops, punica_cpu):
            if not hasattr(module, name):
                raise RuntimeError(f"vLLM's {module.__name__} has no {name}: kernels not installed")
        for module in (lora_ops, punica_cpu):
            setattr(module, name, globals()[name])
    _installed = True


def installed() -> bool:
    """Whether :func:`install` ran in this process (the workers answer it through
    :class:`CpuLoraExtension`)."""
    return _installed


EXTENSION = "itool_ray.policy.cpu_lora.CpuLoraExtension"


class CpuLoraExtension:
    """vLLM worker extension (``worker_extension_cls``) of CPU engines with LoRA: lets the
    engine ask its workers, by name over ``collective_rpc``, whether the kernels are in."""

    def itool_cpu_lora_installed(self) -> bool:
        return installed()


def register() -> None:
    """vLLM general-plugin hook: install the kernels when asked to and on the CPU."""
    if os.environ.get(ENV) != "1":
        return
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        install()
