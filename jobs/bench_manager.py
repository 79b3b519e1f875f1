"""Tree manager throughput against 64 FAKE replicas of fixed latency (no Ray, no engine).

Run:
    .venv/bin/python jobs/bench_manager.py                 # 2,048 trees x 16 sims, k = 4
    .venv/bin/python jobs/bench_manager.py --trees 64 --replicas 4 --latency 0.05   # smoke

``TreeManager`` (``itool_ray/rollout/manager.py``) runs unchanged in this process's asyncio
loop, with the production outcome reward (``CallsOutcome``, the call checker); its replicas
are ``FakeReplica`` objects (``itool_ray/rollout/fake.py``) whose methods have a
``.remote(...)`` returning an asyncio task,
like a Ray actor handle. A fake replica models one engine as ``PolicyReplica`` drives vLLM:
calls queue while the engine is busy, the engine takes whole queued calls up to ``batch``
requests into one step, sleeps ``latency`` seconds (times a uniform factor in
[1 - jitter, 1 + jitter], mean 1) whatever the step's size (a GPU decode step costs about
the same for 1 or 64 sequences) and answers with ``itool_ray.mcts.fake.FakeEngine``
(deterministic steps and confidences). A root self-evaluation counts ``eval_cost`` of an
expansion toward a step's ``batch``.

Ideal throughput = replicas * batch / latency expansions per second (every replica busy all
the time with full steps; 64 * 64 / 4 s = 1,024/s by default: a step of 64 expansions is
256 candidates of up to 48 tokens plus their self-evaluations, a few seconds for a 7-8B model
on one GPU). Reported per mode:

* ``e2e``: expansions / wall seconds of the whole run, and its ratio to ideal. It includes
  the root evaluation (one step), the ramp-up while trees are narrow and the drain: trees
  whose candidates are mostly terminal can only run one simulation at a time, so the last
  ones finish alone (``seconds (10%, 90%)`` shows when 10% and 90% of the expansions were
  done);
* ``steady``: expansions per second between 10% and 90% of all expansions, the rate while
  work is available, and its ratio to ideal (the 90% target). It may exceed 100% by a
  step's jitter;
* ``busy``: per replica, fraction of wall time its engine was in a step (mean, min);
  ``fill``: mean requests per step / ``batch``;
* ``cpu us/exp``: CPU microseconds of this process per expansion, minus the fake engines'
  own answering time: the manager's cost (selection, requests, routing, outcome reward,
  backup, pairs, event loop). One manager keeps up while ideal * cpu < 1 s per second;
* ``moves``: requests that moved their tree to another replica (each one a prefix-cache miss
  on a real engine).

Modes, same trees, same fake replicas, one run:

* ``ours``: the TreeManager as shipped (``max_inflight`` simulations in flight per tree,
  batches of ``batch`` requests, up to two calls per replica);
* ``one_inflight``: the same manager with ``max_inflight=1`` (one simulation per tree);
* ``lockstep``: rounds as in ``itool_ray.mcts.search.Searcher``: every tree selects, all
  leaves go out in batches, the round waits for the last answer, then backs everything up.

``--reward fake`` swaps the call checker for ``fake_outcome`` (a string comparison) to
isolate the scheduling cost; ``--reward calls-uncached`` runs the checker without
``CallsOutcome``'s caches (``UncachedCallsOutcome``: every candidate's whole response parsed
and checked, as before the caches), for a before/after of the outcome's cost; ``--profile``
prints the top of a cProfile of ``ours``.
"""

from __future__ import annotations

import asyncio
import cProfile
import datetime as dt
import io
import json
import platform
import pstats
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import typer

from itool_ray import metrics
from itool_ray.mcts import (
    CallsOutcome,
    MCTSConfig,
    Reward,
    SimulationCore,
    Tree,
    fake_outcome,
    make_fake_samples,
)
from itool_ray.mcts.rewards import GradedCallsOutcome, UncachedCallsOutcome
from itool_ray.mcts.search import EvalRequest
from itool_ray.rollout.fake import FakeLatency, FakeReplica
from itool_ray.rollout.manager import ManagerSettings, TreeManager

