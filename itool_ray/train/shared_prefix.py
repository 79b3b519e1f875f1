"""Prefix-shared preference training: each distinct prompt of a batch runs once.

All pairs of one MCTS tree share the chat prompt (system prompt with the tool list + the user
query, ~640 tokens for the main job); pairs differ in a short path prefix (the steps above
their node) and a step of a few dozen tokens. TRL's concatenated forward runs prompt + chosen
and prompt + rejected as two full sequences for the policy and two more for the reference.
Here a batch's rows are grouped by the prompt prefix they share (:func:`group_by_prefix`):

1. **Prefix pass**: each group's shared prefix runs once (groups right-padded into one batch)
   with ``use_cache=True``, gradients on.
2. **Continuation pass**: every sequence's tail (the rest of its prompt, i.e. the path
   prefix, + its step) runs on that KV cache, expanded over the sequences (a view for one
   group); tails right-padded, the attention mask covering cache + tail, positions continuing
   from the group's prefix length. Gradients flow back through the cache into the prefix.
3. **Log-probs**: a tail token is predicted by the hidden state before it: the first one by the
   prefix's last position, the others by the tail's own. Only the scored tokens (the steps)
   go through the LM head, with TRL's own chunked log-prob kernel
   (``trl.kernels.ChunkedLogProbFunction``, what its fused LM head runs), so the per-token
   log-probs, entropies, mean logits and top-1 flags are the quantities TRL's loss code reads.

The TRL glue (``itool_ray.train.dpo``) turns these into the stock layouts: a
``FusedCausalLMOutput`` laid out like TRL's ``DataCollatorForPreference`` batch for
``DPOTrainer`` (DPO sigmoid, IPO), and the ``concatenated_forward`` tuple for the experimental
CPO (SimPO) / ORPO trainers; the losses themselves stay TRL's. :class:`TreeGroupedSampler`
keeps a tree's pairs in the same optimizer step, so a step runs few prompts.

**Packed** (training with gradient checkpointing, whose recomputed layer would append to a KV
cache twice): passes 1 and 2 are one forward per group of ``prefix + tail_1 + ... + tail_n``
(each tail but its last token, positions continuing from the prefix), with the attention
implementation :data:`PACKED_ATTENTION`: SDPA causal on the prefix, and each tail on the whole
prefix plus causally on itself (:func:`packed_attention`). The same hidden states, so the same
log-probs and gradients, with no cache: a recomputed layer recomputes exactly its forward.

Limits: decoder-only models whose backbone takes ``past_key_values`` (Llama-style) and whose
attention goes through transformers' ``AttentionInterface``; the continuation pass copies
the cache once per sequence inside attention (``torch.cat`` of cache and tail keys), like a
stock batch of the same rows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

# per-token fields of TRL's fused LM head / chunked kernel
LOG_PROBS = "log_probs"
FIELDS: tuple[str, ...] = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
_VOCAB_CHUNK = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE


# ---- layout: who shares what -------------------------------------------------------------


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(frozen=True)
class PrefixGroup:
    """Rows whose prompts start with the same ``shared`` token ids (``shared`` >= 1 token)."""

    shared: tuple[int, ...]
    rows: tuple[int, ...]


def group_by_prefix(prompts: Sequence[Sequence[int]]) -> list[PrefixGroup]:
    """Group rows by the prompt prefix they share, so each group's prefix runs once.

    Rows are visited in lexicographic order of their prompts (rows of one tree, then of one
    node, come out adjacent) and a row joins the current group when that costs fewer tokens
    than running it alone: joining shortens the group's prefix to the common part ``l`` and
    moves ``S - l`` tokens of each of its sequences (2 per row) into the tails, plus the row's
    own ``len(p) - l``; alone, the row's prompt runs as a prefix of its own. Rows of one tree
    share the chat prompt (hundreds of tokens), rows of different trees only the start of
    the system prompt, so the rule separates trees.
    """
    order = sorted(range(len(prompts)), key=lambda i: list(prompts[i]))
    groups: list[tuple[int, list[int]]] = []  # (shared length, rows)
    for i in order:
        p = prompts[i]
        if not p:
            raise ValueError(f"row {i}: empty prompt (nothing predicts its first step token)")
        if groups:
            s, rows = groups[-1]
            common = min(s, common_prefix_len(prompts[rows[-1]], p))
            joined = common >= 1 and (
                2 * (len(p) - common) + (2 * len(rows) - 1) * (s - common) < len(p)
            )
            if joined:
                groups[-1] = (common, [*rows, i])
                continue
        groups.append((len(p), [i]))
    return [
        PrefixGroup(tuple(prompts[rows[0]][:s]), tuple(sorted(rows)))
        for s, rows in sorted(groups, key=lambda g: min(g[1]))
    ]


@dataclass(frozen=True)
class SharedLayout:
    """Sequences on shared prefixes: sequence ``j`` is ``prefixes[group[j]] + tails[j]``; its
    last ``scored[j]`` tokens are scored (``len(tails[j])``: the whole tail), and
    ``prefix_weight[g]`` > 0 also scores group ``g``'s prefix tokens 1.. (ORPO's NLL over the
    full chosen sequence), counted that many times."""

    prefixes: tuple[tuple[int, ...], ...]
    group: tuple[int, ...]
    tails: tuple[tuple[int, ...], ...]
    scored: tuple[int, ...]
    prefix_weight: tuple[int, ...]

    @classmethod
    def for_pairs(
        cls,
        prompts: Sequence[Sequence[int]],
        chosen: Sequence[Sequence[int]],
        rejected: Sequence[Sequence[int]],
        *,
        score_chosen_prompt: bool = False,
    ) -> SharedLayout:
        """Sequences ``[chosen 0..B-1, rejected 0..B-1]`` (TRL's concatenated order), each
        scoring its step; ``score_chosen_prompt`` scores the whole chosen sequence instead
        (ORPO)."""
        groups = group_by_prefix(prompts)
        of_row = {r: g for g, grp in enumerate(groups) for r in grp.rows}
        group, tails, scored = [], [], []
        for steps, whole in ((chosen, score_chosen_prompt), (rejected, False)):
            for i, step in enumerate(steps):
                if not step:
                    raise ValueError(f"row {i}: empty step")
                g = of_row[i]
                tail = tuple(prompts[i][len(groups[g].shared) :]) + tuple(step)
                group.append(g)
                tails.append(tail)
                scored.append(len(tail) if whole else len(step))
        weight = [0] * len(groups)
        if score_chosen_prompt:
            for i in range(len(chosen)):
                weight[of_row[i]] += 1
        return cls(
            tuple(g.shared for g in groups),
            tuple(group),
            tuple(tails),
            tuple(scored),
            tuple(weight),
        )

    @property
    def num_scored(self) -> int:
        return sum(self.scored)

    def tokens(self) -> dict[str, int]:
        """Tokens each pass runs: ``prefix`` (real), ``tail`` (real) and ``padded`` (both
        passes, padding included)."""
        pre = [len(p) for p in self.prefixes]
        tail = [max(0, len(t) - 1) for t in self.tails]
        return {
            "prefix": sum(pre),
            "tail": sum(tail),
            "padded": len(pre) * max(pre) + len(tail) * max(tail, default=0),
        }


# ---- the forward -------------------------------------------------------------------------


def causal_lm(model):
    """The causal LM under a PEFT wrapper (LoRA layers stay injected in its modules)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _head_transform(config) -> tuple[float | None, float]:
    """``(final_logit_softcapping, logit_scale)`` as TRL's ``add_fused_lm_head`` reads them."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    softcap = getattr(text, "final_logit_softcapping", None)
    scale = getattr(text, "logit_scale", None)
    if scale is None:
        scale = getattr(text, "output_multiplier", None)
    if scale is None:
        scale = getattr(text, "lm_head_multiplier", None)
    if scale is None and getattr(text, "logits_scaling", None) is not None:
        ls = text.logits_scaling
        scale = ls if text.model_type == "hyperclovax" else 1 / ls
    return softcap, 1.0 if scale is None else scale


def _pad(rows: Sequence[Sequence[int]], width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


def _expand_cache(cache, index: torch.Tensor, n: int, single: bool) -> None:
    """Give every cache layer one row per sequence: a view of the one prefix row (``single``)
    or a gather of each sequence's group row."""
    for layer in cache.layers:
        if single:
            layer.keys = layer.keys.expand(n, *layer.keys.shape[1:])
            layer.values = layer.values.expand(n, *layer.values.shape[1:])
        else:
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)


