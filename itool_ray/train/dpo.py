"""Step-level preference optimisation on MCTS pairs (iTool section 4.3, eq. 10-11), TRL + LoRA.

**Data.** A pair's prompt is the chat prompt of its sample (tools + messages, generation
prompt) followed by the path so far as a partial assistant turn (``Pair.prefix``); chosen
and rejected are the next steps as raw continuations, no chat template around them. Rows are
pre-tokenised exactly as the policy engine builds its expansion prompts:
``ids(chat prompt) + ids(prefix)``, both without added special tokens, and the steps are the
token ids the policy sampled (``Pair.chosen_token_ids``; the text is encoded only when a pair
carries no ids). Nothing is appended to a step: TRL's own tokenisation would add an EOS token
after every step (and the experimental ORPO / CPO trainers a BOS too), which would teach the
policy to end its turn after one call. A terminal step that ended with the end-of-turn token
keeps it, since the policy sampled it.

**Reference model = the previous policy, one adapter all along.** The policy of iteration
i-1 is base + adapter A(i-1). Iteration i loads A(i-1) *trainable* on the original base (PEFT
adapter ``"default"``) and hands the PeftModel to ``trl.DPOTrainer`` with ``ref_model=None``.
TRL 1.16 then adds a second, frozen adapter ``"ref"`` holding a copy of A(i-1)'s weights and
computes the reference log-probs with ``"ref"`` active (``use_adapter(model, "ref")``), so
pi_ref = base + A(i-1) exactly, as eq. 10-11 ask. The trained adapter A(i) is saved alone
(``selected_adapters=["default"]``): one PEFT adapter relative to the *original* base, which
vLLM serves as one LoRA (a new LoRA id per version, no restart). Cost: one extra LoRA copy
(for Llama-3.1-8B, r=8 on all linear layers: about 21M parameters, 84 MB in float32) and a
reference forward pass per batch with the other adapter active; no second copy of the base
model. (The alternatives considered: merging A(i-1) into the base and training a fresh LoRA
gives a policy vLLM cannot serve as one adapter over the original base; a full frozen copy
of the model as ``ref_model`` costs a second base model, 16 GB for 8B in bf16.) The rank
stays r across iterations: every policy is base + a rank-r update. The first iteration, with
no adapter in, starts a fresh LoRA whose reference is the base model itself.

**Losses** (:data:`LOSSES`), each a small factory building the TRL trainer:

* ``dpo``: ``trl.DPOTrainer``, ``loss_type=["sigmoid"]`` (eq. 11), reference as above.
* ``ipo``: ``trl.DPOTrainer``, ``loss_type=["ipo"]`` (TRL normalises the log-ratios by the
  number of step tokens), reference as above.
* ``simpo``: ``trl.experimental.cpo.CPOTrainer``, ``loss_type="simpo"``, ``cpo_alpha=0``
  (pure SimPO, no behaviour-cloning term), ``simpo_gamma``. Reference-free.
* ``orpo``: ``trl.experimental.orpo.ORPOTrainer`` (odds-ratio term + NLL on the chosen
  step, lambda = ``beta``). Reference-free.

**Shared prefixes** (``DPOSettings.shared_prefix``, on by default): the pairs of one tree
share the chat prompt and differ in a short path prefix and a step, so each optimizer step
(``batch_size * grad_accum`` pairs, tree by tree: ``shared_prefix.TreeGroupedSampler``, used
with either forward) runs as one batch in which each distinct prompt is computed once and the
steps on its KV cache (``itool_ray.train.shared_prefix``); TRL's own loss code then runs on
the per-sequence log-probs, once per stock micro-batch of ``batch_size`` pairs, so losses,
gradients and logged metrics are the stock ones (the experimental trainers' ``logits/*``
metrics excepted: means over step tokens only). The reference log-probs of DPO / IPO are
computed once before training with the ``"ref"`` adapter, not per batch and epoch. With
``gradient_checkpointing`` (long multi-turn prompts) the training forward is packed: one
sequence per prefix, its tails after it, an attention that keeps tails apart
(``shared_prefix.packed_attention``), no KV cache for a recomputed layer to fill twice.
Reference log-probs already known (``runs/reference.json`` of a stopped round) are given to
TRL as its precomputed columns, with either forward, so no reference pass runs again.

TRL 1.16 moved CPO/SimPO and ORPO to ``trl.experimental``; when that import fails the loss
raises :class:`LossUnavailableError` with the reason. The reference-free losses train the
same continued adapter; they have no reference model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from trl import DPOConfig, DPOTrainer

from itool_ray.data import Sample, render_prompt
from itool_ray.mcts.pairs import Pair
from itool_ray.train._common import (
    ADAPTER_SUBDIR,
    Device,
    StopOnNonFinite,
    check_finite_training,
    cpu_threads,
    encode,
    first_last,
    history_series,
    load_policy,
    load_tokenizer,
    log,
    pick_device,
    prune_empty_dirs,
    save_adapter,
    training_kwargs,
)
from itool_ray.train.config import HOW_IT_RUNS, DPOSettings, LoraSettings

_ID_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


class LossUnavailableError(RuntimeError):
    """The selected preference loss is not available in the installed TRL."""


# ---- data ------------------------------------------------------------------------------


def pair_prompt(pair: Pair, tokenizer) -> str:
    """The chat prompt of the pair's sample (tools + messages, generation prompt)."""
    sample = Sample(
        id=pair.tree_id, tools=tuple(pair.tools), messages=tuple(pair.prompt_messages), gold=""
    )
    return render_prompt(sample, tokenizer)


