"""Benchmark: vLLM-CPU serving a LoRA policy, its own LoRA ops vs the grouped kernels.

    .venv/bin/python jobs/bench_cpu_lora.py --model smollm2

One run, same model, same engine settings, same prompts (synthesized ToolACE-style samples
rendered with the model's chat template, about 1,000 tokens each), three engines started one
after another, each in a fresh process:

* **base**: LoRA enabled, requests without an adapter (the floor: no adapter work);
* **vllm-ops**: requests with a rank-8 adapter on every linear layer, vLLM's own CPU LoRA ops
  (``ITOOL_RAY_CPU_LORA_KERNELS=0``);
* **grouped**: the same adapter through ``itool_ray.policy.cpu_lora`` (the default).

Two workloads each: *prefill* (every prompt once, one output token, prefix caching off, so
every prompt token is computed) and *expand* (every prompt with n = 4 samples of 24 tokens,
prefix caching on and warmed, as MCTS expansions run). Prints seconds and the ratios
vllm-ops / grouped and grouped / base; ``--out`` keeps the figures as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
VARIANTS = ("base", "vllm-ops", "grouped")


def prompts(model_dir: str, count: int, seed: int) -> list[list[int]]:
    from transformers import AutoTokenizer

    from itool_ray.data import render_prompt
    from itool_ray.datasets import load_named

    tok = AutoTokenizer.from_pretrained(model_dir)
    samples = load_named("synth", limit=count, seed=seed)
    return [tok(render_prompt(s, tok), add_special_tokens=False)["input_ids"] for s in samples]


def measure(
    variant: str, model_dir: str, adapter: str, ids: list[list[int]], caching: bool, repeat: int
) -> dict:
    """In this process: start the engine, run the workload, return the best of ``repeat``."""
    from itool_ray.policy import EngineConfig, VLLMPolicy

    policy = VLLMPolicy(
        EngineConfig(
            model=model_dir,
            dtype="auto",
            max_model_len=4096,
            enable_lora=True,
            enable_prefix_caching=caching,
        )
    )
    try:
        if variant != "base":
            policy.load_policy(1, adapter)
        if caching:
            policy.generate(ids, n=1, max_tokens=1, temperature=0.0)  # warm the prefix cache
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            if caching:
                policy.generate(ids, n=4, max_tokens=24, seed=0)
            else:
                policy.generate(ids, n=1, max_tokens=1, temperature=0.0)
            times.append(time.perf_counter() - start)
    finally:
        policy.close()
    return {"seconds": min(times), "all": times}


@app.command()
def main(
    model: str = typer.Option("smollm2", help="smollm2 or a model folder"),
    prompt_count: int = typer.Option(8, "--prompts", help="prompts per workload"),
    repeat: int = typer.Option(2, help="timed repetitions per workload (best kept)"),
    seed: int = 0,
    out: Path | None = typer.Option(None, help="write the figures here as JSON"),
    child: str | None = typer.Option(None, hidden=True, help="internal: JSON job for one run"),
) -> None:
    if child is not None:
        job = json.loads(child)
        print(json.dumps(measure(**job)))
        return
    from itool_ray.models import prepare_smollm2

    model_dir = str(prepare_smollm2()) if model == "smollm2" else model
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_broadcast import make_adapter

    ids = prompts(model_dir, prompt_count, seed)
    mean_len = sum(map(len, ids)) / len(ids)
    print(f"{len(ids)} prompts, {mean_len:.0f} tokens on average")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        adapter = str(make_adapter(model_dir, Path(tmp) / "adapter", seed))
        for workload, caching in (("prefill", False), ("expand", True)):
            for variant in VARIANTS:
                env = dict(
                    os.environ, ITOOL_RAY_CPU_LORA_KERNELS="0" if variant == "vllm-ops" else "1"
                )
                job = dict(
                    variant=variant,
                    model_dir=model_dir,
                    adapter=adapter,
                    ids=ids,
                    caching=caching,
                    repeat=repeat,
                )
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(job)],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    raise SystemExit(f"{variant}/{workload} failed:\n{proc.stderr[-3000:]}")
                fig = json.loads(proc.stdout.strip().splitlines()[-1])
                results[f"{workload}/{variant}"] = fig
                print(f"{workload:8s} {variant:9s} {fig['seconds']:7.2f} s")
    lines = []
    for workload in ("prefill", "expand"):
        r = {v: results[f"{workload}/{v}"]["seconds"] for v in VARIANTS}
        lines.append(
            f"{workload}: vllm-ops / grouped = {r['vllm-ops'] / r['grouped']:.2f}x, "
            f"grouped / base = {r['grouped'] / r['base']:.2f}x"
        )
    print("\n".join(lines))
    if out is not None:
        out.write_text(
            json.dumps(
                {
                    "model": model,
                    "prompts": len(ids),
                    "mean_prompt_tokens": mean_len,
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    app()
