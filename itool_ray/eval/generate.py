"""Held-out accuracy of a policy engine: render prompts, greedy decode in one batch, score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from itool_ray.data import Sample, render_prompt
from itool_ray.eval.scoring import EvalSummary, score_response, summarize


def evaluate_sets(
    policy, sets: Mapping[str, Sequence[Sample]], *, max_tokens: int = 192
) -> list[EvalSummary]:
    """Greedy responses of ``policy`` (a ``VLLMPolicy`` or anything with its ``generate`` and
    ``tokenizer``) for every sample of every set, all sets in one engine batch.

    Prompts that do not fit the engine's context (``max_model_len - max_tokens``) are skipped
    and counted per set, never truncated silently.
    """
    tok = policy.tokenizer
    limit = policy.config.max_model_len - max_tokens
    prompts: list[list[int]] = []
    owners: list[tuple[str, Sample]] = []
    skipped = dict.fromkeys(sets, 0)
    for name, samples in sets.items():
        for s in samples:
            ids = tok(render_prompt(s, tok), add_special_tokens=False)["input_ids"]
            if len(ids) > limit:
                skipped[name] += 1
                continue
            prompts.append(ids)
            owners.append((name, s))
    outs = policy.generate(prompts, n=1, max_tokens=max_tokens, temperature=0.0) if prompts else []
    scored: dict[str, list] = {name: [] for name in sets}
    for (name, s), (completion,) in zip(owners, outs, strict=True):
        scored[name].append(score_response(s, completion.text))
    return [summarize(name, scored[name], skipped[name]) for name in sets]