def pairs_to_dataset(pairs: Sequence[Pair], tokenizer, *, use_token_ids: bool = True):
    """A ``datasets.Dataset`` of step-level preference rows (module docstring).

    Columns: ``prompt`` (chat prompt + prefix, text), ``chosen`` / ``rejected`` (step texts),
    ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` (what is trained on), and for
    bookkeeping ``tree_id``, ``node_id``, ``depth``, ``policy_version``, ``chosen_q``,
    ``rejected_q``. The prompt is ``ids(chat prompt) + Pair.prefix_token_ids`` and the steps
    are ``Pair.chosen_token_ids`` / ``rejected_token_ids``: the ids the replicas sampled, never
    a re-encoding of the text (the chat prompt is rendered and encoded exactly as the replicas
    build it). ``use_token_ids=False`` re-encodes prefix and steps instead (an ablation; also
    the only way to train pairs saved before prefix ids were kept, which otherwise raise).
    """
    from datasets import Dataset

    rows: list[dict[str, Any]] = []
    prompt_cache: dict[tuple, tuple[str, list[int]]] = {}
    for p in pairs:
        key = (p.tree_id, repr(p.prompt_messages), repr(p.tools))
        if key not in prompt_cache:
            chat = pair_prompt(p, tokenizer)
            prompt_cache[key] = (chat, encode(tokenizer, chat))
        chat, chat_ids = prompt_cache[key]
        steps = {}
        for side, text, ids in (
            ("chosen", p.chosen, p.chosen_token_ids),
            ("rejected", p.rejected, p.rejected_token_ids),
        ):
            steps[side] = list(ids) if use_token_ids and ids else encode(tokenizer, text)
            if not steps[side]:
                raise ValueError(f"pair {p.tree_id}/{p.node_id}: empty {side} step")
        rows.append(
            {
                "prompt": chat + p.prefix,
                "chosen": p.chosen,
                "rejected": p.rejected,
                "prompt_ids": chat_ids + _prefix_ids(p, tokenizer, use_token_ids),
                "chosen_ids": steps["chosen"],
                "rejected_ids": steps["rejected"],
                "tree_id": p.tree_id,
                "node_id": p.node_id,
                "depth": p.depth,
                "policy_version": p.policy_version,
                "chosen_q": p.chosen_q,
                "rejected_q": p.rejected_q,
            }
        )
    return Dataset.from_list(rows)


def _prefix_ids(pair: Pair, tokenizer, use_token_ids: bool) -> list[int]:
    if not pair.prefix:
        return []
    if not use_token_ids:
        return encode(tokenizer, pair.prefix)
    if not pair.prefix_token_ids:
        raise ValueError(
            f"pair {pair.tree_id}/{pair.node_id}: no prefix_token_ids (saved by an older "
            "version); token-exact training needs them (use_token_ids=False re-encodes)"
        )
    return list(pair.prefix_token_ids)


def _fit(dataset, max_length: int):
    """Drop rows whose prompt alone fills ``max_length`` (no step token left to compare)."""
    return dataset.filter(lambda row: len(row["prompt_ids"]) < max_length)


# ---- what the training learned, measured after it ------------------------------------


@dataclass(frozen=True)
class PairScore:
    """Pairs scored with a policy against its reference: per pair the log-ratio margin
    ``[log pi(chosen) - log ref(chosen)] - [log pi(rejected) - log ref(rejected)]`` (summed
    step-token log-probs, the quantity DPO's eq. 11 pushes up, without beta).

    Attributes:
        n: pairs scored.
        accuracy: fraction of pairs with a margin > 0.
        mean_margin: mean margin (nats).
        when: ``"after"`` (trained policy vs the reference it was trained against).
    """

    n: int
    accuracy: float
    mean_margin: float
    when: str = "after"

    @classmethod
    def of(cls, policy: Sequence[tuple[float, float]], reference: Sequence[tuple[float, float]]):
        margins = [
            (pc - rc) - (pr - rr) for (pc, pr), (rc, rr) in zip(policy, reference, strict=True)
        ]
        n = len(margins)
        if not n:
            return cls(0, 0.0, 0.0)
        return cls(n, sum(m > 0 for m in margins) / n, sum(margins) / n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "mean_margin": self.mean_margin,
            "when": self.when,
        }