REWARDS = {  # --reward: name -> a new outcome function O(s)
    "calls": CallsOutcome,
    "calls-uncached": UncachedCallsOutcome,
    "calls-graded": GradedCallsOutcome,
    "fake": lambda: fake_outcome,
}


# ----------------------------------------------------------------------------- modes
class Recorder:
    """Timestamps of expansion completions (for the 10%-90% steady-state rate)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.marks: list[tuple[float, int]] = []

    def mark(self, total: int) -> None:
        self.marks.append((time.perf_counter() - self.t0, total))

    def at(self, count: float) -> tuple[float, int]:
        """The first mark with at least ``count`` expansions (seconds, expansions)."""
        return next((m for m in self.marks if m[1] >= count), (0.0, 0))

    def steady(self, total: int) -> float:
        (ta, na), (tb, nb) = self.at(0.1 * total), self.at(0.9 * total)
        return (nb - na) / (tb - ta) if tb > ta else 0.0


class RecordingManager(TreeManager):
    """The shipped TreeManager; only records when each batch of expansions completed."""

    recorder: Recorder

    def _absorb(self, i, batch, task) -> None:
        super()._absorb(i, batch, task)
        self.recorder.mark(self.expansions)


async def run_manager(
    samples, cfg: MCTSConfig, fakes: list[FakeReplica], settings: ManagerSettings, reward
) -> tuple[dict, Recorder]:
    manager = RecordingManager(
        samples, cfg, [(f.name, f) for f in fakes], settings=settings, outcome=reward
    )
    manager.recorder = rec = Recorder()
    progress = await manager.run()
    return {**progress, "moves": manager.pool.moves}, rec


async def run_lockstep(
    samples, cfg: MCTSConfig, fakes: list[FakeReplica], cost: FakeLatency, reward
) -> tuple[dict, Recorder]:
    """Rounds (``Searcher``-style) against the fake replicas; tree i stays on replica i % R.
    The same simulation core as the manager; a terminal rollout goes on in the next round."""
    rec = Recorder()
    trees = [Tree(str(s.id), cfg) for s in samples]
    core = SimulationCore(cfg, Reward.from_config(cfg, reward), {str(s.id): s for s in samples})
    prompts = [(tuple(s.messages), tuple(s.tools)) for s in samples]
    nrep, batch = len(fakes), cost.batch
    per_eval_call = max(1, int(batch / cost.eval_cost)) if cost.eval_cost else len(trees)
    calls = []
    for r in range(nrep):
        idx = list(range(r, len(trees), nrep))
        for c in range(0, len(idx), per_eval_call):  # a full step of root evaluations
            part = idx[c : c + per_eval_call]
            reqs = [EvalRequest(trees[i].tree_id, 0, *prompts[i], "", False) for i in part]
            calls.append((part, fakes[r].evaluate.remote(reqs)))
    for part, task in calls:
        for i, c in zip(part, await task, strict=True):
            core.root(trees[i], c)
    expansions = 0
    going: list[tuple[int, object]] = []  # terminal rollouts' next leaves
    while going or not all(t.done for t in trees):
        per_rep: list[list] = [[] for _ in range(nrep)]
        leaves, going = going, []
        for i, t in enumerate(trees):
            leaves.extend((i, leaf) for leaf in core.leaves(t))
        for i, leaf in leaves:
            per_rep[i % nrep].append((i, leaf, core.request(trees[i], leaf)))
        calls = []
        for r, items in enumerate(per_rep):
            for c in range(0, len(items), batch):
                part = items[c : c + batch]
                calls.append((part, fakes[r].expand.remote([req for _, _, req in part])))
        results = await asyncio.gather(*(task for _, task in calls))
        for (part, _), exps in zip(calls, results, strict=True):
            for (i, leaf, _), exp in zip(part, exps, strict=True):
                t = trees[i]
                cands = core.stage(t, leaf, exp.steps, exp.version)
                nxt = core.commit(t, leaf, [exp.confidence.get(s.text, 0.0) for s in cands])
                if nxt is not None:
                    going.append((i, nxt))
                expansions += 1
        rec.mark(expansions)
    return {
        "trees_finished": sum(t.done for t in trees),
        "expansions": expansions,
        "failures": 0,
        "moves": 0,
    }, rec


@dataclass
class ModeResult:
    mode: str
    trees_finished: int
    expansions: int
    fake_expansions: int
    seconds: float
    e2e_per_s: float
    steady_per_s: float
    ideal_per_s: float
    e2e_ratio: float
    steady_ratio: float
    busy_mean: float
    busy_min: float
    fill: float
    cpu_us_per_expansion: float
    moves: int  # requests that moved their tree to another replica (prefix-cache misses)
    t10: float  # seconds to 10% of the expansions (root evaluation + ramp-up)
    t90: float  # seconds to 90%
    profile: str = field(default="", repr=False)


def run_mode(
    mode: str,
    samples,
    cfg: MCTSConfig,
    cost: FakeLatency,
    replicas: int,
    settings: ManagerSettings,
    reward: str = "calls",
    profile: bool = False,
) -> ModeResult:
    fakes = [FakeReplica(f"fake-replica-{i}", cost, seed=i) for i in range(replicas)]
    reward_fn = REWARDS[reward]()
    if mode == "ours":
        coro = run_manager(samples, cfg, fakes, settings, reward_fn)
    elif mode == "one_inflight":
        coro = run_manager(samples, replace(cfg, max_inflight=1), fakes, settings, reward_fn)
    elif mode == "lockstep":
        coro = run_lockstep(samples, cfg, fakes, cost, reward_fn)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    prof = cProfile.Profile() if profile else None
    cpu0, t0 = time.process_time(), time.perf_counter()
    if prof:
        prof.enable()
    progress, rec = asyncio.run(coro)
    if prof:
        prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    n = progress["expansions"]
    ideal = cost.ideal(replicas)
    busy = [f.stats.busy_seconds / wall for f in fakes]
    steps = sum(f.stats.steps for f in fakes)
    fake_cpu = sum(f.stats.answer_cpu_seconds for f in fakes)
    text = ""
    if prof:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
        text = buf.getvalue()
    return ModeResult(
        mode=mode,
        trees_finished=progress["trees_finished"],
        expansions=n,
        fake_expansions=sum(f.stats.expansions for f in fakes),
        seconds=wall,
        e2e_per_s=n / wall,
        steady_per_s=rec.steady(n),
        ideal_per_s=ideal,
        e2e_ratio=n / wall / ideal,
        steady_ratio=rec.steady(n) / ideal,
        busy_mean=sum(busy) / len(busy),
        busy_min=min(busy),
        fill=sum(f.stats.requests_in_steps for f in fakes) / max(steps, 1) / cost.batch,
        cpu_us_per_expansion=(cpu - fake_cpu) / max(n, 1) * 1e6,
        moves=progress["moves"],
        t10=rec.at(0.1 * n)[0],
        t90=rec.at(0.9 * n)[0],
        profile=text,
    )


def simulate(
    *,
    trees: int = 2048,
    simulations: int = 16,
    k: int = 4,
    max_inflight: int = 8,
    replicas: int = 64,
    cost: FakeLatency | None = None,
    modes: tuple[str, ...] = ("ours", "one_inflight", "lockstep"),
    reward: str = "calls",
    profile: bool = False,
    rollout: str = "terminal",
    seed: int = 0,
) -> dict[str, ModeResult]:
    """Run every mode on the same fake samples; returns {mode: ModeResult}."""
    cost = cost or FakeLatency()
    metrics.set_gauge("trees_active", 0)  # imports ray (a no-op without ray.init) before timing
    samples = make_fake_samples(trees, seed=seed)
    cfg = MCTSConfig(
        k=k,
        simulations=simulations,
        max_inflight=max_inflight,
        max_depth=8,
        max_step_tokens=48,
        seed=seed,
        rollout=rollout,
    )
    settings = ManagerSettings(max_batch=cost.batch, checkpoint_every_s=0)
    if reward not in REWARDS:
        raise ValueError(f"reward: expected one of {', '.join(REWARDS)}, got {reward!r}")
    return {
        m: run_mode(
            m, samples, cfg, cost, replicas, settings, reward, profile=profile and m == "ours"
        )
        for m in modes
    }


# ----------------------------------------------------------------------------- CLI
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    trees: int = typer.Option(2048, help="search trees (fake samples)"),
    sims: int = typer.Option(16, help="simulations per tree"),
    k: int = typer.Option(4, help="candidate steps per expansion"),
    max_inflight: int = typer.Option(8, help="simulations in flight per tree (ours)"),
    replicas: int = typer.Option(64, help="fake replicas"),
    latency: float = typer.Option(4.0, help="seconds per engine step (mean)"),
    batch: int = typer.Option(64, help="expansions per engine step = manager max_batch"),
    jitter: float = typer.Option(0.2, help="step latency uniform in latency*[1-j, 1+j]"),
    modes: str = typer.Option("ours,one_inflight,lockstep", help="comma-separated modes"),
    reward: str = typer.Option(
        "calls",
        help="calls: CallsOutcome (production O); "
        "calls-uncached: the same checker without its caches (UncachedCallsOutcome); "
        "calls-graded: mcts.outcome=graded (GradedCallsOutcome, cached); "
        "fake: fake_outcome (string compare, isolates the scheduling)",
    ),
    profile: bool = typer.Option(False, help="cProfile the 'ours' run, print the top 25"),
    rollout: str = typer.Option(
        "terminal",
        help="MCTSConfig.rollout: terminal (a simulation expands down to a "
        "terminal state) or one_step (one expansion per simulation)",
    ),
    out: Path = typer.Option(Path("runs/bench/manager.json"), help="JSON figures"),
) -> None:
    cost = FakeLatency(latency=latency, batch=batch, jitter=jitter)
    results = simulate(
        trees=trees,
        simulations=sims,
        k=k,
        max_inflight=max_inflight,
        replicas=replicas,
        cost=cost,
        modes=tuple(modes.split(",")),
        reward=reward,
        profile=profile,
        rollout=rollout,
    )
    print(
        f"{trees} trees x {sims} simulations ({rollout}) x k={k}, {replicas} fake replicas, "
        f"step {latency:g} s +-{jitter:.0%} for {batch} expansions, "
        f"ideal {cost.ideal(replicas):,.0f} expansions/s"
    )
    head = (
        "mode",
        "trees",
        "expansions",
        "seconds (10%, 90%)",
        "e2e/s",
        "e2e/ideal",
        "steady/s",
        "steady/ideal",
        "busy mean",
        "busy min",
        "fill",
        "cpu us/exp",
        "moves",
    )
    print(" | ".join(head))
    for r in results.values():
        print(
            f"{r.mode} | {r.trees_finished} | {r.expansions} | "
            f"{r.seconds:.1f} ({r.t10:.1f}, {r.t90:.1f}) | {r.e2e_per_s:,.0f} | "
            f"{r.e2e_ratio:.1%} | {r.steady_per_s:,.0f} | {r.steady_ratio:.1%} | "
            f"{r.busy_mean:.1%} | {r.busy_min:.1%} | {r.fill:.1%} | "
            f"{r.cpu_us_per_expansion:.0f} | {r.moves}"
        )
    ours = results.get("ours")
    speedups = {}
    if ours:
        for r in results.values():
            if r.mode != "ours":
                speedups[r.mode] = {
                    "e2e": ours.e2e_per_s / r.e2e_per_s,
                    "steady": ours.steady_per_s / max(r.steady_per_s, 1e-9),
                }
                print(
                    f"ours / {r.mode}: e2e x{speedups[r.mode]['e2e']:.2f}, "
                    f"steady x{speedups[r.mode]['steady']:.2f}"
                )
        if ours.profile:
            print(ours.profile)
    record = {
        "date": dt.date.today().isoformat(),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "workload": {
            "trees": trees,
            "simulations": sims,
            "k": k,
            "max_inflight": max_inflight,
            "replicas": replicas,
            "reward": reward,
            "rollout": rollout,
            **asdict(cost),
            "ideal_per_s": cost.ideal(replicas),
        },
        "results": {
            m: {k_: v for k_, v in asdict(r).items() if k_ != "profile"} for m, r in results.items()
        },
        "ours_over": speedups,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    app()
