"""MCTS rollout on real vLLM: ours vs the MCTS-DPO and iTool-paper schedules, one run.

Run (the benchmark: SmolLM2-135M on CPU, 32 synthesized samples, 16 simulations, k = 4):
    .venv/bin/python jobs/bench_rollout.py --seconds 120
Smoke (tiny random model, short windows):
    .venv/bin/python jobs/bench_rollout.py --model tiny --seconds 20

Same model, same vLLM engine settings (except prefix caching where a baseline turns it
off), same samples in the same order, same MCTS budget; every mode is the shipped
``TreeManager`` driving ``PolicyReplica`` actors on a local Ray, only the schedule differs:

* ``ours``: one TreeManager over all samples, ``max_inflight`` simulations in flight per
  tree, requests batched across trees (``ManagerSettings`` defaults: up to 64 per call, a
  second call queued on a replica once a full batch is ready), prefix caching on;
* ``paper`` (the iTool code): ``--paper-trees`` (30) trees at a time, each searched by its
  own driver with one simulation in flight and one request (n = k candidates) per replica
  call; prefix caching off. The replica merges the calls that arrive while its engine is
  busy into its next engine call, where a vLLM server would admit them at its next decode
  step (continuous batching): a request arriving mid-batch waits a little longer here,
  and each tree's root self-evaluation is an engine call of its own (``evaluate`` calls are
  not merged), which costs this baseline some seconds when its 30 trees start;
* ``sequential`` (MCTS-DPO): one tree at a time, one simulation at a time, one request per
  call, prefix caching off (k candidates still come from one n = k request).

Prefill dominates on CPU, so the baselines cannot finish the workload in reasonable time:
each mode runs for a fixed window of ``--seconds`` (ours stops earlier if every tree is
done) and the figure compared is expansions per second = expansions completed / seconds
from the mode's start to its last completed expansion (whole replica calls only: the call
cut by the window is neither counted nor timed; ``per window`` divides by the whole window
instead). With few completions in a window (``completions`` column) the rate is rough:
short windows are for smoke checks only. Replica figures are deltas of
``PolicyReplica.info()`` from the start of a mode until its replicas are idle again:
``busy`` = engine-busy seconds / those seconds, ``hit`` = prompt tokens served from vLLM's
prefix cache / prompt tokens (``RolloutResult.summary`` of ``itool_ray/rollout/run.py``);
``prefill ratio`` = prompt tokens computed (not served from the cache) / unique prefix tokens
of every prompt the mode sent (the nodes of their token trie, recorded by the engines with
``EngineConfig.record_prompts``; ``itool_ray/rollout/prefill.py``): 1.0 means every shared
prefix was prefilled once. vLLM reports one cached count per request, so a request of n = k
candidates without a prefix cache counts its prompt once although each candidate prefills it:
the baselines' ratios are lower bounds. ``tail_tokens``: the tokens past each prompt's last
whole KV block, which the cache cannot hold and every prompt computes again;
``(prefill - tails) / unique`` is what is left of the ratio without them (the part the
schedule, not the block size, is responsible for).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import typer

from itool_ray.mcts import MCTSConfig
from itool_ray.mcts.search import ExpandRequest, request_seed
from itool_ray.policy.vllm_engine import CPU_BLOCK_SIZE
from itool_ray.rollout import ManagerSettings, ReplicaPool, RolloutResult, TreeManager
from itool_ray.rollout.prefill import prefill_ratio, tail_tokens, unique_prefix_tokens

log = logging.getLogger("bench_rollout")

MODES = ("ours", "paper", "sequential")


@dataclass(frozen=True)
class Schedule:
    """How a mode drives the replicas (module docstring)."""

    name: str
    lanes: int  # 0: one manager over every sample; n: n drivers, one tree each at a time
    max_inflight: int
    settings: ManagerSettings
    prefix_caching: bool


def schedules(max_inflight: int, paper_trees: int) -> dict[str, Schedule]:
    one = ManagerSettings(max_batch=1, calls_per_replica=1, checkpoint_every_s=0)
    return {
        "ours": Schedule("ours", 0, max_inflight, ManagerSettings(checkpoint_every_s=0), True),
        "paper": Schedule("paper", paper_trees, 1, one, False),
        "sequential": Schedule("sequential", 1, 1, one, False),
    }


@dataclass
class ModeResult:
    mode: str
    trees_finished: int
    expansions: int
    pairs: int
    seconds: float  # mode start -> last completed expansion
    window: float
    per_s: float  # expansions / seconds
    per_window_s: float  # expansions / window
    completions: int  # times the expansion count grew (about one per answered replica call)
    replica_busy_fraction: list[float]
    prefix_cache_hit_rate: float
    generated_tokens: int
    prompt_tokens: int
    prefill_tokens: int  # prompt tokens computed: not served from the prefix cache
    unique_prefix_tokens: int  # nodes of the token trie of every prompt sent (the limit)
    prefill_ratio: float | None  # prefill_tokens / unique_prefix_tokens (1.0 = the limit)
    prompts: int  # prompts the engines ran (expansions, continuations, self-evaluations)
    tail_tokens: int  # tokens past each prompt's last whole KV block: always computed
    schedule: dict[str, Any]


# ----------------------------------------------------------------------------- driving
async def drive(samples, cfg: MCTSConfig, handles, sched: Schedule, seconds: float):
    """Run one schedule until every tree is done or ``seconds`` pass; returns
    (managers, marks) with marks = [(seconds since start, expansions completed)]."""
    managers: list[TreeManager] = []
    t0 = time.perf_counter()
    marks = [(0.0, 0)]

    async def lanes() -> None:
        todo = iter(samples)

        async def lane(j: int) -> None:
            mine = handles[j % len(handles) :] + handles[: j % len(handles)]  # spread lanes
            for s in todo:  # shared iterator: the next free lane takes the next sample
                m = TreeManager([s], cfg, mine, settings=sched.settings)
                managers.append(m)
                await m.run()

        await asyncio.gather(*(lane(j) for j in range(sched.lanes)))

    async def one_manager() -> None:
        m = TreeManager(samples, cfg, handles, settings=sched.settings)
        managers.append(m)
        await m.run()

    async def watch() -> None:
        while True:
            n = sum(m.expansions for m in managers)
            if n != marks[-1][1]:
                marks.append((time.perf_counter() - t0, n))
            await asyncio.sleep(0.05)

    work = asyncio.ensure_future(lanes() if sched.lanes else one_manager())
    watcher = asyncio.ensure_future(watch())
    await asyncio.wait([work], timeout=seconds)
    n = sum(m.expansions for m in managers)
    if n != marks[-1][1]:
        marks.append((time.perf_counter() - t0, n))
    for task in asyncio.all_tasks() - {asyncio.current_task()}:  # the window is over
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(work, watcher, return_exceptions=True)
    if work.done() and not work.cancelled() and work.exception() is not None:
        raise work.exception()
    return managers, marks, time.perf_counter() - t0


async def wait_idle(pool: ReplicaPool, timeout: float = 1800.0) -> list[dict]:
    """Replica infos once no call is left on any replica (the one cut by the window ends)."""
    deadline = time.monotonic() + timeout
    while True:
        infos = await pool.infos(timeout=60.0)
        idle = all(i and not i["requests_in_flight"] and not i["queued_calls"] for i in infos)
        if idle or time.monotonic() > deadline:
            return infos
        await asyncio.sleep(0.5)


async def take_prompts(pool: ReplicaPool) -> list[tuple[int, ...]]:
    """Every prompt the replicas ran since the last call (``EngineConfig.record_prompts``)."""
    parts = await asyncio.gather(*(st.handle.take_prompts.remote() for st in pool.replicas))
    return [p for part in parts for p in part]


def delta(after: list[dict], before: list[dict]) -> list[dict]:
    keys = (
        "busy_seconds",
        "uptime_seconds",
        "prompt_tokens",
        "cached_prompt_tokens",
        "generated_tokens",
        "expansions",
    )
    return [{k: a[k] - b[k] for k in keys} for a, b in zip(after, before, strict=True)]


async def warm_up(pool: ReplicaPool, sample, cfg: MCTSConfig) -> None:
    """One expansion per replica on a sample outside the workload (first-call costs)."""
    req = ExpandRequest(
        str(sample.id),
        0,
        tuple(sample.messages),
        tuple(sample.tools),
        "",
        cfg.k,
        cfg.max_step_tokens,
        request_seed(cfg.seed, str(sample.id), ""),
    )
    await asyncio.gather(*(st.handle.expand.remote([req]) for st in pool.replicas))


async def run_mode(
    pool: ReplicaPool,
    samples,
    cfg: MCTSConfig,
    sched: Schedule,
    seconds: float,
    block: int = CPU_BLOCK_SIZE,
) -> ModeResult:
    handles = [(st.name, st.handle) for st in pool.replicas]
    before = await wait_idle(pool)
    await take_prompts(pool)  # the warm-up's and earlier modes' prompts are not this mode's
    managers, marks, window = await drive(
        samples, replace(cfg, max_inflight=sched.max_inflight), handles, sched, seconds
    )
    after = await wait_idle(pool)
    sent = await take_prompts(pool)
    unique = unique_prefix_tokens(sent)
    moved = delta(after, before)
    summary = RolloutResult([], {}, moved).summary
    prompt = sum(d["prompt_tokens"] for d in moved)
    cached = sum(d["cached_prompt_tokens"] for d in moved)
    last_t, n = marks[-1]
    return ModeResult(
        mode=sched.name,
        trees_finished=sum(len(m.finished) for m in managers),
        expansions=n,
        pairs=sum(m.pairs_emitted for m in managers),
        seconds=last_t,
        window=window,
        per_s=n / last_t if last_t else 0.0,
        per_window_s=n / window,
        completions=len(marks) - 1,
        replica_busy_fraction=summary["replica_busy_fraction"],
        prefix_cache_hit_rate=summary["prefix_cache_hit_rate"],
        generated_tokens=summary["generated_tokens"],
        prompt_tokens=prompt,
        prefill_tokens=prompt - cached,
        unique_prefix_tokens=unique,
        prefill_ratio=prefill_ratio(prompt, cached, unique),
        prompts=len(sent),
        tail_tokens=tail_tokens(sent, block),
        schedule=asdict(sched),
    )


async def run_all(
    wanted,
    scheds,
    samples,
    warm,
    cfg,
    model_dir,
    replicas,
    env,
    kv_gb,
    dtype,
    seed,
    seconds,
    block_size=None,
) -> dict[str, ModeResult]:
    """One pool per engine setting (caching on, then off); its modes in the order given."""
    from itool_ray.policy import EngineConfig

    results: dict[str, ModeResult] = {}
    for caching in (True, False):
        group = [m for m in wanted if scheds[m].prefix_caching is caching]
        if not group:
            continue
        engine = EngineConfig(
            model=model_dir,
            dtype=dtype,
            enable_prefix_caching=caching,
            cpu_kvcache_gb=kv_gb,
            seed=seed,
            block_size=block_size,
            record_prompts=True,
        )
        log.info("starting %d replica(s), prefix caching %s", replicas, caching)
        pool = ReplicaPool.start(replicas, engine, num_cpus=1, env=env, max_restarts=0)
        try:
            await pool.wait_ready()
            await warm_up(pool, warm, cfg)
            for m in group:
                log.info("mode %s: %g s window", m, seconds)
                results[m] = await run_mode(
                    pool, samples, cfg, scheds[m], seconds, block_size or CPU_BLOCK_SIZE
                )
                log.info("mode %s: %s", m, results[m])
        finally:
            pool.shutdown()
    return results


# ----------------------------------------------------------------------------- CLI
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    model: str = typer.Option("smollm2", help="smollm2, tiny or a local HF model folder"),
    trees: int = typer.Option(32, help="synthesized samples (trees)"),
    sims: int = typer.Option(16, help="simulations per tree"),
    k: int = typer.Option(4, help="candidate steps per expansion"),
    max_inflight: int = typer.Option(4, help="simulations in flight per tree (ours)"),
    step_tokens: int = typer.Option(24, help="max tokens per step"),
    max_depth: int = typer.Option(8, help="steps per response"),
    paper_trees: int = typer.Option(30, help="trees searched concurrently by the paper's code"),
    seconds: float = typer.Option(120.0, help="wall-clock window per mode"),
    modes: str = typer.Option(",".join(MODES), help="comma-separated subset of " + ",".join(MODES)),
    replicas: int = typer.Option(1, help="policy replicas (every mode gets the same number)"),
    threads: int = typer.Option(1, help="OMP threads per replica"),
    kv_gb: float = typer.Option(2.0, help="vLLM CPU KV cache per replica, GB"),
    dtype: str = typer.Option("auto", help="engine dtype"),
    block_size: int = typer.Option(0, help="KV block size (0: the engine's default, 32 on CPU)"),
    seed: int = typer.Option(0, help="data and search seed"),
    verbose: bool = typer.Option(False, help="show the replicas' logs"),
    out: Path = typer.Option(Path("runs/bench/rollout.json"), help="JSON figures"),
) -> None:
    import ray

    from itool_ray.datasets import load_named
    from itool_ray.models import resolve_model

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    wanted = [m.strip() for m in modes.split(",") if m.strip()]
    if unknown := set(wanted) - set(MODES):
        raise SystemExit(f"unknown mode(s) {sorted(unknown)}; expected {MODES}")
    all_samples = load_named("synth", limit=trees + 1, seed=seed)
    samples, warm = all_samples[:trees], all_samples[trees]
    model_dir = str(resolve_model(model))
    cfg = MCTSConfig(
        k=k,
        simulations=sims,
        max_inflight=max_inflight,
        max_step_tokens=step_tokens,
        max_depth=max_depth,
        seed=seed,
    )
    scheds = schedules(max_inflight, paper_trees)
    env = {
        "VLLM_CPU_KVCACHE_SPACE": f"{kv_gb:g}",
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }
    from itool_ray.rollout.run import loopback_only

    loopback_only()
    ray.init(
        num_cpus=max(os.cpu_count() or 1, replicas),
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        log_to_driver=verbose,
    )
    try:
        results = asyncio.run(
            run_all(
                wanted,
                scheds,
                samples,
                warm,
                cfg,
                model_dir,
                replicas,
                env,
                kv_gb,
                dtype,
                seed,
                seconds,
                block_size or None,
            )
        )
    finally:
        ray.shutdown()
    report(results, model, trees, sims, k, seconds, replicas, cfg, out)


def report(
    results: dict[str, ModeResult],
    model: str,
    trees: int,
    sims: int,
    k: int,
    seconds: float,
    replicas: int,
    cfg: MCTSConfig,
    out: Path,
) -> None:
    print(
        f"\n{model}: {trees} trees x {sims} simulations x k={k}, {replicas} replica(s), "
        f"{seconds:g} s window per mode"
    )
    print(
        "mode | trees done | expansions (completions) | seconds | expansions/s | "
        "ours / mode | per window/s | replica busy | prefix-cache hit | prefill ratio "
        "(computed / unique prompt tokens) | generated tokens"
    )
    ours = results.get("ours")
    ratios = {}
    for r in results.values():
        ratio = ours.per_s / r.per_s if ours and ours.per_s and r.per_s else None
        shown = "n/a" if ratio is None else f"x{ratio:.2f}"
        if r.mode == "ours":
            shown = "-"
        else:
            ratios[r.mode] = ratio
        busy = ", ".join(f"{b:.0%}" for b in r.replica_busy_fraction)
        pr = "n/a" if r.prefill_ratio is None else f"{r.prefill_ratio:.2f}"
        if r.prefill_ratio is not None and r.unique_prefix_tokens:
            rest = (r.prefill_tokens - r.tail_tokens) / r.unique_prefix_tokens
            pr += f"; {rest:.2f} without the {r.tail_tokens:,} block-tail tokens"
        print(
            f"{r.mode} | {r.trees_finished} | {r.expansions} ({r.completions}) | "
            f"{r.seconds:.1f} | {r.per_s:.3f} | {shown} | {r.per_window_s:.3f} | {busy} | "
            f"{r.prefix_cache_hit_rate:.1%} | {pr} ({r.prefill_tokens:,} / "
            f"{r.unique_prefix_tokens:,}) | {r.generated_tokens}"
        )
    for r in results.values():
        if not r.expansions:
            print(
                f"note: {r.mode} completed no replica call within {seconds:g} s; "
                "its first call is bigger than the window (raise --seconds)"
            )
        elif r.completions < 5:
            print(
                f"note: {r.mode} rate rests on {r.completions} completion(s); "
                "rough (raise --seconds)"
            )
    record: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "model": model,
        "workload": {"trees": trees, "seconds": seconds, "replicas": replicas, **cfg.to_dict()},
        "results": {m: asdict(r) for m, r in results.items()},
        "ours_over": ratios,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    app()
