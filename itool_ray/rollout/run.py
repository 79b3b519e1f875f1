"""Run one MCTS rollout on Ray: start (or reuse) replicas, run a TreeManager, collect pairs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itool_ray.mcts import MCTSConfig, Pair, pair_stats
from itool_ray.rollout.autoscale import AutoscaleSettings
from itool_ray.rollout.journal import read_jsonl
from itool_ray.rollout.manager import ManagerSettings, TreeManager
from itool_ray.rollout.pool import ReplicaPool

log = logging.getLogger(__name__)


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_only() -> None:
    """Make a Ray started from this process (and its children) use 127.0.0.1 as node IP.

    On Linux Ray resolves ``127.0.0.1`` to the host's reachable address and then binds GCS,
    raylet and worker servers on it; with clusters "disabled" (the variable below, read by
    ``ray._private.ray_constants`` at import) it uses the loopback address, so a local Ray
    binds to 127.0.0.1 only. Not for a process that joins a real multi-node cluster.
    """
    os.environ[LOOPBACK_ENV] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # ray may have been imported before the variable


def init_ray(
    address: str | None = None, *, num_cpus: int | None = None, log_to_driver: bool = True
) -> None:
    """Connect to ``address`` (or ``$RAY_ADDRESS``, e.g. inside ``ray job submit``); without
    one, start a local Ray bound to 127.0.0.1 (:func:`loopback_only`), dashboard included.
    ``log_to_driver=False``: the workers' output stays out of this process's console (the
    main job's actors write it to ``run_dir/logs/``)."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
        return
    loopback_only()
    ray.init(
        num_cpus=num_cpus or os.cpu_count(),
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        log_to_driver=log_to_driver,
    )


@dataclass
class RolloutResult:
    pairs: list[Pair]
    progress: dict[str, Any]
    replica_infos: list[dict | None] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        infos = [i for i in self.replica_infos if i]
        prompt = sum(i["prompt_tokens"] for i in infos)
        cached = sum(i["cached_prompt_tokens"] for i in infos)
        busy = [i["busy_seconds"] / max(i["uptime_seconds"], 1e-9) for i in infos]
        return {
            **self.progress,
            **{f"pairs_{k}": v for k, v in pair_stats(self.pairs).items() if k != "pairs"},
            "prefix_cache_hit_rate": cached / prompt if prompt else 0.0,
            "generated_tokens": sum(i["generated_tokens"] for i in infos),
            "replica_busy_fraction": busy,
        }


def read_pairs(path: str | Path) -> list[Pair]:
    """The pairs of a rollout's ``pairs.jsonl`` (a torn last line is dropped)."""
    return [Pair.from_dict(d) for d in read_jsonl(path)[0]]


def run_rollout(
    samples: Sequence[Any],
    mcts: MCTSConfig,
    out_dir: str | Path,
    *,
    pool: ReplicaPool,
    settings: ManagerSettings | None = None,
    manager_cpus: float = 0.5,
    progress: bool = True,
    autoscale: AutoscaleSettings | None = None,
    manager_restarts: int = 3,
    manager_name: str | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    log_dir: str | Path | None = None,
    env: Any = None,
) -> RolloutResult:
    """MCTS over ``samples`` on the pool's replicas; pairs land in ``out_dir/pairs.jsonl``.

    ``pool`` is lent to the manager (with its construction) and takes back the manager's
    replica state at the end (``ReplicaPool.adopt``): replicas marked down, restarted, added
    or retired during the rollout are so in ``pool`` afterwards.

    The TreeManager runs as its own async actor. When it dies (node lost, killed), Ray
    restarts it (``manager_restarts``) with the same arguments, it resumes from ``out_dir``
    (finished trees, their pairs, checkpointed trees) and ``run`` is called again: no tree
    or pair is lost, at most the search since the last checkpoint is redone. A manager whose
    constructor raises (bad settings) fails the rollout at once with that error. ``autoscale``:
    the manager grows the pool from ``pool.spec`` while trees wait for a replica (see
    ``itool_ray.rollout.autoscale``). Progress records go to ``out_dir/progress.jsonl``;
    ``on_progress`` (a live display) hears each one instead of the tqdm bar, with the tokens
    the replicas generated since the start (``generated_tokens``, read every few polls).
    ``log_dir``: the manager writes its output to ``log_dir/tree-manager.log``. ``env``: the
    task as an ``itool_ray.envs`` environment (default: single-turn calls).
    """
    import ray
    from tqdm import tqdm

    from itool_ray.actors import actor_options

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    opts = actor_options(
        num_cpus=manager_cpus,
        max_restarts=manager_restarts,
        name=manager_name,
        max_concurrency=64,
    )
    actor = ray.remote(TreeManager).options(**opts)
    manager = actor.remote(
        list(samples),
        mcts,
        pool,
        out_dir=str(out),
        settings=settings,
        autoscale=autoscale,
        env=env,
    )
    if log_dir is not None:
        manager.__ray_call__.remote(_log_to_file, str(log_dir))
    done_ref = manager.run.remote()
    instances: set[str] = set()  # manager incarnations seen: restarts = len - 1
    deaths = ManagerDeaths(manager_restarts)
    bar = tqdm(
        total=len(samples),
        desc="mcts trees",
        unit="tree",
        disable=not progress or on_progress is not None,
    )
    started = time.monotonic()
    tokens = _Tokens(manager) if on_progress is not None else None
    try:
        with open(out / "progress.jsonl", "a") as plog:
            while True:
                ready, _ = ray.wait([done_ref], timeout=2.0)
                try:
                    if ready:
                        final = ray.get(done_ref)
                    prog = dict(final) if ready else ray.get(manager.progress.remote())
                except ray.exceptions.RayActorError as e:
                    if getattr(e, "actor_init_failed", False):
                        raise  # its constructor raised: a restart would raise again
                    verdict = deaths.run_failed() if ready else deaths.progress_failed()
                    if verdict == "final":
                        raise
                    if verdict == "new":
                        log.warning(
                            "tree manager died (%s); restart %d/%d resumes from %s",
                            type(e).__name__,
                            deaths.deaths,
                            manager_restarts,
                            out,
                        )
                    if ready:  # run() itself failed: call it again on the restarted manager
                        done_ref = manager.run.remote()
                    time.sleep(1.0)
                    continue
                deaths.answered()
                if log_dir is not None and instances and prog["instance"] not in instances:
                    manager.__ray_call__.remote(_log_to_file, str(log_dir))  # restarted
                instances.add(prog["instance"])
                prog |= {
                    "t": round(time.monotonic() - started, 2),
                    "manager_restarts": len(instances) - 1,
                }
                if tokens is not None:
                    prog["generated_tokens"] = tokens.since_start()
                plog.write(json.dumps(prog) + "\n")
                plog.flush()
                if on_progress is not None:
                    on_progress(prog)
                bar.n = prog["trees_finished"]
                bar.set_postfix(
                    pairs=prog["pairs"],
                    exp=prog["expansions"],
                    fail=prog["failures"],
                    reps=prog["replicas_healthy"],
                )
                bar.refresh()
                if ready:  # the last record is the final one: a search shorter than a poll
                    break  # interval still leaves its progress line and curves
        infos = ray.get(manager.replica_infos.remote())
    finally:
        bar.close()
        _take_back(pool, manager)
        ray.kill(manager, no_restart=True)
    instances.add(final["instance"])
    final["manager_restarts"] = len(instances) - 1
    (out / "DONE.rollout.json").write_text(json.dumps(final))
    return RolloutResult(read_pairs(out / "pairs.jsonl"), final, infos)


class ManagerDeaths:
    """The tree manager's deaths, told from failed calls. A death fails the manager's
    ``run()`` once; while Ray restarts it, ``run()`` called again can fail too
    (``ActorUnavailableError``) until the manager is back. Those failures are the same death,
    not one each: a death is counted at the first ``run()`` failure after the manager last
    answered a call (``answered``). ``run_failed`` / ``progress_failed`` say ``"new"`` (a new
    death: call ``run()`` again), ``"same"`` (wait, call it again) or ``"final"``: deaths past
    ``restarts``, or no answer for ``timeout_s`` (Ray gave up on it, or it cannot start)."""

    def __init__(
        self, restarts: int, timeout_s: float = 600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.restarts, self.timeout_s, self.clock = restarts, timeout_s, clock
        self.deaths = 0
        self.restarting = False  # a death counted, the manager not answered since
        self.silent_since: float | None = None  # the first failed call since the last answer

    def run_failed(self) -> str:
        if self.restarting:
            return self._waited()
        self._waited()
        self.deaths += 1
        self.restarting = True
        return "final" if self.deaths > self.restarts else "new"

    def progress_failed(self) -> str:
        return self._waited()

    def answered(self) -> None:
        self.restarting = False
        self.silent_since = None

    def _waited(self) -> str:
        now = self.clock()
        if self.silent_since is None:
            self.silent_since = now
        return "final" if now - self.silent_since > self.timeout_s else "same"


def _log_to_file(manager: Any, folder: str) -> None:
    """Run inside the tree manager actor (``__ray_call__``): its output to ``folder``."""
    from itool_ray.console import log_to_file

    log_to_file("tree-manager", folder)


class _Tokens:
    """Tokens the replicas generated since the rollout started, asked of the manager every
    ``every`` polls (a replica that restarted counts from zero again)."""

    def __init__(self, manager: Any, every: int = 3) -> None:
        self.manager, self.every, self.polls = manager, every, 0
        self.start: int | None = None
        self.last = 0

    def _total(self) -> int | None:
        import ray

        try:
            infos = ray.get(self.manager.replica_infos.remote(), timeout=10)
        except Exception:  # a busy or restarting manager: ask again later
            return None
        return sum(i.get("generated_tokens", 0) for i in infos if i)

    def since_start(self) -> int:
        if self.polls % self.every == 0:
            total = self._total()
            if total is not None:
                if self.start is None:
                    self.start = total
                self.last = max(total - self.start, self.last)
        self.polls += 1
        return self.last


def _take_back(pool: ReplicaPool, manager: Any, timeout: float = 60.0) -> None:
    """The driver's pool takes over the state of the pool lent to ``manager``; a manager
    that cannot answer (dead for good) leaves the pool as it was lent."""
    import ray

    try:
        pool.adopt(ray.get(manager.release_pool.remote(), timeout=timeout))
    except Exception as e:  # the rollout failed with its manager: nothing to take back
        log.warning("replica pool not taken back from the tree manager: %s", e)


def run_sync(coro):
    """Run a pool coroutine (``wait_ready``, ``broadcast``...) from synchronous driver code."""
    return asyncio.run(coro)
