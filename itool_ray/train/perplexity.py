"""Gold-response perplexity with transformers (iTool eq. 4): the fallback to, and a cross-check
of, the vLLM replicas' prompt log-probs.

h = P(y | q, T) ** (-1/n) = exp(-mean log p) over the n response tokens, the response being
``sample.gold`` + the chat template's end-of-turn token, tokenised like the SFT rows (prompt
ids then response ids, no added special tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from itool_ray.data import Sample, render_prompt
from itool_ray.data.prefix import response_perplexities
from itool_ray.train._common import (
    cpu_threads,
    encode,
    end_of_turn,
    load_base,
    load_tokenizer,
    log,
    pick_device,
)


def response_logprobs(
    model, prompts: Sequence[list[int]], responses: Sequence[list[int]], pad_id: int
) -> list[list[float]]:
    """Log-prob of each response token given the prompt and the response before it; one
    right-padded forward pass for the batch."""
    seqs = [list(p) + list(r) for p, r in zip(prompts, responses, strict=True)]
    width = max(len(s) for s in seqs)
    device = next(model.parameters()).device
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    out = []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if not r:
            out.append([])
            continue
        start = len(p)
        # the token at position t is predicted by the logits at t - 1
        rows = logits[i, start - 1 : start - 1 + len(r)].float().log_softmax(-1)
        target = torch.tensor(r, device=rows.device)
        out.append(rows.gather(-1, target[:, None]).squeeze(-1).tolist())
    return out


def hf_perplexity(
    model_dir: str | Path,
    adapter: str | Path | None,
    samples: Sequence[Sample],
    *,
    batch_size: int = 4,
    threads: int | None = 2,
) -> list[float]:
    """Perplexity of each sample's gold response under base (+ ``adapter``), in input order.

    Runs on CUDA when present (the model's dtype there is bf16 where supported), else on CPU
    in float32 with ``threads`` torch threads. Samples are batched by length.
    """
    if batch_size < 1:
        raise ValueError(f"hf_perplexity: batch_size must be >= 1, got {batch_size}")
    if not samples:
        return []
    device = pick_device()
    with cpu_threads(threads):
        tokenizer = load_tokenizer(model_dir)
        model = load_base(model_dir, device.dtype)
        if adapter is not None:
            from peft import PeftModel

            # kept unmerged, as vLLM serves it (a merge in bf16 would round the weights)
            model = PeftModel.from_pretrained(model, str(adapter))
        model.to("cpu" if device.use_cpu else "cuda").eval()
        eot = end_of_turn(tokenizer)
        prompts = [encode(tokenizer, render_prompt(s, tokenizer)) for s in samples]
        responses = [encode(tokenizer, s.gold + eot) for s in samples]

        def batched(rows: list[list[int]], starts: list[int]) -> list[list[float]]:
            order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
            got: list[list[float]] = [[] for _ in rows]
            for b in range(0, len(order), batch_size):
                idx = order[b : b + batch_size]
                lps = response_logprobs(
                    model,
                    [rows[i][: starts[i]] for i in idx],
                    [rows[i][starts[i] :] for i in idx],
                    tokenizer.pad_token_id,
                )
                for i, lp in zip(idx, lps, strict=True):
                    got[i] = lp
            return got

        # a sample that is a prefix of another (a multi-turn task's earlier messages) is read
        # off the longer row's forward pass (itool_ray.data.prefix)
        result = response_perplexities(prompts, responses, batched)
        log.info("hf_perplexity: %d samples on %s", len(samples), device.name)
    return result
