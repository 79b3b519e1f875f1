"""Preference training throughput: TRL's stock concatenated forward vs the shared-prefix one.

    .venv/bin/python jobs/bench_preference.py                       # CPU, the main job's shape
    .venv/bin/python jobs/bench_preference.py --pairs runs/itool/iter1-mcts/pairs.jsonl
    .venv/bin/python jobs/bench_preference.py --pairs runs/itool-mt/iter1-mcts/pairs.jsonl \
        --limit 4 --max-length 8192 --gradient-checkpointing     # multi-turn rows: packed

One run, same pairs, same model, same settings; each forward trains from the same adapter in
a fresh model: ``make_preference_trainer`` (with the shared forward this precomputes the
reference log-probs) + ``trainer.train()``, timed together. Prints pairs/s and pair tokens/s
(prompt + chosen + prompt + rejected, TRL's ``num_tokens``) of each and the ratios, the
per-step losses of both (the shared forward must reproduce them), the 1-minute load average
before and after each run and the process's CPU seconds (the machine may be shared: pairs per
CPU-second is the figure other load disturbs least); ``--rounds N`` alternates the modes N
times and keeps each mode's fastest run. Optionally
(``--score``) the PairScore log-prob pass of the DPO stage both ways.

Pairs: ``--pairs FILE`` (a rollout's ``pairs.jsonl``), else built like the main job's: the
chat prompts of synthesized samples (``synth``, ~700 tokens with the tool list), one tree per
sample and ``--pairs-per-tree`` pairs at depths 0, 1, 1, 2, 3, ... (two depth-1 nodes: after
the right and after the wrong first step), steps cut at call boundaries and at 32 tokens
(``mcts.max_step_tokens``), the gold's steps chosen and another sample's rejected. Settings
default to the main job's DPO stage (batch 1 x accumulation 4, max_length 1536, lr 1e-4,
1 epoch, 2 threads), training an adapter continued from a saved one (TRL's ``"ref"``
adapter, as iteration 1 continues the SFT adapter).

GPU recipe (a CUDA node after ``ITOOL_EXTRA=gpu bash cluster/setup.sh``; bf16 is picked
automatically, ``--threads`` is ignored there):

    .venv/bin/python jobs/bench_preference.py --model /models/Llama-3.1-8B-Instruct \\
        --trees 16 --pairs-per-tree 5 --batch-size 4 --grad-accum 1 --json runs/bench/pref-gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

MAX_STEP_TOKENS = 32


def _steps(tok, text: str) -> list[list[int]]:
    """A call-list response cut as the search cuts it: at call boundaries, and every
    ``MAX_STEP_TOKENS`` tokens inside a long call."""
    from itool_ray.calls.parse import next_call_boundary
    from itool_ray.train._common import encode

    cuts, start = [], 0
    while (end := next_call_boundary(text, start, include_close=True)) is not None:
        cuts.append(end)
        start = end
    if not cuts or cuts[-1] < len(text):
        cuts.append(len(text))
    out, prev = [], 0
    for end in cuts:
        ids = encode(tok, text[prev:end])
        out.extend(ids[k : k + MAX_STEP_TOKENS] for k in range(0, len(ids), MAX_STEP_TOKENS))
        prev = end
    return [s for s in out if s]


def synthetic_pairs(tok, trees: int, per_tree: int, seed: int):
    """``trees`` x ``per_tree`` pairs shaped like the main job's (module docstring)."""
    from itool_ray.datasets import load_named
    from itool_ray.mcts.pairs import Pair

    samples = load_named("synth", limit=trees + 1, seed=seed)
    rng = random.Random(seed)
    depths = [0, 1, 1, *range(2, per_tree)][:per_tree]
    pairs = []
    for t, sample in enumerate(samples[:trees]):
        gold = _steps(tok, sample.gold)
        wrong = _steps(tok, samples[t + 1].gold) or [[tok.eos_token_id]]
        while len(gold) < max(depths) + 2:  # a search path continues past a short gold
            gold.append(rng.choice(wrong))
        for k, depth in enumerate(depths):
            # the second depth-1 node continues the root's rejected step
            path = [wrong[0]] if (depth == 1 and k == 2) else gold[:depth]
            prefix = [i for s in path for i in s]
            chosen, rejected = gold[depth], wrong[(depth + k) % len(wrong)]
            pairs.append(
                Pair(
                    prompt_messages=tuple(sample.messages),
                    tools=tuple(sample.tools),
                    prefix=tok.decode(prefix),
                    chosen=tok.decode(chosen),
                    rejected=tok.decode(rejected),
                    chosen_token_ids=tuple(chosen),
                    rejected_token_ids=tuple(rejected),
                    chosen_q=1.0,
                    rejected_q=0.0,
                    chosen_n=2,
                    rejected_n=1,
                    tree_id=sample.id,
                    node_id=k,
                    depth=depth,
                    policy_version=1,
                    prefix_token_ids=tuple(prefix),
                )
            )
    return pairs


