"""Benchmark: new policy weights to every replica, LoRA broadcast vs engine restart.

    .venv/bin/python jobs/bench_broadcast.py --model smollm2 --replicas 2 --repeat 3

Both paths start from "adapter saved" (a PEFT LoRA folder on disk) and stop when every
replica has answered a request with the new policy:

* **broadcast** (itool-ray): the adapter is read once into the object store (``ray.put``; in
  the job the trainer actor's ``publish`` does this) and ``ReplicaPool.broadcast`` has every
  replica write it locally and register it with its running vLLM engine under a new LoRA id.
* **full** (itool-ray, ``train.weight_sync=full``, engines without LoRA): the adapter merged
  into the base weights, the state dict put in the object store in buckets
  (``Trainer.publish_weights``) and ``ReplicaPool.broadcast_weights`` loading them into every
  running engine, one bucket per call;
* **restart** (what the paper's code does each iteration): merge the adapter into the base
  model (``export_merged``), stop the replicas and start new vLLM engines on the merged folder.

Same model, same replicas, same machine, one run; the ratio restart / broadcast is printed and
the figures written to ``--out`` as JSON.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def make_adapter(model_dir: str, out: Path, seed: int, rank: int = 8) -> Path:
    """A LoRA adapter with random, non-zero B (so the policy really changes), saved."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules="all-linear",
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.01)
    model.save_pretrained(str(out))
    return out


def probe_all(pool, sample) -> list[str | None]:
    """One greedy token from every replica: returns when each has served a request."""
    import ray

    return [t[0] for t in ray.get([st.handle.respond.remote([sample], 1) for st in pool.replicas])]


@app.command()
def main(
    model: str = typer.Option("smollm2", help="smollm2, tiny or a local HF folder"),
    replicas: int = typer.Option(2, min=1),
    repeat: int = typer.Option(3, min=1, help="broadcasts and restarts timed"),
    kv_gb: float = typer.Option(1.0, help="vLLM CPU KV cache per replica (GB)"),
    out: Path = typer.Option(Path("runs/bench/broadcast.json")),
    full: bool = typer.Option(False, help="also time the full-weight sync (CUDA vLLM only)"),
    bucket_mb: float = typer.Option(64, help="full-weight sync bucket size (MB)"),
) -> None:
    import ray

    from itool_ray.config import EngineSection
    from itool_ray.data import Sample
    from itool_ray.models import resolve_model
    from itool_ray.rollout import ReplicaPool, adapter_payload, init_ray, run_sync
    from itool_ray.train.merge import export_merged, publish_merged

    model_dir = str(resolve_model(model))
    init_ray(num_cpus=max(2, replicas + 1))
    env = {
        "VLLM_CPU_KVCACHE_SPACE": f"{kv_gb:g}",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    engine = EngineSection(cpu_kvcache_gb=kv_gb, max_model_len=1024)
    sample = Sample(id="probe", tools=(), messages=({"role": "user", "content": "Hi"},), gold="")
    work = Path(tempfile.mkdtemp(prefix="itool-bench-broadcast-"))

    def start(folder: str, lora: bool, weight_sync: bool = False) -> ReplicaPool:
        pool = ReplicaPool.start(
            replicas,
            engine.build(folder, enable_lora=lora, weight_sync=weight_sync),
            num_cpus=1,
            env=env,
            max_restarts=0,
        )
        run_sync(pool.wait_ready())
        return pool

    t = time.perf_counter()
    pool = start(model_dir, True)
    probe_all(pool, sample)
    first_start = time.perf_counter() - t
    broadcast_s, restart_s, merge_s, full_s = [], [], [], []
    adapters = [
        make_adapter(model_dir, work / f"adapter-{v}", seed=v) for v in range(1, repeat + 1)
    ]
    try:
        for v, adapter in enumerate(adapters, start=1):
            t = time.perf_counter()
            ref = ray.put(adapter_payload(adapter))
            run_sync(pool.broadcast(v, ref))
            probe_all(pool, sample)
            broadcast_s.append(time.perf_counter() - t)
            versions = [i["version"] for i in run_sync(pool.infos())]
            assert versions == [v] * replicas, versions
            print(f"broadcast v{v}: {broadcast_s[-1]:.2f} s")
        pool.shutdown()
        pool = None
        if full:
            pool = start(model_dir, False, weight_sync=True)
            probe_all(pool, sample)
            for v, adapter in enumerate(adapters, start=1):
                t = time.perf_counter()
                refs = publish_merged(model_dir, adapter, bucket_mb)
                run_sync(pool.broadcast_weights(v, refs))
                probe_all(pool, sample)
                full_s.append(time.perf_counter() - t)
                versions = [i["version"] for i in run_sync(pool.infos())]
                assert versions == [v] * replicas, versions
                print(f"full-weight sync v{v}: {full_s[-1]:.2f} s ({len(refs)} buckets)")
                del refs
            pool.shutdown()
            pool = None
        for v, adapter in enumerate(adapters, start=1):
            t = time.perf_counter()
            merged = export_merged(model_dir, adapter, work / f"merged-{v}")
            merge_s.append(time.perf_counter() - t)
            if pool is not None:
                pool.shutdown()
            pool = start(str(merged), False)
            probe_all(pool, sample)
            restart_s.append(time.perf_counter() - t)
            print(f"restart v{v}: {restart_s[-1]:.2f} s (merge {merge_s[-1]:.2f} s)")
    finally:
        if pool is not None:
            pool.shutdown()
    b, r = statistics.median(broadcast_s), statistics.median(restart_s)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "model": model,
        "replicas": replicas,
        "first_start_s": round(first_start, 2),
        "broadcast_s": [round(x, 3) for x in broadcast_s],
        "restart_s": [round(x, 2) for x in restart_s],
        "merge_s": [round(x, 2) for x in merge_s],
        "median_broadcast_s": round(b, 3),
        "median_restart_s": round(r, 2),
        "speedup": round(r / b, 1),
    }
    if full_s:
        f = statistics.median(full_s)
        result |= {
            "full_sync_s": [round(x, 3) for x in full_s],
            "median_full_sync_s": round(f, 3),
            "full_sync_speedup": round(r / f, 1),
            "bucket_mb": bucket_mb,
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(f"broadcast {b:.2f} s vs restart {r:.2f} s: {r / b:.1f}x faster")
    if full_s:
        print(
            f"full-weight sync {statistics.median(full_s):.2f} s vs restart {r:.2f} s: "
            f"{r / statistics.median(full_s):.1f}x faster"
        )


if __name__ == "__main__":
    app()