def shared_token_logps(
    model, layout: SharedLayout, outputs: tuple[str, ...] = (LOG_PROBS,), temperature: float = 1.0
) -> dict[str, torch.Tensor]:
    """Per-token fields (``outputs`` among :data:`FIELDS`; ``log_probs`` always) of the scored
    tokens of ``layout``: 1-D tensors, sequence by sequence in layout order, each sequence's
    scored tokens in order, then (key ``prefix_log_probs``) the scored prefix tokens group by
    group, each group once (the caller weights them by ``layout.prefix_weight``).

    ``model``: a causal LM or a PeftModel around one (the active adapter is used); runs with
    gradients unless called under ``torch.no_grad()``. Training with gradient checkpointing
    runs the packed forward (:func:`packed_attention`), otherwise the KV-cache one.
    """
    from trl.kernels import ChunkedLogProbFunction

    lm = causal_lm(model)
    head = lm.get_output_embeddings()
    device = head.weight.device
    packed = torch.is_grad_enabled() and lm.training and lm.is_gradient_checkpointing
    preds, pres = (_packed_predictors if packed else _cached_predictors)(lm, layout, device)

    # the scored tokens through the LM head
    hidden, targets = [], []
    for pred, tail, k in zip(preds, layout.tails, layout.scored, strict=True):
        hidden.append(pred[len(tail) - k :])
        targets.extend(tail[len(tail) - k :])
    n_main = len(targets)
    for g, w in enumerate(layout.prefix_weight):
        if w:
            hidden.append(pres[g][:-1])
            targets.extend(layout.prefixes[g][1:])
    softcap, scale = _head_transform(lm.config)
    wanted = tuple(dict.fromkeys((LOG_PROBS, *outputs)))
    per_token = ChunkedLogProbFunction.apply(
        torch.cat(hidden, dim=0),
        head.weight,
        head.bias,
        torch.tensor(targets, dtype=torch.long, device=device),
        temperature,
        _VOCAB_CHUNK,
        softcap,
        scale,
        wanted,
    )
    out = {name: x[:n_main] for name, x in zip(FIELDS, per_token, strict=True) if x is not None}
    if any(layout.prefix_weight):
        out["prefix_log_probs"] = per_token[0][n_main:]
    return out


