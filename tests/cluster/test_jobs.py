"""The rollout job on a real local cluster, sent with ``ray job submit``: autoscaled replicas
(Ray's fake multi-node provider adds and removes nodes), the project's metrics on the
Prometheus endpoints, and fault injection (replica killed, tree manager killed, job stopped
and resubmitted), all with real vLLM (CPU) replicas of the tiny model.

One cluster serves the module; every process it started is stopped by process id at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.cluster.local_cluster import LocalCluster

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

TREES = 16
# the manager's (head node) and the replicas' (rollout nodes) metrics, all non-zero in a run
PROM_METRICS = (
    "expansions_total",
    "pairs_emitted_total",
    "trees_finished_total",
    "expansions_per_second",
    "generated_tokens_total",
    "replica_busy_fraction",
    "prefix_cache_hit_rate",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("cluster"), head_cpus=2)
    try:
        yield c.start()
    finally:
        c.stop()


def rollout_args(model: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"model={model}",
        "data=synth",
        f"limit={TREES}",
        "seed=3",
        f"out_dir={out}",
        "name_prefix=itest",
        "replicas.num_cpus=1",
        "replicas.resources={rollout_slot: 1}",
        'replicas.env={VLLM_CPU_KVCACHE_SPACE: "1", OMP_NUM_THREADS: "1"}',
        "engine.dtype=float32",
        "engine.max_model_len=4096",
        "engine.max_lora_rank=8",
        "engine.memory_fraction=0.1",
        "engine.max_logprobs=4096",
        "manager.max_batch=4",
        "manager.num_cpus=0.5",
        "manager.checkpoint_every_s=1",
        "mcts.k=2",
        "mcts.simulations=8",
        "mcts.max_inflight=4",
        "mcts.max_step_tokens=12",
        "mcts.max_depth=4",
        "mcts.max_tokens=256",
        *extra,
    ]


def finished_ids(out: Path) -> list[str]:
    path = out / "finished.jsonl"
    if not path.exists():
        return []
    ids = []
    for line in path.read_text().splitlines():
        try:
            ids.append(json.loads(line)["tree_id"])
        except json.JSONDecodeError:  # a line being written while the job runs
            continue
    return ids


def assert_nothing_lost(out: Path) -> dict:
    """Every tree finished exactly once; pairs.jsonl holds exactly the pairs of finished trees."""
    summary = json.loads((out / "summary.json").read_text())
    ids = finished_ids(out)
    assert len(ids) == TREES and len(set(ids)) == TREES, ids
    assert summary["trees_finished"] == TREES and summary["trees_active"] == 0
    per_tree = {
        json.loads(x)["tree_id"]: json.loads(x)["pairs"]
        for x in (out / "finished.jsonl").read_text().splitlines()
    }
    pairs = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == sum(per_tree.values()) == summary["pairs"]
    assert {p["tree_id"] for p in pairs} <= set(per_tree)
    return summary


def wait_until(cond, timeout: float, what: str, poll: float = 0.5, *, cluster=None, job=None):
    """Poll ``cond`` until true; with a ``job``, fail at once (with its logs) if it ended."""
    end = time.monotonic() + timeout
    while not (value := cond()):
        if job is not None and (status := cluster.job_status(job)) not in ("PENDING", "RUNNING"):
            raise AssertionError(
                f"job {job} {status} while waiting for {what}:\n" + cluster.job_logs(job)[-3000:]
            )
        if time.monotonic() > end:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(poll)
    return value


def _metric_total(text: str, name: str) -> float:
    """Sum of every sample of ``name`` (Ray prefixes ``ray_``; counters may get ``_total``)."""
    pat = re.compile(rf"^ray_itool_{name}(?:_total)?(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", re.M)
    return sum(float(v) for v in pat.findall(text))


def test_autoscaled_rollout_job_scales_nodes_and_exports_metrics(cluster, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    assert cluster.worker_nodes() == 0  # the minimum: no rollout node before the job
    job = cluster.submit(
        "jobs/rollout.py",
        *rollout_args(
            tiny_model_dir,
            out,
            "replicas.count=1",
            "replicas.max_count=2",
            "replicas.scale_up_after_s=0.5",
            "replicas.idle_timeout_s=2",
        ),
        submission_id="itest-autoscale",
    )
    nodes_seen, scraped = [], {}

    def poll():
        nodes_seen.append(cluster.worker_nodes())
        text = cluster.scrape()
        for name in PROM_METRICS:
            scraped[name] = max(scraped.get(name, 0.0), _metric_total(text, name))

    status = cluster.wait_job(job, timeout=600, on_poll=poll)
    assert status == "SUCCEEDED", cluster.job_logs(job)[-3000:]
    summary = assert_nothing_lost(out)
    # the replica pool grew while trees waited and the autoscaler gave each replica a node
    assert summary["replicas_added"] == 1 and summary["replicas_retired"] == 1
    events = [json.loads(x) for x in (out / "scaling.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["add", "retire"]
    assert max(nodes_seen) == 2, nodes_seen
    # the project's metrics reached the Prometheus endpoints with non-zero values
    assert all(scraped[name] > 0 for name in PROM_METRICS), scraped
    # ... and once the replicas are gone the autoscaler removes the idle nodes again
    wait_until(lambda: cluster.worker_nodes() == 0, 120, "idle rollout nodes to be removed")


def alive(cluster, class_name: str, n: int) -> list[dict] | None:
    """The ``n`` live actors of ``class_name``, or None while the listing shows another count."""
    actors = cluster.actors(class_name)
    return actors if len(actors) == n else None


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_killed_replica_and_killed_manager_lose_nothing(cluster, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    job = cluster.submit(
        "jobs/rollout.py",
        *rollout_args(tiny_model_dir, out, "replicas.count=2", "replicas.max_restarts=2"),
        submission_id="itest-faults",
    )
    # a replica process dies in the middle of the search
    wait_until(
        lambda: len(finished_ids(out)) >= 1,
        400,
        "the first finished tree",
        cluster=cluster,
        job=job,
    )
    replicas = wait_until(lambda: alive(cluster, "PolicyReplica", 2), 60, "two replicas")
    _kill(int(replicas[0]["pid"]))
    # then the tree manager's process dies too: Ray restarts it, it resumes from its checkpoint
    wait_until(
        lambda: len(finished_ids(out)) >= 3, 300, "three finished trees", cluster=cluster, job=job
    )
    done_before = len(finished_ids(out))
    (manager,) = wait_until(lambda: alive(cluster, "TreeManager", 1), 60, "the tree manager")
    _kill(int(manager["pid"]))
    status = cluster.wait_job(job, timeout=600)
    assert status == "SUCCEEDED", cluster.job_logs(job)[-3000:]
    summary = assert_nothing_lost(out)
    assert done_before < TREES  # both faults hit a running search
    assert summary["manager_restarts"] == 1
    logs = cluster.job_logs(job)
    assert "tree manager died" in logs
    assert f"replica {replicas[0]['name']} down" in logs  # its calls failed and were re-queued


def test_stopped_job_resubmitted_resumes_without_loss(cluster, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    args = rollout_args(tiny_model_dir, out, "replicas.count=2")
    job = cluster.submit("jobs/rollout.py", *args, submission_id="itest-stop")
    wait_until(
        lambda: len(finished_ids(out)) >= 2, 400, "two finished trees", cluster=cluster, job=job
    )
    cluster.stop_job(job)
    assert cluster.wait_job(job, timeout=120) == "STOPPED"
    first = finished_ids(out)
    assert 2 <= len(first) < TREES
    job2 = cluster.submit("jobs/rollout.py", *args, submission_id="itest-resume")
    status = cluster.wait_job(job2, timeout=600)
    assert status == "SUCCEEDED", cluster.job_logs(job2)[-3000:]
    assert_nothing_lost(out)
    # the trees finished before the stop were kept, not searched again (a fresh search
    # would have appended them a second time)
    assert finished_ids(out)[: len(first)] == first