def pair_logps(
    model, dataset, pad_id: int, max_length: int, *, shared: bool = False
) -> list[tuple[float, float]]:
    """Summed log-probs of each row's chosen and rejected step under ``model`` (eval mode),
    steps cut to ``max_length`` as in training; one forward pass per pair, or with
    ``shared`` a few pairs per forward on shared prompts (``shared_prefix``)."""
    from itool_ray.train.perplexity import response_logprobs

    if shared:
        from itool_ray.train.shared_prefix import pair_logps_shared

        return pair_logps_shared(model, list(dataset), max_length)

    was_training = model.training
    model.eval()
    out = []
    try:
        for row in dataset:
            prompt = list(row["prompt_ids"])
            room = max(0, max_length - len(prompt))
            c, r = response_logprobs(
                model,
                [prompt, prompt],
                [list(row["chosen_ids"])[:room], list(row["rejected_ids"])[:room]],
                pad_id,
            )
            out.append((float(sum(c)), float(sum(r))))
    finally:
        model.train(was_training)
    return out


# ---- trainers --------------------------------------------------------------------------


class _TreeBatches:
    """Mixin: optimizer steps of whole trees (``shared_prefix.TreeGroupedSampler`` over the
    ``tree_id`` column, same step count as a shuffle), whatever the forward, so the stock and
    the shared forward see the same batches; and the shared forward's switches:
    ``shared_prefix`` on, the trainer's batch is one optimizer step (``micro_batch`` rows per
    stock micro-batch, whose TRL losses are averaged as gradient accumulation would)."""

    def _init_shared(self, shared_prefix: bool, micro_batch: int | None) -> None:
        self._shared = shared_prefix
        self._micro_batch = micro_batch

    def _get_train_sampler(self, train_dataset=None):
        from itool_ray.train.shared_prefix import TreeGroupedSampler, tree_ids_of

        trees = tree_ids_of(self.train_dataset)
        if trees is None:
            return super()._get_train_sampler(train_dataset)
        step = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
        return TreeGroupedSampler(trees, step, self.args.seed)

    def _micro_slices(self, rows: int) -> list[tuple[int, int]]:
        size = self._micro_batch or rows
        return [(a, min(a + size, rows)) for a in range(0, rows, size)]


def _returning(output):
    """A stand-in for the model whose call returns ``output`` (a precomputed forward)."""
    return lambda *args, **kwargs: output


class _StepDPOTrainer(_TreeBatches, DPOTrainer):
    """DPOTrainer that takes rows already tokenised by :func:`pairs_to_dataset` as they are
    (TRL would re-tokenise the text and append an EOS token to every step).

    ``shared_prefix=True``: the policy forward is ``shared_prefix.fused_preference_output``
    (each distinct prompt of the step once, TRL's loss and metrics on its output) and the
    reference log-probs are computed once, here, on shared prefixes with the ``"ref"``
    adapter (TRL's ``precompute_ref_log_probs`` path, without its model hash and cache
    file)."""

    def __init__(
        self, *args, shared_prefix: bool = False, micro_batch: int | None = None, **kwargs
    ) -> None:
        self._init_shared(shared_prefix, micro_batch)
        super().__init__(*args, **kwargs)
        known = set(_REF_COLUMNS) <= set(self.train_dataset.column_names)
        if shared_prefix and not known:
            self.train_dataset = self._with_ref_logps(self.train_dataset)
        if shared_prefix or known:  # TRL reads the reference from the batch
            self.precompute_ref_logps = True

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if set(_ID_COLUMNS) <= set(dataset.column_names):
            return _fit(dataset, args.max_length) if args.max_length is not None else dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _fused_outputs(self) -> tuple[str, ...]:
        # what DPOTrainer patches its fused LM head to return
        extra = ("log_sum_sq_probs",) if self.use_weighting else ()
        return ("log_probs", "entropy", "mean_logits", "is_top1", *extra)

    def _with_ref_logps(self, dataset):
        from trl.trainer.utils import use_adapter

        from itool_ray.train.shared_prefix import pair_logps_shared

        model = self.accelerator.unwrap_model(self.model)
        ref = "ref" if "ref" in getattr(model, "peft_config", {}) else None
        step = self.args.per_device_train_batch_size
        with use_adapter(model, ref), self.accelerator.autocast():
            logps = pair_logps_shared(model, list(dataset), self.args.max_length, step)
        return with_reference(dataset, logps)

    def _compute_loss(self, model, inputs, return_outputs):
        if not self._shared or return_outputs or self.aux_loss_enabled:
            return super()._compute_loss(model, inputs, return_outputs)
        from itool_ray.train.shared_prefix import fused_preference_output

        ids = inputs["input_ids"]
        labels = ids.masked_fill(inputs["completion_mask"] == 0, -100)
        out = fused_preference_output(
            self.accelerator.unwrap_model(model),
            ids,
            inputs["attention_mask"],
            labels,
            self._fused_outputs(),
        )
        rows = ids.shape[0] // 2
        slices = self._micro_slices(rows)
        loss = 0.0
        for a, b in slices:  # TRL's loss per stock micro-batch, averaged like accumulation
            pick = torch.cat([torch.arange(a, b), torch.arange(rows + a, rows + b)])
            pick = pick.to(ids.device)
            part = {
                k: v.index_select(0, pick)
                for k, v in inputs.items()
                if k in ("input_ids", "attention_mask", "completion_mask")
            }
            for k in ("ref_chosen_logps", "ref_rejected_logps"):
                part[k] = inputs[k][a:b]
            sliced = type(out)(
                **{k: None if v is None else v.index_select(0, pick) for k, v in out.items()}
            )
            loss = loss + super()._compute_loss(_returning(sliced), part, False)
        return loss / len(slices)


_REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
"""TRL's precomputed reference log-prob columns (summed over each step's tokens)."""


def with_reference(dataset, ref: Sequence[tuple[float, float]]):
    """``dataset`` with the reference's ``(chosen, rejected)`` log-probs as TRL's
    precomputed columns."""
    if len(ref) != len(dataset):
        raise ValueError(f"{len(ref)} reference scores for {len(dataset)} rows")
    dataset = dataset.add_column(_REF_COLUMNS[0], [float(c) for c, _ in ref])
    return dataset.add_column(_REF_COLUMNS[1], [float(r) for _, r in ref])


def _ids_row(feature: dict[str, Any], max_length: int) -> dict[str, list[int]]:
    """The row layout of TRL's experimental CPO / ORPO trainers, from our token ids (no BOS
    or EOS added); steps are cut to fit ``max_length``."""
    prompt = list(feature["prompt_ids"])
    room = max(0, max_length - len(prompt))
    out: dict[str, list[int]] = {
        "prompt_input_ids": prompt,
        "prompt_attention_mask": [1] * len(prompt),
    }
    for side in ("chosen", "rejected"):
        step = list(feature[f"{side}_ids"])[:room]
        out[f"{side}_input_ids"] = prompt + step
        out[f"{side}_attention_mask"] = [1] * (len(prompt) + len(step))
        out[f"{side}_labels"] = [-100] * len(prompt) + step
    return out


def _experimental(module: str, names: tuple[str, str]):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the "trl.experimental is unstable" notice
            mod = __import__(f"trl.experimental.{module}", fromlist=list(names))
            return tuple(getattr(mod, n) for n in names)
    except (ImportError, AttributeError) as e:
        import trl

        raise LossUnavailableError(
            f"trl {trl.__version__} has no trl.experimental.{module}.{'/'.join(names)} ({e})"
        ) from e


class _StepPairTrainer(_TreeBatches):
    """Mixin of the experimental CPO / ORPO trainers: rows from token ids, tree batches, and
    with ``shared_prefix`` the pair quantities of ``concatenated_forward`` computed on shared
    prefixes (``shared_prefix.pair_forward``), TRL's ``get_batch_loss_metrics`` run on them
    per stock micro-batch."""

    _nll = "none"  # the chosen NLL term: "completion" (CPO's alpha) or "sequence" (ORPO)

    def __init__(
        self, *args, shared_prefix: bool = False, micro_batch: int | None = None, **kwargs
    ) -> None:
        self._init_shared(shared_prefix, micro_batch)
        self._shared_rows = None
        super().__init__(*args, **kwargs)

    def tokenize_row(self, feature, model=None):
        return _ids_row(feature, self.max_length)

    def _nll_mode(self) -> str:
        if self._nll == "completion":
            return "completion" if getattr(self, "cpo_alpha", 0) else "none"
        return self._nll

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._shared or return_outputs or self.aux_loss_enabled:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from itool_ray.train.shared_prefix import pair_forward

        average = self._nll == "sequence" or self.loss_type in ("ipo", "simpo")
        forward = pair_forward(
            self.accelerator.unwrap_model(model), inputs, average=average, nll=self._nll_mode()
        )
        slices = self._micro_slices(len(forward.chosen_logps))
        loss = 0.0
        try:
            for a, b in slices:  # TRL's loss per stock micro-batch, averaged like accumulation
                self._shared_rows = forward.concatenated(a, b)
                loss = loss + super().compute_loss(model, inputs, False, num_items_in_batch)
        finally:
            self._shared_rows = None
        return loss / len(slices)

    def concatenated_forward(self, model, batch):
        if self._shared_rows is not None:
            return self._shared_rows
        return super().concatenated_forward(model, batch)


