"""CPU training step time of the policy (LoRA on SmolLM2-135M-Instruct), side by side in one run.

    .venv/bin/python jobs/bench_train.py --steps 6 --rows 4

One "step" is a forward + backward + AdamW update on one SFT row (chat prompt of a synthesized
sample + its gold answer, loss on the answer), the unit of the warm-up SFT and, twice per pair,
of DPO. Variants, each on the same rows, same initial adapter:

* ``fp32``: float32 weights and compute (the baseline, what the trainer ran);
* ``bf16-autocast``: float32 master weights, ``torch.autocast("cpu", torch.bfloat16)``;
* ``fp32-1thread``: float32 with one torch thread instead of two.

The variants step in turn (round robin on the same row), so other load on the machine
falls on each alike. Prints seconds per step (median over ``--steps`` after one warm-up step), the ratio to the
baseline, and the loss after the last step (numerics: the variants should agree). The CPU's
capability (``torch.backends.cpu.get_cpu_capability()``) decides whether bf16 has hardware
support (AVX512-BF16 / AMX); on an AVX2-only CPU bf16 is emulated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--variants", default="fp32,bf16-autocast,fp32-1thread")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    from itool_ray.data import render_prompt
    from itool_ray.datasets import load_named
    from itool_ray.models import resolve_model
    from itool_ray.train._common import load_policy, load_tokenizer
    from itool_ray.train.config import LoraSettings

    model_dir = resolve_model("smollm2")
    tok = load_tokenizer(model_dir)
    samples = load_named("synth", limit=args.rows, seed=0)
    rows = []
    for s in samples:
        prompt = tok(render_prompt(s, tok), add_special_tokens=False)["input_ids"]
        answer = tok(s.gold, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + answer])
        labels = torch.tensor([[-100] * len(prompt) + answer])
        rows.append((ids, labels))
    tokens = sum(r[0].shape[1] for r in rows) / len(rows)

    # every variant steps in turn on the same row (round robin), so load from anything else
    # on the machine falls on each alike
    variants = args.variants.split(",")
    state = {}
    for variant in variants:
        torch.manual_seed(0)
        model = load_policy(model_dir, None, LoraSettings(), torch.float32, seed=0)
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        state[variant] = (model, opt, [], [float("nan")])
    for step in range(args.steps + 1):
        ids, labels = rows[step % len(rows)]
        for variant in variants:
            model, opt, times, loss = state[variant]
            torch.set_num_threads(1 if variant.endswith("1thread") else 2)
            ctx = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if variant.startswith("bf16")
                else nullcontext()
            )
            t0 = time.perf_counter()
            with ctx:
                out = model(input_ids=ids, labels=labels)
            out.loss.backward()
            opt.step()
            opt.zero_grad()
            dt = time.perf_counter() - t0
            loss[0] = float(out.loss)
            if step:  # the first step warms up kernels and allocations
                times.append(dt)
    results = {
        v: {
            "s_per_step": statistics.median(t),
            "last_loss": loss[0],
            "threads": 1 if v.endswith("1thread") else 2,
        }
        for v, (_, _, t, loss) in state.items()
    }

    base = results.get("fp32", next(iter(results.values())))["s_per_step"]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "tokens_per_row": tokens,
        "steps": args.steps,
        "variants": {
            k: {**v, "speedup_vs_fp32": base / v["s_per_step"]} for k, v in results.items()
        },
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"CPU {report['cpu_capability']}, {tokens:.0f} tokens per row, {args.steps} steps")
    print("| variant | s / step | x vs fp32 | loss after |")
    print("|---|---|---|---|")
    for k, v in report["variants"].items():
        print(
            f"| {k} | {v['s_per_step']:.2f} | {v['speedup_vs_fp32']:.2f} | {v['last_loss']:.4f} |"
        )


if __name__ == "__main__":
    main()