def shape(dataset, pairs) -> dict:
    prompt = [len(r) for r in dataset["prompt_ids"]]
    path_of = {(p.tree_id, p.node_id): len(p.prefix_token_ids or ()) for p in pairs}
    path = [path_of[k] for k in zip(dataset["tree_id"], dataset["node_id"], strict=True)]
    steps = [
        len(c) + len(r) for c, r in zip(dataset["chosen_ids"], dataset["rejected_ids"], strict=True)
    ]
    return {
        "pairs": len(prompt),
        "trees": len(set(dataset["tree_id"])),
        "chat_prompt_tokens": statistics.mean(a - b for a, b in zip(prompt, path, strict=True)),
        "path_prefix_tokens": statistics.mean(path),
        "step_tokens": statistics.mean(steps) / 2,
        "pair_tokens": sum(2 * p + s for p, s in zip(prompt, steps, strict=True)),
    }


def token_costs(dataset, batch_size: int, grad_accum: int, seed: int) -> dict:
    """Tokens each forward runs in one epoch (padding included), load-free: the stock one
    per micro-batch of ``batch_size`` pairs (2 sequences a pair, padded to the longest) for
    the policy (forward + backward, counted 3x) and again for the reference (forward); the
    shared one per optimizer step (``shared_prefix.SharedLayout.tokens``) for the policy
    (3x) and once for the reference precompute. Batches as ``TreeGroupedSampler`` cuts them."""
    from itool_ray.train.shared_prefix import SharedLayout, TreeGroupedSampler

    step = batch_size * grad_accum
    order = list(TreeGroupedSampler(list(dataset["tree_id"]), step, seed))
    rows = [dataset[i] for i in order]

    def seq(r):
        return len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"]))

    stock = sum(
        2 * len(b) * max(map(seq, b))
        for b in (rows[k : k + batch_size] for k in range(0, len(rows), batch_size))
    )
    shared = 0
    for k in range(0, len(rows), step):
        b = rows[k : k + step]
        layout = SharedLayout.for_pairs(
            [r["prompt_ids"] for r in b],
            [r["chosen_ids"] for r in b],
            [r["rejected_ids"] for r in b],
        )
        shared += layout.tokens()["padded"]
    return {
        "stock_tokens": 4 * stock,
        "shared_tokens": 4 * shared,
        "stock_per_shared": stock / shared,
    }


def run_mode(model_dir, adapter, tok, dataset, settings, out_dir) -> dict:
    import torch

    from itool_ray.train._common import history_series, load_policy, pick_device
    from itool_ray.train.dpo import make_preference_trainer

    device = pick_device()
    model = load_policy(model_dir, adapter, None, device.dtype)
    load_before = os.getloadavg()[0]
    c0 = time.process_time()
    t0 = time.perf_counter()
    trainer = make_preference_trainer(model, tok, dataset, settings, out_dir, device=device)
    built = time.perf_counter() - t0
    trainer.train()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    history = trainer.state.log_history
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "setup_seconds": built,
        "load_avg_1min": [load_before, os.getloadavg()[0]],
        "losses": history_series(history, "loss"),
        "margins": history_series(history, "rewards/margins"),
    }


