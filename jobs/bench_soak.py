"""Soak: the rollout service under random faults for a long time; nothing lost, nothing stuck.

Run (the soak: SmolLM2-135M on CPU, 20 minutes, a fault about every minute):
    .venv/bin/python jobs/bench_soak.py
Trial (tiny random model, 3 minutes; proves the script, not a soak figure):
    .venv/bin/python jobs/bench_soak.py --model tiny --minutes 3

Local Ray, ``--replicas`` vLLM (CPU) replicas (``tests/rollout/chaos.py``'s ``ChaosReplica``:
a ``PolicyReplica`` that can be made to hang), the shipped ``run_rollout`` driving a
``TreeManager`` actor. Fresh samples keep coming: the search runs in waves of ``--trees``
newly synthesized samples (a new seed per wave), each wave one ``run_rollout`` into its own
folder, the next started as soon as one ends, until ``--minutes`` have passed (the last wave
then finishes). Every ``--fault-every-s`` (times 0.5-1.5 at random) while trees are active,
one fault, its kind dealt from a shuffled deck of ``--faults`` (every kind once per round,
in random order) and its target replica drawn at random:

* ``replica_kill``: ``ray.kill`` of a replica actor; Ray restarts it;
* ``replica_hang``: the replica's engine stops answering (its engine lock held); the manager
  times the call out after ``--call-timeout-s``, marks the replica down and restarts it;
* ``manager_kill``: ``ray.kill`` of the tree manager; Ray restarts it, the driver calls
  ``run`` again and the new incarnation resumes from the wave's checkpoint.

A fault is aimed at a target (a replica, the manager) that has recovered from the last one.
Recorded (printed, and written to ``--out`` as JSON):

* trees finished, and per wave: every tree finished once (duplicates counted);
* **pairs lost** (target 0): per wave, the pairs the finished trees report
  (``finished.jsonl``) that ``pairs.jsonl`` does not hold, and extra lines (doubled pairs);
* **stalls** (target 0): windows of ``--stall-s`` without a completed expansion while a
  wave has trees active (completed expansions read from the replicas' counters every
  ``--poll-s``, per incarnation);
* **recovery time** per fault: from the fault to the next completed expansion on the
  affected replica (a new incarnation: the killed or hung actor is replaced) or of the
  manager (a new instance); ``restarted_s``: until the replica's new incarnation (the new
  manager instance) first answers. Times are read every ``--poll-s``, so they are that
  coarse. A fault whose wave ended before it recovered has no recovery time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import platform
import random
import shlex
import statistics
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import typer

from itool_ray.rollout.journal import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/rollout/chaos.py: the fault-injecting replica

from tests.rollout.chaos import ChaosReplica, account, kill_manager, manager_progress  # noqa: E402

log = logging.getLogger("bench_soak")

KINDS = ("replica_kill", "replica_hang", "manager_kill")


@dataclass
class Fault:
    kind: str
    target: str  # a replica name, or "manager"
    t: float  # seconds since the soak started
    wave: int
    before: str  # the target's incarnation (replica) or instance (manager) when injected
    restarted_s: float | None = None
    recovery_s: float | None = None
    note: str = ""


@dataclass
class Wave:
    wave: int
    trees: int
    started: float
    seconds: float = 0.0
    finished: int = 0
    duplicate_trees: int = 0
    pairs: int = 0
    pairs_lost: int = 0
    pairs_extra: int = 0
    orphan_pairs: bool = False
    failures: int = 0
    hangs: int = 0
    manager_restarts: int = 0
    error: str = ""


@dataclass
class Soak:
    """State shared by the wave thread and the monitor (the main thread)."""

    started: float = field(default_factory=time.monotonic)
    manager: str | None = None  # the running wave's manager actor name
    wave: int = -1
    done: bool = False
    waves: list[Wave] = field(default_factory=list)
    error: str = ""

    def now(self) -> float:
        return time.monotonic() - self.started


def run_waves(
    soak: Soak, pool, cfg, settings, out: Path, trees: int, seed: int, deadline: float
) -> None:
    from itool_ray.data import synthesize
    from itool_ray.rollout import run_rollout

    try:
        w = 0
        while time.monotonic() < deadline:
            samples = list(
                synthesize(num_samples=trees, seed=seed * 1000 + w, max_candidates=3).samples
            )
            name = f"soak-manager-{w}-{uuid.uuid4().hex[:6]}"
            rec = Wave(w, trees, round(soak.now(), 2))
            soak.waves.append(rec)
            soak.manager, soak.wave = name, w
            t0 = time.monotonic()
            try:
                res = run_rollout(
                    samples,
                    cfg,
                    out / f"wave-{w}",
                    pool=pool,
                    settings=settings,
                    manager_name=name,
                    manager_restarts=1000,
                    progress=False,
                )
                rec.manager_restarts = res.progress["manager_restarts"]
            except Exception as e:  # recorded: a soak that cannot finish a wave failed
                rec.error = f"{type(e).__name__}: {e}"[:500]
                log.exception("wave %d failed", w)
            finally:
                soak.manager = None
            rec.seconds = round(time.monotonic() - t0, 2)
            rec.failures, rec.hangs = manager_counts(out / f"wave-{w}")
            acc = account(out / f"wave-{w}")
            rec.finished = len(set(acc.finished_ids))
            rec.duplicate_trees = acc.duplicate_trees
            rec.pairs, rec.pairs_lost = acc.pair_lines, acc.pairs_lost
            rec.pairs_extra, rec.orphan_pairs = acc.pairs_extra, acc.orphan_pairs
            log.info("wave %d: %s", w, rec)
            if rec.error:
                soak.error = rec.error
                return
            w += 1
    finally:
        soak.done = True


def manager_counts(folder: Path) -> tuple[int, int]:
    """Replica failures and hangs the wave's managers saw: each manager instance counts from
    zero, so the last record of every instance (``progress.jsonl``, read every 2 s by the
    driver, and the final one) is summed; a manager killed between two reads loses the
    counts since the last one."""
    last: dict[str, dict[str, Any]] = {}
    records = read_jsonl(folder / "progress.jsonl")[0]
    if (folder / "DONE.rollout.json").exists():
        records.append(json.loads((folder / "DONE.rollout.json").read_text()))
    for rec in records:
        last[rec["instance"]] = rec
    return sum(r["failures"] for r in last.values()), sum(r["hangs"] for r in last.values())


class Monitor:
    """Completed expansions, stalls and fault recoveries, read every poll."""

    def __init__(self, soak: Soak, pool, stall_s: float) -> None:
        self.soak, self.pool, self.stall_s = soak, pool, stall_s
        self.seen: dict[tuple[str, str], int] = {}  # (replica, incarnation) -> expansions
        self.expansions = 0
        self.last_expansion = soak.now()
        self.wave = -1
        self.stalls: list[dict[str, float]] = []
        self._stall_from: float | None = None
        self.replicas: dict[str, dict[str, Any]] = {}  # name -> last info answered
        self.progress: dict[str, Any] | None = None

    def poll(self, faults: list[Fault]) -> None:
        from itool_ray.rollout import run_sync

        soak, now = self.soak, self.soak.now()
        infos = run_sync(self.pool.infos(timeout=2.0))
        for st, info in zip(self.pool.replicas, infos, strict=False):
            if info is None:
                continue
            self.replicas[st.name] = info
            key = (st.name, info["incarnation"])
            grown = info["expansions"] - self.seen.get(key, 0)
            if grown > 0:
                self.seen[key] = info["expansions"]
                self.expansions += grown
                self.last_expansion = now
        name = soak.manager
        self.progress = manager_progress(name, timeout=2.0) if name else None
        if soak.wave != self.wave:  # a new wave: its start-up is not a stall
            self.wave, self.last_expansion = soak.wave, now
        active = name is not None and (self.progress is None or self.progress["trees_active"] > 0)
        if active and now - self.last_expansion > self.stall_s:
            if self._stall_from is None:
                self._stall_from = self.last_expansion
                log.warning("stall: no expansion for %.0f s", now - self.last_expansion)
        elif self._stall_from is not None:  # expansions again, or the wave ended
            end = self.last_expansion if self.last_expansion > self._stall_from else now
            self.stalls.append(
                {"from": round(self._stall_from, 2), "seconds": round(end - self._stall_from, 2)}
            )
            self._stall_from = None
        for f in faults:
            if f.recovery_s is None and not f.note:
                self._recovery(f, now)

    def _recovery(self, f: Fault, now: float) -> None:
        if f.kind == "manager_kill":
            p = self.progress
            if self.soak.wave != f.wave:
                f.note = "wave ended first"
            elif p is not None and p["instance"] != f.before:
                if f.restarted_s is None:
                    f.restarted_s = round(now - f.t, 2)
                if p["expansions"] > 0:
                    f.recovery_s = round(now - f.t, 2)
            return
        info = self.replicas.get(f.target)
        if info is not None and info["incarnation"] != f.before:
            if f.restarted_s is None:
                f.restarted_s = round(now - f.t, 2)
            if info["expansions"] > 0:
                f.recovery_s = round(now - f.t, 2)

    def close(self, faults: list[Fault]) -> None:
        if self._stall_from is not None:
            self.stalls.append(
                {
                    "from": round(self._stall_from, 2),
                    "seconds": round(self.soak.now() - self._stall_from, 2),
                    "open_at_end": True,
                }
            )
        for f in faults:
            if f.recovery_s is None and not f.note:
                f.note = "not recovered when the soak ended"


def inject(
    kind: str,
    soak: Soak,
    pool,
    monitor: Monitor,
    faults: list[Fault],
    hang_s: float,
    rng: random.Random,
) -> Fault | None:
    """One fault of ``kind`` on a target that recovered from the last one (None: none)."""
    import ray

    pending = {f.target for f in faults if f.recovery_s is None and not f.note}
    name, prog = soak.manager, monitor.progress
    if name is None or prog is None or not prog["trees_active"]:
        return None
    if kind == "manager_kill":
        if "manager" in pending:
            return None
        fault = Fault(kind, "manager", round(soak.now(), 2), soak.wave, prog["instance"])
        kill_manager(name)
    else:
        # the manager holds the pool's health during a wave: aim by the faults injected
        live = [
            i
            for i, st in enumerate(pool.replicas)
            if not st.retired and st.name not in pending and st.name in monitor.replicas
        ]
        if not live:
            return None
        i = rng.choice(live)
        st = pool.replicas[i]
        before = monitor.replicas[st.name]["incarnation"]
        fault = Fault(kind, st.name, round(soak.now(), 2), soak.wave, before)
        if kind == "replica_kill":
            pool.kill(i, no_restart=False)
        else:
            ray.get(pool.call(i, "hang", hang_s), timeout=30)
    log.info("fault: %s", fault)
    return fault


def summarize(faults: list[Fault]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        mine = [f for f in faults if f.kind == kind]
        rec = [f.recovery_s for f in mine if f.recovery_s is not None]
        out[kind] = {
            "faults": len(mine),
            "recovered": len(rec),
            "recovery_s_median": round(statistics.median(rec), 2) if rec else None,
            "recovery_s_max": max(rec) if rec else None,
        }
    return out


# ----------------------------------------------------------------------------- CLI
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    model: str = typer.Option("smollm2", help="smollm2, tiny or a local HF model folder"),
    minutes: float = typer.Option(20.0, help="soak length (the last wave then finishes)"),
    fault_every_s: float = typer.Option(60.0, help="mean seconds between faults"),
    faults: str = typer.Option(
        ",".join(KINDS), help="comma-separated subset of " + ",".join(KINDS)
    ),
    stall_s: float = typer.Option(120.0, help="no expansion this long with trees active: a stall"),
    replicas: int = typer.Option(2, help="policy replicas"),
    trees: int = typer.Option(8, help="fresh samples (trees) per wave"),
    sims: int = typer.Option(8, help="simulations per tree"),
    k: int = typer.Option(3, help="candidate steps per expansion"),
    max_inflight: int = typer.Option(2, help="simulations in flight per tree"),
    step_tokens: int = typer.Option(16, help="max tokens per step"),
    max_depth: int = typer.Option(4, help="steps per response"),
    max_batch: int = typer.Option(8, help="manager.max_batch"),
    call_timeout_s: float = typer.Option(60.0, help="manager.call_timeout_s (hang detection)"),
    poll_s: float = typer.Option(1.0, help="seconds between monitor reads"),
    kv_gb: float = typer.Option(1.0, help="vLLM CPU KV cache per replica, GB"),
    seed: int = typer.Option(0, help="data, search and fault seed"),
    verbose: bool = typer.Option(False, help="show the replicas' logs"),
    out: Path = typer.Option(Path("runs/bench/soak.json"), help="JSON figures"),
    run_dir: Path = typer.Option(Path("runs/bench/soak"), help="the waves' rollout folders"),
) -> None:
    import ray

    from itool_ray.mcts import MCTSConfig
    from itool_ray.models import resolve_model
    from itool_ray.policy import EngineConfig
    from itool_ray.rollout import ManagerSettings, ReplicaPool, run_sync
    from itool_ray.rollout.run import loopback_only

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    kinds = [x.strip() for x in faults.split(",") if x.strip()]
    if unknown := set(kinds) - set(KINDS):
        raise SystemExit(f"unknown fault(s) {sorted(unknown)}; expected {KINDS}")
    if minutes <= 0 or fault_every_s <= 0 or stall_s <= 0 or poll_s <= 0 or replicas < 1:
        raise SystemExit(
            "--minutes, --fault-every-s, --stall-s, --poll-s must be > 0, --replicas >= 1"
        )
    model_dir = str(resolve_model(model))
    run_dir = run_dir / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    cfg = MCTSConfig(
        k=k,
        simulations=sims,
        max_inflight=max_inflight,
        max_step_tokens=step_tokens,
        max_depth=max_depth,
        max_tokens=256,
        seed=seed,
    )
    settings = ManagerSettings(
        max_batch=max_batch,
        checkpoint_every_s=2.0,
        revive_every_s=2.0,
        call_timeout_s=call_timeout_s,
    )
    env = {
        "VLLM_CPU_KVCACHE_SPACE": f"{kv_gb:g}",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    engine = EngineConfig(
        model=model_dir,
        dtype="float32" if model == "tiny" else "auto",
        max_model_len=4096,
        enable_lora=False,
        cpu_kvcache_gb=kv_gb,
        max_logprobs=4096 if model == "tiny" else 20,
        seed=seed,
    )
    rng = random.Random(seed)
    loopback_only()
    ray.init(
        num_cpus=max(os.cpu_count() or 1, replicas + 1),
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        log_to_driver=verbose,
    )
    pool = ReplicaPool.start(
        replicas, engine, num_cpus=1, env=env, max_restarts=-1, replica_cls=ChaosReplica
    )
    injected: list[Fault] = []
    try:
        log.info("starting %d replica(s) of %s", replicas, model)
        run_sync(pool.wait_ready(timeout=900))
        soak = Soak()
        deadline = time.monotonic() + minutes * 60
        worker = threading.Thread(
            target=run_waves,
            daemon=True,
            args=(soak, pool, cfg, settings, run_dir, trees, seed, deadline),
        )
        worker.start()
        monitor = Monitor(soak, pool, stall_s)
        next_fault = soak.now() + fault_every_s * rng.uniform(0.5, 1.5)
        deck: list[str] = []  # the kinds in a random order, dealt one per fault, reshuffled
        while not soak.done:
            monitor.poll(injected)
            if time.monotonic() < deadline and soak.now() >= next_fault:
                deck = deck or rng.sample(kinds, len(kinds))
                fault = inject(
                    deck[-1], soak, pool, monitor, injected, hang_s=call_timeout_s * 10, rng=rng
                )
                if fault is None:  # nothing to aim at now: try again shortly
                    next_fault = soak.now() + 5.0
                else:
                    deck.pop()
                    injected.append(fault)
                    next_fault = soak.now() + fault_every_s * rng.uniform(0.5, 1.5)
            time.sleep(poll_s)
        worker.join()
        monitor.poll(injected)
        monitor.close(injected)
    finally:
        with contextlib.suppress(Exception):
            pool.shutdown()
        ray.shutdown()
    report(
        soak,
        monitor,
        injected,
        model,
        minutes,
        fault_every_s,
        stall_s,
        cfg,
        settings,
        replicas,
        trees,
        run_dir,
        out,
    )


def report(
    soak: Soak,
    monitor: Monitor,
    faults: list[Fault],
    model: str,
    minutes: float,
    fault_every_s: float,
    stall_s: float,
    cfg,
    settings,
    replicas: int,
    trees: int,
    run_dir: Path,
    out: Path,
) -> None:
    waves = soak.waves
    totals = {
        "seconds": round(soak.now(), 1),
        "waves": len(waves),
        "trees_finished": sum(w.finished for w in waves),
        "trees_unfinished": sum(w.trees - w.finished for w in waves),
        "duplicate_trees": sum(w.duplicate_trees for w in waves),
        "pairs": sum(w.pairs for w in waves),
        "pairs_lost": sum(w.pairs_lost for w in waves),
        "pairs_extra": sum(w.pairs_extra for w in waves),
        "orphan_pairs": any(w.orphan_pairs for w in waves),
        "expansions": monitor.expansions,
        "stalls": len(monitor.stalls),
        "faults": len(faults),
        "faults_recovered": sum(f.recovery_s is not None for f in faults),
        "manager_restarts": sum(w.manager_restarts for w in waves),
        "replica_failures_seen_by_managers": sum(w.failures for w in waves),
        "hangs_detected": sum(w.hangs for w in waves),
        "error": soak.error,
    }
    by_kind = summarize(faults)
    print(
        f"\nsoak of {model}: {totals['seconds']:.0f} s ({minutes:g} min asked), {replicas} "
        f"replica(s), waves of {trees} trees, a fault every ~{fault_every_s:g} s"
    )
    print(
        f"trees finished {totals['trees_finished']} (unfinished {totals['trees_unfinished']}, "
        f"duplicates {totals['duplicate_trees']}) in {totals['waves']} waves; pairs "
        f"{totals['pairs']}, lost {totals['pairs_lost']}, extra {totals['pairs_extra']}; "
        f"expansions {totals['expansions']}; stalls (>{stall_s:g} s) {totals['stalls']}"
    )
    print("fault | faults | recovered | recovery median s | recovery max s")
    for kind, r in by_kind.items():
        print(
            f"{kind} | {r['faults']} | {r['recovered']} | {r['recovery_s_median']} | "
            f"{r['recovery_s_max']}"
        )
    for f in faults:
        print(
            f"  t={f.t:7.1f} {f.kind:12s} {f.target:22s} restarted {f.restarted_s} s, "
            f"recovered {f.recovery_s} s {f.note}"
        )
    if soak.error:
        print(f"error: {soak.error}")
    record = {
        "date": dt.date.today().isoformat(),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "model": model,
        "minutes": minutes,
        "fault_every_s": fault_every_s,
        "stall_s": stall_s,
        "replicas": replicas,
        "trees_per_wave": trees,
        "mcts": cfg.to_dict(),
        "manager": asdict(settings),
        "run_dir": str(run_dir),
        "totals": totals,
        "recovery_by_kind": by_kind,
        "faults": [asdict(f) for f in faults],
        "stalls": monitor.stalls,
        "waves": [asdict(w) for w in waves],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    app()