def _cached_predictors(
    lm, layout: SharedLayout, device
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per sequence, the hidden states predicting its tail tokens ``(len(tail), H)``, and per
    group its prefix's hidden states ``(len(prefix), H)``: each prefix once with
    ``use_cache=True``, every tail on that KV cache."""
    from transformers import DynamicCache

    backbone = lm.base_model
    prefixes, tails = layout.prefixes, layout.tails
    n_groups, n_seqs = len(prefixes), len(tails)
    widths = [len(p) for p in prefixes]
    width = max(widths)
    padded = min(widths) != width

    # 1. each shared prefix once
    pre_ids, pre_mask = _pad(prefixes, width, device)
    cache = DynamicCache(config=lm.config)
    pre = backbone(
        input_ids=pre_ids,
        attention_mask=pre_mask if padded else None,
        past_key_values=cache,
        use_cache=True,
    )
    pre_hidden = pre.last_hidden_state  # (G, S, H)
    cache = pre.past_key_values
    group = torch.tensor(layout.group, dtype=torch.long, device=device)
    last = torch.tensor([w - 1 for w in widths], dtype=torch.long, device=device)
    first_pred = pre_hidden[group, last[group]]  # (n, H): predicts each tail's first token

    # 2. every tail (all but its last token, which predicts nothing scored) on the cache
    inputs = [t[:-1] for t in tails]
    cont_width = max(len(t) for t in inputs)
    if cont_width:
        _expand_cache(cache, group, n_seqs, single=n_groups == 1)
        cont_ids, cont_mask = _pad(inputs, cont_width, device)
        starts = torch.tensor(widths, dtype=torch.long, device=device)[group]
        positions = starts[:, None] + torch.arange(cont_width, device=device)[None, :]
        mask = torch.cat([pre_mask.index_select(0, group), cont_mask], dim=1)
        cont = backbone(
            input_ids=cont_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
        pred = torch.cat([first_pred[:, None, :], cont.last_hidden_state], dim=1)
    else:
        pred = first_pred[:, None, :]
    del cache
    preds = [pred[j, : len(t)] for j, t in enumerate(tails)]
    return preds, [pre_hidden[g, :w] for g, w in enumerate(widths)]


# ---- the packed forward (gradient checkpointing) -------------------------------------------

PACKED_ATTENTION = "itool_packed_sdpa"
"""The attention implementation of the packed forward (registered with transformers'
``AttentionInterface`` and ``AttentionMaskInterface``): SDPA, and for a packed row the
prefix causally plus each tail on the prefix and on itself (:func:`packed_attention`)."""


def _is_segments(mask) -> bool:
    return (
        isinstance(mask, torch.Tensor)
        and mask.dtype == torch.long
        and mask.dim() == 4
        and mask.shape[:3] == (1, 1, 1)
    )


def packed_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA over one packed row ``prefix + tail_1 + ... + tail_n`` whose ``attention_mask`` is
    its segment ids, shape ``(1, 1, 1, L)``, long: 0 on the prefix, ``j`` on tail ``j``. The
    prefix attends causally to itself; a tail to the whole prefix and causally to itself,
    never to another tail: what the KV-cache forward computes, in one pass with no cache, so
    a layer recomputed by gradient checkpointing computes the same thing again. Any other
    mask is plain SDPA (``sdpa_attention_forward``)."""
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if not _is_segments(attention_mask):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    seg = attention_mask[0, 0, 0]
    prefix = int((seg == 0).sum())
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scale = kwargs.get("scaling")
    parts = [
        F.scaled_dot_product_attention(
            query[:, :, :prefix],
            key[:, :, :prefix],
            value[:, :, :prefix],
            is_causal=True,
            scale=scale,
        )
    ]
    if query.shape[2] > prefix:
        tail = seg[prefix:]
        at = torch.arange(seg.numel(), device=seg.device)
        mask = (seg[None, :] == 0) | (
            (seg[None, :] == tail[:, None]) & (at[None, :] <= at[prefix:, None])
        )
        parts.append(
            F.scaled_dot_product_attention(
                query[:, :, prefix:], key, value, attn_mask=mask, scale=scale
            )
        )
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def use_packed_attention(lm) -> None:
    """Give ``lm`` the :data:`PACKED_ATTENTION` implementation (registered once); plain
    masks still run as SDPA."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if PACKED_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(PACKED_ATTENTION, packed_attention)
        AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)
    if lm.config._attn_implementation != PACKED_ATTENTION:
        lm.set_attn_implementation(PACKED_ATTENTION)


def _packed_predictors(
    lm, layout: SharedLayout, device
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """:func:`_cached_predictors`' hidden states from one packed row per group (the prefix,
    then each of its sequences' tails but their last token), no KV cache."""
    use_packed_attention(lm)
    backbone = lm.base_model
    preds: list[torch.Tensor | None] = [None] * len(layout.tails)
    pres = []
    for g, prefix in enumerate(layout.prefixes):
        members = [j for j, x in enumerate(layout.group) if x == g]
        ids, seg, pos = list(prefix), [0] * len(prefix), list(range(len(prefix)))
        spans = []
        for n, j in enumerate(members, start=1):
            inputs = layout.tails[j][:-1]
            spans.append((len(ids), len(inputs)))
            ids.extend(inputs)
            seg.extend([n] * len(inputs))
            pos.extend(range(len(prefix), len(prefix) + len(inputs)))
        hidden = backbone(
            input_ids=torch.tensor([ids], dtype=torch.long, device=device),
            attention_mask=torch.tensor(seg, dtype=torch.long, device=device).view(1, 1, 1, -1),
            position_ids=torch.tensor([pos], dtype=torch.long, device=device),
            use_cache=False,
        ).last_hidden_state[0]
        first = hidden[len(prefix) - 1 : len(prefix)]
        for j, (a, n) in zip(members, spans, strict=True):
            preds[j] = torch.cat([first, hidden[a : a + n]], dim=0)
        pres.append(hidden[: len(prefix)])
    return preds, pres  # type: ignore[return-value]


def split_per_sequence(values: torch.Tensor, layout: SharedLayout) -> list[torch.Tensor]:
    """The scored values of each sequence of ``layout`` (views of ``values``)."""
    return list(torch.split(values, list(layout.scored)))


# ---- rows out of TRL's padded batches -----------------------------------------------------


def side_rows(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, completion: torch.Tensor
) -> tuple[list[list[int]], list[list[int]]]:
    """``(prompts, steps)`` of right-padded sequences, each its prompt then its (possibly
    truncated) step; ``completion`` marks the step tokens (a completion mask, or
    ``labels != -100``)."""
    ids = input_ids.tolist()
    lengths = attention_mask.sum(dim=1).tolist()
    counts = completion.sum(dim=1).tolist()
    prompts, steps = [], []
    for row, length, k in zip(ids, lengths, counts, strict=True):
        length, k = int(length), int(k)
        prompts.append(row[: length - k])
        steps.append(row[length - k : length])
    return prompts, steps


def rows_from_padded(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, completion: torch.Tensor
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """``(prompts, chosen, rejected)`` from a right-padded ``[chosen; rejected]`` batch (TRL's
    ``DataCollatorForPreference`` layout, ``completion`` its completion mask)."""
    prompts, steps = side_rows(input_ids, attention_mask, completion)
    n = len(prompts) // 2
    for i in range(n):
        if prompts[i] != prompts[n + i]:
            raise ValueError(f"row {i}: chosen and rejected prompts differ")
    return prompts[:n], steps[:n], steps[n:]


def scatter_to_padded(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token ``values`` (scored tokens in row-major order) placed where ``mask`` is True,
    zeros elsewhere (what TRL's fused LM head returns for ignored labels)."""
    if int(mask.sum()) != values.numel():
        raise ValueError(f"{values.numel()} scored tokens for {int(mask.sum())} mask positions")
    return values.new_zeros(mask.shape).masked_scatter(mask, values)


# ---- what TRL's trainers read -------------------------------------------------------------


def fused_preference_output(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    outputs: tuple[str, ...] = (LOG_PROBS,),
    temperature: float = 1.0,
):
    """What ``DPOTrainer``'s fused LM head returns for a ``[chosen; rejected]`` batch (the
    ``trl.trainer.utils.FusedCausalLMOutput`` of ``model(input_ids, attention_mask,
    labels=labels, fused_lm_head=True)``: per-token fields of shape ``(2B, L - 1)``, zero where
    the next label is -100), computed on shared prefixes."""
    from trl.trainer.utils import FusedCausalLMOutput

    completion = labels != -100
    layout = SharedLayout.for_pairs(*rows_from_padded(input_ids, attention_mask, completion))
    values = shared_token_logps(model, layout, outputs, temperature)
    mask = completion[:, 1:]
    fields = {k: scatter_to_padded(v, mask) for k, v in values.items() if k in FIELDS}
    return FusedCausalLMOutput(label_mask=mask, **fields)


@dataclass
class PairForward:
    """Per-pair quantities of a batch for the experimental CPO / ORPO trainers: step
    log-probs (summed or averaged), the chosen NLL's per-row sum and token count, and the
    per-token mean logits of each step (for their ``logits/*`` metrics)."""

    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    nll_sum: torch.Tensor | None
    nll_count: list[int]
    chosen_logits: list[torch.Tensor]
    rejected_logits: list[torch.Tensor]

    def concatenated(self, start: int, stop: int) -> tuple:
        """Rows ``start:stop`` as ``concatenated_forward`` returns them: ``(chosen_logps,
        rejected_logps, chosen_logits, rejected_logits, nll_loss)``, the NLL a token mean over
        the rows (what ``nn.CrossEntropyLoss`` gives on their padded labels) and the
        "logits" the steps' per-token mean logits (the metric's mean over step tokens)."""
        rows = slice(start, stop)
        if self.nll_sum is None:
            nll = torch.zeros((), device=self.chosen_logps.device)
        else:
            nll = self.nll_sum[rows].sum() / max(1, sum(self.nll_count[rows]))
        return (
            self.chosen_logps[rows],
            self.rejected_logps[rows],
            torch.cat(self.chosen_logits[rows]),
            torch.cat(self.rejected_logits[rows]),
            nll,
        )


def pair_forward(model, batch: dict, *, average: bool, nll: str) -> PairForward:
    """:class:`PairForward` of a CPO / ORPO batch (``DPODataCollatorWithPadding`` of rows with
    ``chosen_input_ids`` / ``_attention_mask`` / ``_labels`` and the same for rejected).

    ``average``: mean step log-prob instead of the sum (SimPO, ORPO). ``nll``: ``"none"``,
    ``"completion"`` (the chosen step's tokens: CPO's behaviour-cloning term) or
    ``"sequence"`` (every token of the chosen sequence after the first: ORPO's NLL)."""
    if nll not in ("none", "completion", "sequence"):
        raise ValueError(f"nll must be 'none', 'completion' or 'sequence', got {nll!r}")
    sides = {}
    for side in ("chosen", "rejected"):
        sides[side] = side_rows(
            batch[f"{side}_input_ids"],
            batch[f"{side}_attention_mask"],
            batch[f"{side}_labels"] != -100,
        )
    prompts, chosen = sides["chosen"]
    if prompts != sides["rejected"][0]:
        raise ValueError("chosen and rejected prompts differ")
    rejected = sides["rejected"][1]
    layout = SharedLayout.for_pairs(
        prompts, chosen, rejected, score_chosen_prompt=nll == "sequence"
    )
    values = shared_token_logps(model, layout, (LOG_PROBS, "mean_logits"))
    lps = split_per_sequence(values[LOG_PROBS], layout)
    means = split_per_sequence(values["mean_logits"], layout)
    n = len(prompts)
    steps = [len(s) for s in (*chosen, *rejected)]
    step_lp = [lp[len(lp) - k :] for lp, k in zip(lps, steps, strict=True)]
    step_ml = [m[len(m) - k :] for m, k in zip(means, steps, strict=True)]
    logps = torch.stack([x.mean() if average else x.sum() for x in step_lp])
    nll_sum, count = None, [0] * n
    if nll == "completion":
        nll_sum = -torch.stack([x.sum() for x in step_lp[:n]])
        count = steps[:n]
    elif nll == "sequence":
        with_prefix = [g for g, w in enumerate(layout.prefix_weight) if w]
        sizes = [len(layout.prefixes[g]) - 1 for g in with_prefix]
        prefix_sum = dict(
            zip(
                with_prefix,
                (x.sum() for x in torch.split(values["prefix_log_probs"], sizes)),
                strict=True,
            )
        )
        nll_sum = -torch.stack([lps[i].sum() + prefix_sum[layout.group[i]] for i in range(n)])
        count = [len(prompts[i]) + len(chosen[i]) - 1 for i in range(n)]
    return PairForward(logps[:n], logps[n:], nll_sum, count, step_ml[:n], step_ml[n:])


# ---- batching: a tree's pairs in one optimizer step --------------------------------------


def tree_grouped_order(tree_ids: Sequence[str], step: int, rng: random.Random) -> list[int]:
    """Row indices ordered so that each run of ``step`` consecutive rows (one optimizer step)
    holds as few trees as possible, in as many steps as a plain shuffle (``ceil(N / step)``,
    the last one short): trees in random order, placed largest first into the step with the
    least room that holds them whole, split over the roomiest steps when none does; steps in
    random order, the short one last."""
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    n = len(tree_ids)
    if not n:
        return []
    trees: dict[str, list[int]] = {}
    for i, t in enumerate(tree_ids):
        trees.setdefault(t, []).append(i)
    names = sorted(trees)
    rng.shuffle(names)
    names.sort(key=lambda t: -len(trees[t]))  # stable: ties keep the shuffled order
    n_steps = math.ceil(n / step)
    room = [step] * (n_steps - 1) + [n - step * (n_steps - 1)]
    bins: list[list[int]] = [[] for _ in range(n_steps)]
    for t in names:
        rows = list(trees[t])
        while rows:
            whole = [b for b in range(n_steps) if room[b] >= len(rows)]
            if whole:
                b = min(whole, key=lambda b: (room[b], b))
                take = len(rows)
            else:
                b = max(range(n_steps), key=lambda b: (room[b], -b))
                take = room[b]
            bins[b].extend(rows[:take])
            room[b] -= take
            rows = rows[take:]
    full = bins[:-1]
    rng.shuffle(full)
    return [i for b in (*full, bins[-1]) for i in b]


class TreeGroupedSampler(torch.utils.data.Sampler[int]):
    """Index sampler for a dataset with a ``tree_id`` column: :func:`tree_grouped_order`,
    reshuffled every epoch (seeded by ``seed`` and the epoch)."""

    def __init__(self, tree_ids: Sequence[str], step: int, seed: int = 0) -> None:
        self.tree_ids = list(tree_ids)
        self.step = step
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.tree_ids)

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1  # a loader that never calls set_epoch still reshuffles
        return iter(tree_grouped_order(self.tree_ids, self.step, rng))


def tree_ids_of(dataset) -> list[str] | None:
    names = getattr(dataset, "column_names", None) or ()
    return list(dataset["tree_id"]) if "tree_id" in names else None


# ---- scoring (no gradient) ---------------------------------------------------------------


def pair_logps_shared(
    model, rows: Sequence[dict], max_length: int, batch_pairs: int = 8
) -> list[tuple[float, float]]:
    """Summed step log-probs ``(chosen, rejected)`` of each pre-tokenised row
    (``prompt_ids`` / ``chosen_ids`` / ``rejected_ids``) under ``model`` as it is (active
    adapter, eval mode), steps cut to ``max_length`` like the collator; rows of one tree are
    batched together, ``batch_pairs`` pairs per forward."""
    tree = [str(r.get("tree_id", i)) for i, r in enumerate(rows)]
    order = tree_grouped_order(tree, batch_pairs, random.Random(0))
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(rows)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in range(0, len(order), batch_pairs):
                idx = order[b : b + batch_pairs]
                prompts = [list(rows[i]["prompt_ids"]) for i in idx]
                room = [max(0, max_length - len(p)) for p in prompts]
                chosen = [list(rows[i]["chosen_ids"])[:m] for i, m in zip(idx, room, strict=True)]
                rejected = [
                    list(rows[i]["rejected_ids"])[:m] for i, m in zip(idx, room, strict=True)
                ]
                layout = SharedLayout.for_pairs(prompts, chosen, rejected)
                lp = shared_token_logps(model, layout)[LOG_PROBS]
                sums = [float(x.sum()) for x in split_per_sequence(lp, layout)]
                for k, i in enumerate(idx):
                    out[i] = (sums[k], sums[len(idx) + k])
    finally:
        model.train(was_training)
    return out