def score_times(model_dir, adapter, tok, dataset, max_length: int) -> dict:
    from itool_ray.train._common import load_policy, pick_device
    from itool_ray.train.dpo import pair_logps

    model = load_policy(model_dir, adapter, None, pick_device().dtype)
    out = {}
    for name, shared in (("stock", False), ("shared", True)):
        t0, c0 = time.perf_counter(), time.process_time()
        logps = pair_logps(model, dataset, tok.pad_token_id, max_length, shared=shared)
        out[name] = {
            "seconds": time.perf_counter() - t0,
            "logps": logps,
            "cpu_seconds": time.process_time() - c0,
        }
    gap = max(
        abs(a - b)
        for p, q in zip(out["stock"]["logps"], out["shared"]["logps"], strict=True)
        for a, b in zip(p, q, strict=True)
    )
    return {
        **{k: v["seconds"] for k, v in out.items()},
        **{f"{k}_cpu": v["cpu_seconds"] for k, v in out.items()},
        "max_abs_logp_diff": gap,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2, tiny or a model folder")
    ap.add_argument("--pairs", type=Path, help="a rollout's pairs.jsonl (default: synthesized)")
    ap.add_argument("--trees", type=int, default=4)
    ap.add_argument("--pairs-per-tree", type=int, default=5)
    ap.add_argument("--loss", default="dpo", choices=["dpo", "ipo", "simpo", "orpo"])
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--grad-accum", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=1536)
    ap.add_argument("--limit", type=int, help="the first N pairs only (long multi-turn rows)")
    ap.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="train.dpo.gradient_checkpointing: the shared forward runs packed",
    )
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="stock,shared")
    ap.add_argument("--rounds", type=int, default=1, help="run the modes this often, alternating")
    ap.add_argument("--score", action="store_true", help="also time the PairScore pass")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    import torch

    from itool_ray.models import resolve_model
    from itool_ray.rollout import read_pairs
    from itool_ray.train import DPOSettings, LoraSettings, pairs_to_dataset
    from itool_ray.train._common import load_policy, load_tokenizer, pick_device
    from itool_ray.train.dpo import _fit

    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    model_dir = resolve_model(args.model)
    tok = load_tokenizer(model_dir)
    pairs = (
        read_pairs(args.pairs)
        if args.pairs
        else synthetic_pairs(tok, args.trees, args.pairs_per_tree, args.seed)
    )[: args.limit]
    dataset = _fit(pairs_to_dataset(pairs, tok), args.max_length)
    info = shape(dataset, pairs)
    info["tokens_run"] = token_costs(dataset, args.batch_size, args.grad_accum, args.seed)
    print(
        f"{info['pairs']} pairs from {info['trees']} trees: chat prompt "
        f"{info['chat_prompt_tokens']:.0f} tokens, path prefix {info['path_prefix_tokens']:.0f},"
        f" step {info['step_tokens']:.0f} (mean); model {args.model} on {pick_device().name};"
        f" tokens run, forward-equivalents (backward = 2): stock "
        f"{info['tokens_run']['stock_tokens']}, shared {info['tokens_run']['shared_tokens']}"
        f" ({info['tokens_run']['stock_per_shared']:.2f}x fewer)"
    )
    base = DPOSettings(
        loss=args.loss,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        epochs=args.epochs,
        lr=1e-4,
        seed=args.seed,
        cpu_threads=args.threads,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(tmp) / "adapter-in"  # the incoming policy, as iteration 1 gets it
        load_policy(model_dir, None, LoraSettings(), pick_device().dtype, seed=0).save_pretrained(
            str(adapter)
        )
        runs: dict[str, list[dict]] = {}
        for k in range(args.rounds):
            for mode in args.modes.split(","):
                settings = DPOSettings.from_dict(
                    base.to_dict() | {"shared_prefix": mode == "shared"}
                )
                r = run_mode(model_dir, adapter, tok, dataset, settings, Path(tmp) / f"{mode}{k}")
                r["pairs_per_s"] = info["pairs"] * args.epochs / r["seconds"]
                r["tokens_per_s"] = info["pair_tokens"] * args.epochs / r["seconds"]
                r["pairs_per_cpu_s"] = info["pairs"] * args.epochs / r["cpu_seconds"]
                runs.setdefault(mode, []).append(r)
                print(
                    f"{mode}: {r['seconds']:.1f} s ({r['setup_seconds']:.1f} s setup, "
                    f"{r['cpu_seconds']:.1f} CPU-s), {r['pairs_per_s']:.3f} pairs/s, "
                    f"{r['tokens_per_s']:.0f} tokens/s, load "
                    f"{r['load_avg_1min'][0]:.1f} -> {r['load_avg_1min'][1]:.1f}, "
                    f"losses {[round(x, 4) for x in r['losses']]}"
                )
        # each mode's fastest run: the one least disturbed by other load on the machine
        results = {
            m: min(rs, key=lambda r: r["seconds"]) | {"all_seconds": [r["seconds"] for r in rs]}
            for m, rs in runs.items()
        }
        score = (
            score_times(model_dir, adapter, tok, dataset, args.max_length) if args.score else None
        )
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model,
        "loss": args.loss,
        "settings": base.to_dict(),
        "shape": info,
        "modes": results,
        "score": score,
    }
    if {"stock", "shared"} <= set(results):
        s, t = results["stock"], results["shared"]
        report["pairs_per_s_ratio"] = t["pairs_per_s"] / s["pairs_per_s"]
        report["pairs_per_cpu_s_ratio"] = t["pairs_per_cpu_s"] / s["pairs_per_cpu_s"]
        report["max_abs_loss_diff"] = max(
            (abs(a - b) for a, b in zip(s["losses"], t["losses"], strict=True)), default=0.0
        )
        print(
            f"shared / stock: {report['pairs_per_s_ratio']:.2f}x pairs/s (and tokens/s), "
            f"{report['pairs_per_cpu_s_ratio']:.2f}x pairs per CPU-second; "
            f"losses max abs diff {report['max_abs_loss_diff']:.2e}"
        )
    if score:
        print(
            f"PairScore pass: stock {score['stock']:.1f} s, shared {score['shared']:.1f} s "
            f"({score['stock'] / score['shared']:.2f}x; CPU-s {score['stock_cpu']:.1f} vs "
            f"{score['shared_cpu']:.1f}), log-prob max abs diff "
            f"{score['max_abs_logp_diff']:.2e}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
