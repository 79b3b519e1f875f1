"""The rollout service on Ray: vLLM policy replicas, the replica pool, the tree manager."""

from itool_ray.rollout.autoscale import AutoscaleSettings, ScaleDecision, ScalePolicy
from itool_ray.rollout.manager import ManagerSettings, TreeManager
from itool_ray.rollout.pool import ReplicaPool, ReplicaSpec
from itool_ray.rollout.replica import Expansion, PolicyReplica, adapter_payload, materialize_adapter
from itool_ray.rollout.run import RolloutResult, init_ray, read_pairs, run_rollout, run_sync

__all__ = [
    "AutoscaleSettings",
    "ReplicaSpec",
    "ScaleDecision",
    "ScalePolicy",
    "Expansion",
    "ManagerSettings",
    "PolicyReplica",
    "ReplicaPool",
    "RolloutResult",
    "TreeManager",
    "adapter_payload",
    "init_ray",
    "materialize_adapter",
    "read_pairs",
    "run_rollout",
    "run_sync",
]