_ID_TRAINERS: dict[str, type] = {}


def _ids_trainer(module: str, trainer_name: str, config_name: str) -> tuple[type, type]:
    """Subclass of an experimental CPO / ORPO trainer that builds its rows from token ids."""
    trainer_cls, config_cls = _experimental(module, (trainer_name, config_name))
    if trainer_name not in _ID_TRAINERS:
        nll = "sequence" if module == "orpo" else "completion"
        _ID_TRAINERS[trainer_name] = type(
            f"_Step{trainer_name}", (_StepPairTrainer, trainer_cls), {"_nll": nll}
        )
    return _ID_TRAINERS[trainer_name], config_cls


def shared_prefix_on(s: DPOSettings) -> bool:
    """Whether training runs the shared-prefix forward (``s.shared_prefix``): on a KV cache,
    or packed with gradient checkpointing (``shared_prefix.packed_attention``)."""
    return s.shared_prefix


def _batching(s: DPOSettings, common: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trainer arguments and shared-prefix switches: with the shared forward one trainer
    batch is one optimizer step (``batch_size * grad_accum`` pairs, so its prompts run once),
    the loss averaged over the stock micro-batches of ``batch_size``."""
    if not shared_prefix_on(s):
        return common, {}
    merged = {
        **common,
        "per_device_train_batch_size": s.batch_size * s.grad_accum,
        "gradient_accumulation_steps": 1,
    }
    return merged, {"shared_prefix": True, "micro_batch": s.batch_size}


def _dpo_family(loss_type: str):
    def make(model, tokenizer, dataset, s: DPOSettings, common: dict[str, Any]):
        common, shared = _batching(s, common)
        args = DPOConfig(**common, beta=s.beta, loss_type=[loss_type], max_length=s.max_length)
        return _StepDPOTrainer(
            model=model,
            ref_model=None,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            **shared,
        )

    return make


def _make_simpo(model, tokenizer, dataset, s: DPOSettings, common: dict[str, Any]):
    trainer_cls, config_cls = _ids_trainer("cpo", "CPOTrainer", "CPOConfig")
    common, shared = _batching(s, common)
    args = config_cls(
        **common,
        beta=s.beta,
        loss_type="simpo",
        cpo_alpha=0.0,
        simpo_gamma=s.simpo_gamma,
        max_length=s.max_length,
        remove_unused_columns=False,
    )
    return trainer_cls(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, **shared
    )


def _make_orpo(model, tokenizer, dataset, s: DPOSettings, common: dict[str, Any]):
    trainer_cls, config_cls = _ids_trainer("orpo", "ORPOTrainer", "ORPOConfig")
    common, shared = _batching(s, common)
    args = config_cls(**common, beta=s.beta, max_length=s.max_length, remove_unused_columns=False)
    return trainer_cls(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, **shared
    )


@dataclass(frozen=True)
class PreferenceLoss:
    """A registered preference loss.

    Attributes:
        name: the ``DPOSettings.loss`` value.
        trl: the TRL trainer and its loss setting (for reports).
        uses_reference: whether the loss compares against the previous policy.
        make: ``(model, tokenizer, dataset, settings, common_training_kwargs) -> Trainer``.
        probe: raises :class:`LossUnavailableError` when this TRL lacks the loss.
    """

    name: str
    trl: str
    uses_reference: bool
    make: Callable[..., Any]
    probe: Callable[[], object] = field(default=lambda: None)


LOSSES: dict[str, PreferenceLoss] = {
    "dpo": PreferenceLoss("dpo", "DPOTrainer loss_type=['sigmoid']", True, _dpo_family("sigmoid")),
    "ipo": PreferenceLoss("ipo", "DPOTrainer loss_type=['ipo']", True, _dpo_family("ipo")),
    "simpo": PreferenceLoss(
        "simpo",
        "experimental CPOTrainer loss_type='simpo', cpo_alpha=0",
        False,
        _make_simpo,
        lambda: _experimental("cpo", ("CPOTrainer", "CPOConfig")),
    ),
    "orpo": PreferenceLoss(
        "orpo",
        "experimental ORPOTrainer",
        False,
        _make_orpo,
        lambda: _experimental("orpo", ("ORPOTrainer", "ORPOConfig")),
    ),
}


def loss_unavailable_reason(name: str) -> str | None:
    """None when loss ``name`` can be trained with the installed TRL, else why not."""
    if name not in LOSSES:
        return f"unknown loss {name!r}; known: {sorted(LOSSES)}"
    try:
        LOSSES[name].probe()
    except LossUnavailableError as e:
        return str(e)
    return None


# ---- entry point -----------------------------------------------------------------------


@dataclass(frozen=True)
class DPOResult:
    """What :func:`train_dpo` did and where the new adapter is.

    ``losses`` / ``margins`` hold the per-step ``loss`` and ``rewards/margins`` the trainer
    logged (for ``dpo`` / ``ipo`` a margin is beta * (chosen - rejected) log-ratio against
    the previous policy; the reference-free losses log their own reward definition).
    """

    adapter_dir: Path
    loss: str
    device: str
    pairs: int
    dropped: int
    steps: int
    losses: tuple[float, ...]
    margins: tuple[float, ...]
    accuracies: tuple[float, ...]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    trained_pairs: PairScore | None = None
    heldout_pairs: PairScore | None = None
    score_seconds: float = 0.0
    resumed_at: int = 0
    """The optimizer step a stopped round continued from (0: it ran from the start;
    ``seconds`` then counts this run only)."""

    @property
    def first_loss(self) -> float | None:
        return first_last(self.losses)[0]

    @property
    def last_loss(self) -> float | None:
        return first_last(self.losses)[1]

    @property
    def first_margin(self) -> float | None:
        return first_last(self.margins)[0]

    @property
    def last_margin(self) -> float | None:
        return first_last(self.margins)[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "adapter_dir": str(self.adapter_dir),
            "loss": self.loss,
            "device": self.device,
            "pairs": self.pairs,
            "dropped": self.dropped,
            "steps": self.steps,
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
            "first_margin": self.first_margin,
            "last_margin": self.last_margin,
            "losses": list(self.losses),
            "margins": list(self.margins),
            "accuracies": list(self.accuracies),
            "seconds": self.seconds,
            "resumed_at": self.resumed_at,
            "settings": dict(self.settings),
            "trained_pairs": self.trained_pairs.to_dict() if self.trained_pairs else None,
            "heldout_pairs": self.heldout_pairs.to_dict() if self.heldout_pairs else None,
            "score_seconds": self.score_seconds,
        }


# ---- resumable rounds ------------------------------------------------------------------

_ROUND_MARKER = "ROUND"
"""In ``out_dir/runs``: what the checkpoints there were trained on (:func:`_round_identity`)."""
_CHECKPOINT = "checkpoint-"


def _round_identity(
    dataset, settings: DPOSettings, adapter_in: str | Path | None, heldout=None
) -> str:
    """SHA-256 of what a round's checkpoints depend on: its rows (token ids), the settings
    that change what it computes, and the adapter it starts from (and, for its reference
    scores, the held-out rows)."""
    spec = {k: v for k, v in settings.to_dict().items() if k not in HOW_IT_RUNS}
    body = {"rows": dataset.to_dict(), "settings": spec, "adapter_in": str(adapter_in)}
    if heldout is not None:
        body["heldout"] = heldout.to_dict() if len(heldout) else []
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


_REFERENCE = "reference.json"
"""In ``out_dir/runs``: the reference's pair scores of a stopped round, kept for its resume
(a pass over every pair: about 40 minutes for the multi-turn preset's 23 on 2 cores)."""


def _reference_scores(runs: Path, identity: str) -> dict[str, list[tuple[float, float]]]:
    """The reference scores a stopped round of the same ``identity`` kept (none: {})."""
    try:
        kept = json.loads((runs / _REFERENCE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(kept, dict) or kept.get("identity") != identity:
        return {}
    return {k: [tuple(x) for x in v] for k, v in (kept.get("scores") or {}).items()}


def _keep_reference_scores(runs: Path, identity: str, ref: dict) -> None:
    tmp = runs / (_REFERENCE + ".tmp")
    tmp.write_text(json.dumps({"identity": identity, "scores": ref}))
    tmp.replace(runs / _REFERENCE)


def _checkpoint_step(path: Path) -> int:
    return int(path.name[len(_CHECKPOINT) :])


def _checkpoint_to_resume(runs: Path, identity: str) -> Path | None:
    """The latest complete checkpoint under ``runs`` of the same round (``identity``), or
    None. Checkpoints of another round (other pairs, settings or starting adapter) are
    removed; a checkpoint without its trainer state (a stop while it was written) is
    skipped."""
    marker = runs / _ROUND_MARKER
    if marker.is_file() and marker.read_text() == identity:
        done = [
            c
            for c in runs.glob(f"{_CHECKPOINT}*")
            if c.name[len(_CHECKPOINT) :].isdigit() and (c / "trainer_state.json").is_file()
        ]
        return max(done, key=_checkpoint_step) if done else None
    if runs.exists():
        if any(runs.glob(f"{_CHECKPOINT}*")):
            log.warning("preference training: checkpoints of another round in %s removed", runs)
        shutil.rmtree(runs)
    runs.mkdir(parents=True)
    marker.write_text(identity)
    return None


def _load_trained_adapter(model, checkpoint: Path) -> None:
    """The trained (``"default"``) adapter's weights from ``checkpoint``. The Trainer's own
    resume loads only the adapters saved in subfolders when there are any (the ``"ref"``
    reference of DPO / IPO), not the one PEFT saves at the checkpoint's root."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(checkpoint / "adapter_model.safetensors")
    loaded = set_peft_model_state_dict(model, weights, adapter_name="default")
    unexpected = getattr(loaded, "unexpected_keys", None)
    if unexpected:
        raise RuntimeError(f"{checkpoint}: adapter weights that fit no module: {unexpected[:3]}")


def _drop_checkpoints(runs: Path) -> None:
    """A finished round's checkpoints and marker (its adapter is saved apart)."""
    for c in runs.glob(f"{_CHECKPOINT}*"):
        shutil.rmtree(c, ignore_errors=True)
    (runs / _ROUND_MARKER).unlink(missing_ok=True)
    (runs / _REFERENCE).unlink(missing_ok=True)


def make_preference_trainer(
    model,
    tokenizer,
    dataset,
    settings: DPOSettings,
    output_dir: str | Path,
    *,
    device: Device | None = None,
    callbacks: list | None = None,
):
    """The TRL trainer of ``settings.loss`` on ``model`` (a PeftModel whose ``"default"``
    adapter is trained) for a dataset from :func:`pairs_to_dataset`."""
    spec = LOSSES[settings.loss]
    reason = loss_unavailable_reason(settings.loss)
    if reason is not None:
        raise LossUnavailableError(
            f"loss {settings.loss!r} ({spec.trl}) is not available: {reason}"
        )
    common = training_kwargs(settings, device or pick_device(), output_dir)
    if settings.checkpoint_steps:
        common.update(
            save_strategy="steps", save_steps=settings.checkpoint_steps, save_total_limit=1
        )
    trainer = spec.make(model, tokenizer, dataset, settings, common)
    for cb in callbacks or ():
        trainer.add_callback(cb)
    return trainer


def train_dpo(
    model_dir: str | Path,
    adapter_in: str | Path | None,
    pairs: Sequence[Pair],
    out_dir: str | Path,
    settings: DPOSettings | None = None,
    lora: LoraSettings | None = None,
    *,
    callbacks: list | None = None,
    heldout: Sequence[Pair] = (),
    score: bool = True,
) -> DPOResult:
    """One iteration of preference optimisation (module docstring); the new adapter and the
    tokenizer are saved to ``out_dir/adapter`` (PEFT format, relative to ``model_dir``).

    Args:
        model_dir: the original base model folder.
        adapter_in: the previous policy's adapter (SFT or the previous iteration); ``None``
            starts a fresh LoRA (reference = the base model).
        pairs: step-level pairs from the MCTS.
        out_dir: output folder; trainer scratch goes to ``out_dir/runs``.
        settings: preference settings (default :class:`DPOSettings`).
        lora: shape of a fresh adapter (ignored when ``adapter_in`` is given).
        callbacks: extra ``transformers.TrainerCallback`` objects (progress).
        heldout: pairs from trees of samples it does not train on, scored after training.
        score: score the trained pairs and ``heldout`` after training with the trained
            policy against its reference (the policy as it was before training: the previous
            adapter, or the base model for a fresh LoRA), as :class:`PairScore`.
    """
    settings = settings or DPOSettings()
    lora = lora or LoraSettings()
    if not pairs:
        raise ValueError("train_dpo: no pairs")
    reason = loss_unavailable_reason(settings.loss)
    if reason is not None:
        raise LossUnavailableError(f"loss {settings.loss!r} is not available: {reason}")
    out = Path(out_dir)
    device = pick_device()
    with cpu_threads(settings.cpu_threads):
        tokenizer = load_tokenizer(model_dir)
        dataset = pairs_to_dataset(pairs, tokenizer)
        kept = _fit(dataset, settings.max_length)
        dropped = len(dataset) - len(kept)
        if dropped:
            log.warning(
                "DPO: %d of %d pairs dropped (prompt fills max_length=%d)",
                dropped,
                len(dataset),
                settings.max_length,
            )
        if len(kept) == 0:
            raise ValueError(
                f"train_dpo: every pair's prompt fills max_length={settings.max_length}"
            )
        model = load_policy(model_dir, adapter_in, lora, device.dtype, seed=settings.seed)
        spec = LOSSES[settings.loss]
        reference = "none"
        if spec.uses_reference:
            reference = f"adapter {adapter_in}" if adapter_in is not None else "base model"
        shared = shared_prefix_on(settings)
        log.info(
            "preference training on %s: loss=%s (%s), %d pairs, reference=%s, forward=%s",
            device.name,
            settings.loss,
            spec.trl,
            len(kept),
            reference,
            "shared-prefix" if shared else "stock",
        )
        held = _fit(pairs_to_dataset(heldout, tokenizer), settings.max_length) if heldout else []
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # with the shared forward, DPO / IPO precompute the trained pairs' reference anyway
        reuse = shared and spec.uses_reference
        runs = out / "runs"
        resume = _checkpoint_to_resume(runs, _round_identity(kept, settings, adapter_in))
        t0 = time.perf_counter()
        ref = {}
        ref_identity = _round_identity(kept, settings, adapter_in, held)
        if score:  # the reference: this model before its update (= TRL's reference for DPO)
            sets = [("heldout", held)] if reuse else [("trained", kept), ("heldout", held)]
            ref = _reference_scores(runs, ref_identity)
            for k, d in sets:
                if len(ref.get(k) or ()) != len(d):
                    ref[k] = pair_logps(model, d, pad, settings.max_length, shared=shared)
                    _keep_reference_scores(runs, ref_identity, ref)
        score_s = time.perf_counter() - t0
        start = time.perf_counter()  # the reference precompute (shared forward) counts here
        # the trained pairs' reference already known (kept from a stopped round, or scored
        # above for the stock forward): TRL computes none again
        known = spec.uses_reference and len(ref.get("trained") or ()) == len(kept)
        rows = with_reference(kept, ref["trained"]) if known else kept
        trainer = make_preference_trainer(
            model,
            tokenizer,
            rows,
            settings,
            runs,
            device=device,
            callbacks=[StopOnNonFinite(), *(callbacks or [])],
        )
        if score and reuse and not known:
            data = trainer.train_dataset
            ref["trained"] = list(zip(*(data[c] for c in _REF_COLUMNS), strict=True))
            _keep_reference_scores(runs, ref_identity, ref)
        if resume is not None:
            log.info("preference training: continuing from %s", resume)
            _load_trained_adapter(model, resume)
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        resumed_at = _checkpoint_step(resume) if resume is not None else 0
        # before anything is scored, saved or broadcast: a NaN/Inf loss or weight fails here
        check_finite_training(
            model, trainer.state.log_history, what=f"{settings.loss} (lr={settings.lr:g})"
        )
        seconds = time.perf_counter() - start
        scores: dict[str, PairScore | None] = {"trained": None, "heldout": None}
        t0 = time.perf_counter()
        for k, d in (("trained", kept), ("heldout", held)):
            if score and len(d):
                after = pair_logps(model, d, pad, settings.max_length, shared=shared)
                scores[k] = PairScore.of(after, ref[k])
        score_s += time.perf_counter() - t0
        history = trainer.state.log_history
        _drop_checkpoints(runs)
        prune_empty_dirs(runs)
        result = DPOResult(
            adapter_dir=save_adapter(model, tokenizer, out / ADAPTER_SUBDIR),
            loss=settings.loss,
            device=device.name,
            pairs=len(kept),
            dropped=dropped,
            steps=trainer.state.global_step,
            losses=tuple(history_series(history, "loss")),
            margins=tuple(history_series(history, "rewards/margins")),
            accuracies=tuple(history_series(history, "rewards/accuracies")),
            seconds=seconds,
            settings=settings.to_dict(),
            trained_pairs=scores["trained"],
            heldout_pairs=scores["heldout"],
            score_seconds=score_s,
            resumed_at=resumed_at,
        )
    log.info(
        "preference training: %d steps, loss %s -> %s, margin %s -> %s, %.1fs; after it: "
        "trained pairs %s, held-out pairs %s",
        result.steps,
        result.first_loss,
        result.last_loss,
        result.first_margin,
        result.last_margin,
        seconds,
        result.trained_pairs,
        result.heldout_pairs,
    )
    return result
