"""The cluster files under cluster/ against what their consumers require.

Each manifest is checked with the checks of the program that reads it, where Ray ships them
(the autoscaler's config validation, the KubeRay-CR-to-autoscaler translation of Ray's in-tree
autoscaler), and otherwise against KubeRay's CRD and webhook rules; then for consistency with
the job configs that run on it (every resource a job asks for is offered, in the quantity its
actors need at their peak) and with the project (Ray version, files, metric names).

Every checker returns a list of problems, so each test also shows, on a broken copy, that the
checker notices what it is there to notice.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from itool_ray.config import load_config
from itool_ray.metrics import METRICS, PREFIX
from itool_ray.pipeline import ITOolConfig
from itool_ray.rollout.job import RolloutJobConfig

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
LOCAL = CLUSTER / "local-autoscaling.yaml"
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob.yaml"
NETWORKPOLICY = CLUSTER / "kuberay" / "networkpolicy.yaml"
LAUNCHER = CLUSTER / "launcher" / "aws-gpu.yaml"
DASHBOARD = CLUSTER / "grafana" / "itool-dashboard.json"
DOCKERFILE = CLUSTER / "docker" / "Dockerfile"

JOB_CLASSES = {"jobs/itool.py": ITOolConfig, "jobs/rollout.py": RolloutJobConfig}
# job config -> (its job, the clusters it is meant for)
JOB_CONFIGS = {
    "cluster/jobs/itool-gpu.yaml": ("jobs/itool.py", ("kuberay", "rayjob", "launcher")),
    "cluster/jobs/rollout-gpu.yaml": ("jobs/rollout.py", ("kuberay", "rayjob", "launcher")),
    "cluster/jobs/rollout-local-autoscaling.yaml": ("jobs/rollout.py", ("local",)),
}
CUSTOM_SLOTS = ("rollout_slot", "trainer_slot")


def _load(path: Path) -> Any:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def _ray_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d.split("==", 1)[1] for d in deps if re.match(r"ray(\[[^]]*\])?==", d)]
    assert len(pins) == 1, f"expected one ray==X pin in pyproject.toml, found {pins}"
    return pins[0]


# ---- every file parses ----------------------------------------------------------------------

MANIFESTS = sorted(
    p for p in CLUSTER.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
)


def test_the_expected_cluster_files_exist():
    names = {p.relative_to(ROOT).as_posix() for p in MANIFESTS}
    wanted = {
        p.relative_to(ROOT).as_posix()
        for p in (LOCAL, RAYCLUSTER, RAYJOB, NETWORKPOLICY, LAUNCHER, DASHBOARD)
    }
    assert wanted | set(JOB_CONFIGS) <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_manifest_parses_to_a_mapping(path):
    data = _load(path)
    assert isinstance(data, dict) and data, f"{path}: expected a non-empty mapping"


# ---- resources: what node types offer, whether the jobs' actors fit --------------------------


def _node_pool(node_types: dict[str, dict], head_type: str) -> list[tuple[str, dict[str, float]]]:
    """Every node the cluster can have at once: the head, and each worker type at max_workers."""
    nodes = []
    for name, spec in node_types.items():
        count = 1 if name == head_type else int(spec.get("max_workers", 0))
        nodes += [(name, dict(spec.get("resources", {})))] * count
    return nodes


def _actor_requests(cfg: Any) -> list[tuple[str, dict[str, float]]]:
    """What the job's actors ask Ray for, at the job's peak (all at once)."""

    def ask(cpus: float, gpus: float, custom: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in {"CPU": cpus, "GPU": gpus, **custom}.items() if v > 0}

    r = cfg.replicas
    peak = max(r.count, getattr(r, "max_count", None) or 0)
    asks = [("replica", ask(r.num_cpus, r.num_gpus, r.resources))] * peak
    if isinstance(cfg, ITOolConfig):
        t = cfg.train
        asks.append(("trainer", ask(t.num_cpus, t.num_gpus, t.resources)))
    asks.append(("tree manager", ask(cfg.manager.num_cpus, 0, {})))
    return asks


def placement_problems(
    asks: list[tuple[str, dict[str, float]]], nodes: list[tuple[str, dict[str, float]]]
) -> list[str]:
    """First-fit, largest asks first, of every actor onto the cluster at full size."""
    problems = []
    offered = {k for _, res in nodes for k, v in res.items() if v > 0}
    for who, ask in asks:
        missing = sorted(set(ask) - offered)
        if missing:
            problems.append(f"{who} asks for {missing}, which no node type offers")
    if problems:
        return sorted(set(problems))
    free = [dict(res) for _, res in nodes]
    for who, ask in sorted(asks, key=lambda a: -sum(a[1].values())):
        for node in free:
            if all(node.get(k, 0) >= v for k, v in ask.items()):
                for k, v in ask.items():
                    node[k] -= v
                break
        else:
            problems.append(f"no room for the {who} ({ask}) with every node type at max_workers")
    return problems


def head_problems(node_types: dict[str, dict], head_type: str) -> list[str]:
    """The head must not offer the slots (or GPUs): they are what makes the autoscaler add
    the GPU nodes, and a replica or the trainer on the head would take its resources."""
    res = node_types[head_type].get("resources", {})
    return [f"the head offers {k}" for k in (*CUSTOM_SLOTS, "GPU") if res.get(k, 0) > 0]


def _job_cfg(rel: str):
    job, _ = JOB_CONFIGS[rel]
    return load_config(JOB_CLASSES[job], ROOT / rel)


@pytest.mark.parametrize("rel", sorted(JOB_CONFIGS))
def test_job_configs_validate_with_the_project_config_classes(rel):
    cfg = _job_cfg(rel)
    assert cfg.replicas.resources.get("rollout_slot") == 1, "a replica asks for one rollout_slot"
    if isinstance(cfg, ITOolConfig):
        assert cfg.train.resources.get("trainer_slot") == 1, "the trainer asks for one trainer_slot"
    if "gpu" in rel:
        assert cfg.replicas.num_gpus == 1
        if isinstance(cfg, ITOolConfig):
            assert cfg.train.num_gpus == 1
            # vLLM refuses an adapter whose rank exceeds the engine's max_lora_rank
            assert cfg.train.lora.build().r <= cfg.engine.max_lora_rank


def test_job_config_validation_rejects_a_misspelt_key(tmp_path):
    from itool_ray.config import ConfigError

    bad = tmp_path / "bad.yaml"
    data = _load(ROOT / "cluster/jobs/itool-gpu.yaml")
    data["train"]["resourcez"] = data["train"].pop("resources")
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="resourcez"):
        load_config(ITOolConfig, bad)


def _kuberay_node_types(spec: dict) -> tuple[dict[str, dict], str]:
    """The node types Ray's in-tree autoscaler derives from a RayCluster spec (Ray's own
    translation, the one the autoscaler sidecar runs; it also validates the result)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    cr = {"metadata": {"name": "itool", "namespace": "default"}, "spec": copy.deepcopy(spec)}
    derived = _derive_autoscaling_config_from_ray_cr(cr)
    return derived["available_node_types"], derived["head_node_type"]


def _cluster_node_types(kind: str) -> tuple[dict[str, dict], str]:
    if kind == "kuberay":
        return _kuberay_node_types(_load(RAYCLUSTER)["spec"])
    if kind == "rayjob":
        return _kuberay_node_types(_load(RAYJOB)["spec"]["rayClusterSpec"])
    data = _load(LAUNCHER if kind == "launcher" else LOCAL)
    return data["available_node_types"], data["head_node_type"]


CASES = [(rel, kind) for rel, (_, kinds) in sorted(JOB_CONFIGS.items()) for kind in kinds]


@pytest.mark.parametrize(("rel", "kind"), CASES, ids=[f"{r.split('/')[-1]}@{k}" for r, k in CASES])
def test_every_resource_a_job_asks_for_is_offered_in_enough_quantity(rel, kind):
    node_types, head = _cluster_node_types(kind)
    assert head_problems(node_types, head) == []
    assert placement_problems(_actor_requests(_job_cfg(rel)), _node_pool(node_types, head)) == []


def test_placement_check_notices_missing_or_short_resources():
    cfg = _job_cfg("cluster/jobs/itool-gpu.yaml")
    node_types, head = _cluster_node_types("kuberay")
    asks = _actor_requests(cfg)
    no_trainer = {k: v for k, v in node_types.items() if k != "trainer-gpu"}
    assert any("trainer_slot" in p for p in placement_problems(asks, _node_pool(no_trainer, head)))
    small = copy.deepcopy(node_types)
    small["rollout-gpu"]["max_workers"] = cfg.replicas.count - 1
    assert any(
        "no room for the replica" in p for p in placement_problems(asks, _node_pool(small, head))
    )
    cpu_short = copy.deepcopy(node_types)
    cpu_short["trainer-gpu"]["resources"]["CPU"] = cfg.train.num_cpus - 1
    assert any("trainer" in p for p in placement_problems(asks, _node_pool(cpu_short, head)))
    greedy_head = copy.deepcopy(node_types)
    greedy_head[head]["resources"]["rollout_slot"] = 1
    assert head_problems(greedy_head, head) == ["the head offers rollout_slot"]


# ---- local fake-autoscaling cluster ----------------------------------------------------------


def local_problems(cfg: dict) -> list[str]:
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_TYPE
    from ray.autoscaler._private.util import validate_config

    problems = []
    try:
        validate_config(copy.deepcopy(cfg))  # what the autoscaler runs on the file
    except Exception as e:  # jsonschema.ValidationError, ValueError, RuntimeError
        problems.append(f"Ray's validate_config: {str(e).splitlines()[0]}")
    provider = cfg.get("provider", {})
    if provider.get("type") != "fake_multinode":
        problems.append("provider.type is not fake_multinode")
    for key in ("use_node_id_as_ip", "disable_node_updaters", "disable_launch_config_check"):
        if provider.get(key) is not True:
            problems.append(f"provider.{key} is not true")
    if not str(provider.get("gcs_address", "")).startswith("127.0.0.1:"):
        problems.append("provider.gcs_address is not on 127.0.0.1 (fake nodes join there)")
    types = cfg.get("available_node_types", {})
    # the fake provider tags its head node with this type name, whatever the file says
    if cfg.get("head_node_type") != FAKE_HEAD_NODE_TYPE or FAKE_HEAD_NODE_TYPE not in types:
        problems.append(f"the head node type must be {FAKE_HEAD_NODE_TYPE!r}")
    elif types[FAKE_HEAD_NODE_TYPE].get("max_workers") != 0:
        problems.append("the head node type's max_workers is not 0")
    workers = {k: v for k, v in types.items() if k != cfg.get("head_node_type")}
    if not any(v.get("resources", {}).get("rollout_slot", 0) >= 1 for v in workers.values()):
        problems.append("no worker type offers rollout_slot")
    for name, spec in workers.items():
        if not 0 == spec.get("min_workers", 0) < spec.get("max_workers", 0):
            problems.append(f"{name}: expected min_workers 0 < max_workers (scale from zero)")
    if not 0 < cfg.get("idle_timeout_minutes", 5) <= 1:
        problems.append("idle_timeout_minutes should be short (<= 1) for a local test")
    return problems


def test_local_autoscaling_config():
    assert local_problems(_load(LOCAL)) == []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda c: c["provider"].update(type="aws"), "provider.type"),
        (
            lambda c: c["available_node_types"]["rollout"]["resources"].pop("rollout_slot"),
            "rollout_slot",
        ),
        (lambda c: c.update(head_node_type="rollout"), "head node type must be"),
        (
            lambda c: c["available_node_types"]["ray.head.default"].update(max_workers=2),
            "max_workers is not 0",
        ),
        (lambda c: c["provider"].update(gcs_address="0.0.0.0:6379"), "gcs_address"),
        (lambda c: c.pop("cluster_synced_files"), "cluster_synced_files"),
        (
            lambda c: c["available_node_types"]["rollout"]["resources"].update(rollout_slot=0.5),
            "not of type 'integer'",
        ),
    ],
)
def test_local_config_check_notices_breakage(breakage, expected):
    cfg = _load(LOCAL)
    breakage(cfg)
    problems = local_problems(cfg)
    assert any(expected in p for p in problems), problems


# ---- KubeRay ---------------------------------------------------------------------------------

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
GPU_KEY = "nvidia.com/gpu"


def _group_problems(where: str, group: dict) -> list[str]:
    problems = []
    params = group.get("rayStartParams")
    if not isinstance(params, dict):
        return [f"{where}: rayStartParams missing"]
    # map[string]string in the CRD: an unquoted YAML number is rejected by the API server
    problems += [
        f"{where}: rayStartParams.{k} is not a string"
        for k, v in params.items()
        if not isinstance(v, str)
    ]
    if "labels" in params:
        problems.append(f"{where}: rayStartParams.labels is not supported (KubeRay)")
    if "resources" in params and group.get("resources"):
        problems.append(f"{where}: resources in both rayStartParams and the group (KubeRay)")
    if isinstance(params.get("resources"), str):
        try:  # KubeRay's form: '"{\"name\": n}"', a JSON string holding a JSON object
            custom = json.loads(json.loads(params["resources"]))
            assert isinstance(custom, dict)
        except (ValueError, TypeError, AssertionError):
            problems.append(
                f'{where}: rayStartParams.resources is not in the form \'"{{\\"name\\": n}}"\''
            )
    containers = group.get("template", {}).get("spec", {}).get("containers") or []
    if not containers:
        return [*problems, f"{where}: template.spec.containers is empty"]
    ray_container = containers[0]
    for key in ("name", "image"):
        if not ray_container.get(key):
            problems.append(f"{where}: containers[0].{key} missing")
    res = ray_container.get("resources", {})
    limits, requests = res.get("limits", {}), res.get("requests", {})
    if GPU_KEY in requests and str(requests[GPU_KEY]) != str(limits.get(GPU_KEY)):
        problems.append(f"{where}: {GPU_KEY} requests differ from limits (Kubernetes)")
    return problems


def raycluster_spec_problems(spec: dict) -> list[str]:
    problems = []
    if spec.get("rayVersion") != _ray_pin():
        problems.append(f"rayVersion {spec.get('rayVersion')!r} is not the pinned {_ray_pin()}")
    if spec.get("enableInTreeAutoscaling") is not True:
        problems.append("enableInTreeAutoscaling is not true")
    opts = spec.get("autoscalerOptions", {})
    if opts.get("upscalingMode", "Default") not in ("Default", "Aggressive", "Conservative"):
        problems.append("autoscalerOptions.upscalingMode is not Default/Aggressive/Conservative")
    if (
        not isinstance(opts.get("idleTimeoutSeconds", 60), int)
        or opts.get("idleTimeoutSeconds", 60) < 0
    ):
        problems.append("autoscalerOptions.idleTimeoutSeconds is not a non-negative integer")
    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        return [*problems, "headGroupSpec missing"]
    problems += _group_problems("headGroupSpec", head)
    groups = spec.get("workerGroupSpecs") or []
    names = [g.get("groupName") for g in groups]
    if len(set(names)) != len(names) or not all(names):
        problems.append(f"workerGroupSpecs need distinct groupNames, got {names}")
    for g in groups:
        where = f"workerGroupSpecs[{g.get('groupName')}]"
        problems += _group_problems(where, g)
        lo, n, hi = (g.get(k) for k in ("minReplicas", "replicas", "maxReplicas"))
        if not all(isinstance(x, int) for x in (lo, n, hi)) or not 0 <= lo <= n <= hi:
            problems.append(
                f"{where}: expected 0 <= minReplicas <= replicas <= maxReplicas, "
                f"got {lo}, {n}, {hi}"
            )
    images = {
        c.get("image")
        for g in (head, *groups)
        for c in g.get("template", {}).get("spec", {}).get("containers", [])[:1]
    }
    if len(images) != 1:
        problems.append(
            f"all Ray containers must run the same image, got {sorted(map(str, images))}"
        )
    gpu_groups = [g.get("groupName") for g in groups if _container_gpus(g) > 0]
    if sorted(gpu_groups) != ["rollout-gpu", "trainer-gpu"]:
        problems.append(f"expected GPU groups rollout-gpu and trainer-gpu, got {gpu_groups}")
    if _container_gpus(head) > 0:
        problems.append("the head asks Kubernetes for a GPU")
    if not problems:
        try:  # the translation Ray's in-tree autoscaler runs on this spec
            _kuberay_node_types(spec)
        except Exception as e:
            problems.append(f"Ray's KubeRay autoscaling config: {e}")
    return problems


def _container_gpus(group: dict) -> float:
    containers = group.get("template", {}).get("spec", {}).get("containers") or [{}]
    return float(containers[0].get("resources", {}).get("limits", {}).get(GPU_KEY, 0))


def raycluster_problems(doc: dict) -> list[str]:
    problems = []
    if doc.get("apiVersion") != "ray.io/v1" or doc.get("kind") != "RayCluster":
        problems.append("expected apiVersion ray.io/v1, kind RayCluster")
    name = doc.get("metadata", {}).get("name", "")
    if not DNS1035.match(name) or len(name) > 63:
        problems.append(f"metadata.name {name!r} is not a DNS-1035 label")
    return problems + raycluster_spec_problems(doc.get("spec", {}))


def test_raycluster():
    assert raycluster_problems(_load(RAYCLUSTER)) == []


def test_the_worker_groups_offer_the_slots_the_conventions_name():
    types, _ = _kuberay_node_types(_load(RAYCLUSTER)["spec"])
    assert types["rollout-gpu"]["resources"]["rollout_slot"] == 1
    assert types["rollout-gpu"]["resources"]["GPU"] == 1
    assert types["trainer-gpu"]["resources"]["trainer_slot"] == 1
    assert types["trainer-gpu"]["resources"]["GPU"] == 1


def _groups(d):
    return d["spec"]["workerGroupSpecs"]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d.update(apiVersion="ray.io/v1alpha1"), "apiVersion"),
        (lambda d: d["metadata"].update(name="iTool_cluster"), "DNS-1035"),
        (lambda d: d["spec"].update(enableInTreeAutoscaling=False), "enableInTreeAutoscaling"),
        (lambda d: d["spec"].update(rayVersion="2.9.0"), "rayVersion"),
        (lambda d: d["spec"].pop("headGroupSpec"), "headGroupSpec missing"),
        (
            lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 4}),
            "num-cpus is not a string",
        ),
        (
            lambda d: d["spec"]["headGroupSpec"]["template"]["spec"].update(containers=[]),
            "containers is empty",
        ),
        (lambda d: _groups(d)[0].update(minReplicas=3, replicas=1), "minReplicas <= replicas"),
        (lambda d: _groups(d)[0].update(replicas=99), "minReplicas <= replicas"),
        (
            lambda d: _groups(d)[1].update(groupName=_groups(d)[0]["groupName"]),
            "distinct groupNames",
        ),
        (lambda d: _groups(d)[0].pop("rayStartParams"), "rayStartParams missing"),
        (
            lambda d: _groups(d)[0]["rayStartParams"].update(resources='{"rollout_slot": 1}'),
            "not in the form",
        ),
        (
            lambda d: _groups(d)[0]["template"]["spec"]["containers"][0].update(image="other:1"),
            "same image",
        ),
        (
            lambda d: _groups(d)[1]["template"]["spec"]["containers"][0]["resources"]["limits"].pop(
                GPU_KEY
            ),
            "nvidia.com/gpu requests differ",
        ),
    ],
)
def test_raycluster_check_notices_breakage(breakage, expected):
    doc = _load(RAYCLUSTER)
    breakage(doc)
    problems = raycluster_problems(doc)
    assert any(expected in p for p in problems), problems


def rayjob_problems(doc: dict) -> list[str]:
    problems = []
    if doc.get("apiVersion") != "ray.io/v1" or doc.get("kind") != "RayJob":
        problems.append("expected apiVersion ray.io/v1, kind RayJob")
    name = doc.get("metadata", {}).get("name", "")
    if not DNS1035.match(name) or len(name) > 47:  # KubeRay: RayJob names <= 47 characters
        problems.append(f"metadata.name {name!r} is not a DNS-1035 label of <= 47 characters")
    spec = doc.get("spec", {})
    problems += [f"entrypoint: {p}" for p in entrypoint_problems(spec.get("entrypoint", ""))]
    try:
        env = yaml.safe_load(spec.get("runtimeEnvYAML", "")) or {}
    except yaml.YAMLError as e:
        env = {}
        problems.append(f"runtimeEnvYAML is not YAML: {e}")
    if not isinstance(env, dict) or not env.get("working_dir"):
        problems.append("runtimeEnvYAML has no working_dir")
    if spec.get("shutdownAfterJobFinishes") is not True:
        problems.append("shutdownAfterJobFinishes is not true")
    if (
        not isinstance(spec.get("ttlSecondsAfterFinished", 0), int)
        or spec.get("ttlSecondsAfterFinished", 0) < 0
    ):
        problems.append("ttlSecondsAfterFinished is not a non-negative integer")
    if spec.get("submissionMode", "K8sJobMode") not in (
        "K8sJobMode",
        "HTTPMode",
        "SidecarMode",
        "InteractiveMode",
    ):
        problems.append("unknown submissionMode")
    cluster = spec.get("rayClusterSpec")
    if not isinstance(cluster, dict):
        return [*problems, "rayClusterSpec missing"]
    problems += [f"rayClusterSpec: {p}" for p in raycluster_spec_problems(cluster)]
    if cluster != _load(RAYCLUSTER)["spec"]:
        problems.append("rayClusterSpec differs from cluster/kuberay/raycluster.yaml's spec")
    return problems


def entrypoint_problems(entrypoint: str) -> list[str]:
    """``python jobs/X.py --config cluster/jobs/Y.yaml [k=v ...]``: both files exist and the
    config validates with the job's config class."""
    argv = shlex.split(entrypoint)
    if len(argv) < 2 or argv[0] not in ("python", "python3"):
        return [f"{entrypoint!r} does not run `python SCRIPT`"]
    script = argv[1]
    problems = [] if (ROOT / script).is_file() else [f"{script} is not in the repository"]
    if script not in JOB_CLASSES:
        return [*problems, f"{script} is not one of the project's jobs {sorted(JOB_CLASSES)}"]
    config = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
    overrides = [a for a in argv[2:] if "=" in a and not a.startswith("-")]
    if config is not None and not (ROOT / config).is_file():
        return [*problems, f"{config} is not in the repository"]
    try:
        load_config(JOB_CLASSES[script], ROOT / config if config else None, overrides)
    except ValueError as e:
        problems.append(f"the job config does not validate: {e}")
    return problems


def test_rayjob():
    assert rayjob_problems(_load(RAYJOB)) == []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d.update(kind="RayCluster"), "kind RayJob"),
        (lambda d: d["metadata"].update(name="x" * 48), "<= 47"),
        (
            lambda d: d["spec"].update(entrypoint="python jobs/missing.py"),
            "jobs/missing.py is not in the repository",
        ),
        (
            lambda d: d["spec"].update(
                entrypoint="python jobs/itool.py --config cluster/jobs/nope.yaml"
            ),
            "nope.yaml is not in the repository",
        ),
        (
            lambda d: d["spec"].update(entrypoint=d["spec"]["entrypoint"] + " replicas.count=0"),
            "replicas.count",
        ),
        (lambda d: d["spec"].update(runtimeEnvYAML="env_vars: {A: b}\n"), "working_dir"),
        (lambda d: d["spec"].update(shutdownAfterJobFinishes=False), "shutdownAfterJobFinishes"),
        (lambda d: d["spec"].pop("rayClusterSpec"), "rayClusterSpec missing"),
        (
            lambda d: _groups({"spec": d["spec"]["rayClusterSpec"]})[0].update(maxReplicas=2),
            "differs from cluster/kuberay/raycluster.yaml",
        ),
    ],
)
def test_rayjob_check_notices_breakage(breakage, expected):
    doc = _load(RAYJOB)
    breakage(doc)
    problems = rayjob_problems(doc)
    assert any(expected in p for p in problems), problems


# ---- the NetworkPolicy: who may reach the Ray head -------------------------------------------

OPERATOR = {"app.kubernetes.io/name": "kuberay-operator"}
DASHBOARD_PORT = 8265  # the dashboard and job API: ray job submit, the operator's job status
RAY_PORT = 43217  # a port Ray picks for a raylet / object manager / worker on the head


def _selects(selector: dict | None, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions; {} = all)."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _pod_labels(spec: dict, group: dict | None, cluster: str) -> dict[str, str]:
    """A KubeRay pod's labels: its template's, then KubeRay's own where the template has none."""
    node_type = "head" if group is None else "worker"
    group = spec["headGroupSpec"] if group is None else group
    own = {
        "ray.io/node-type": node_type,
        "ray.io/cluster": cluster,
        "ray.io/is-ray-node": "yes",
        "ray.io/group": group.get("groupName", "headgroup"),
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    template = (group.get("template", {}).get("metadata") or {}).get("labels") or {}
    return {**own, **template}


def _admits(policy: dict, labels: dict[str, str], same_namespace: bool, port: int) -> bool:
    """Would the policy let a pod with ``labels``, in the policy's namespace or another one,
    reach ``port``? (Any namespaceSelector is taken to match the other namespace.)"""
    for rule in policy.get("spec", {}).get("ingress") or []:
        ports = rule.get("ports")
        if ports and not any(p.get("port") == port for p in ports):
            continue
        peers = rule.get("from")
        if not peers:
            return True  # no `from`: every source
        for peer in peers:
            if "ipBlock" in peer:
                return True  # an address range: pods and hosts outside the Ray cluster
            ns, pod = peer.get("namespaceSelector"), peer.get("podSelector")
            in_ns = same_namespace if ns is None else ns == {} or not same_namespace
            if in_ns and (pod is None or _selects(pod, labels)):
                return True
    return False


def networkpolicy_problems(policy: dict, clusters: dict[str, dict], submitter: str) -> list[str]:
    """``clusters``: name -> RayCluster spec whose head the policy must guard; ``submitter``:
    the RayJob's name (its submitter pod is labelled ``job-name: <name>``)."""
    problems = []
    if policy.get("apiVersion") != "networking.k8s.io/v1" or policy.get("kind") != "NetworkPolicy":
        problems.append("expected apiVersion networking.k8s.io/v1, kind NetworkPolicy")
    spec = policy.get("spec", {})
    if "Ingress" not in (spec.get("policyTypes") or []):
        problems.append("policyTypes does not include Ingress: ingress is not restricted")
    for rule in spec.get("ingress") or []:
        if not rule.get("from"):
            problems.append("an ingress rule has no `from`: it admits every source")
        if any("ipBlock" in peer for peer in rule.get("from") or []):
            problems.append("an ingress rule admits an ipBlock (sources outside the cluster)")
    for name, cluster in clusters.items():
        head = _pod_labels(cluster, None, name)
        workers = [_pod_labels(cluster, g, name) for g in cluster.get("workerGroupSpecs", [])]
        if not _selects(spec.get("podSelector"), head):
            problems.append(f"{name}: the podSelector does not select the head pod ({head})")
        if any(_selects(spec.get("podSelector"), w) for w in workers):
            problems.append(f"{name}: the podSelector also selects worker pods")
        containers = cluster["headGroupSpec"]["template"]["spec"]["containers"]
        ports = sorted({p["containerPort"] for c in containers for p in c.get("ports", [])})
        metrics = int(cluster["headGroupSpec"]["rayStartParams"].get("metrics-export-port", -1))
        # outside the Ray cluster: who may reach which head port (the metrics port: anyone)
        outsiders = {
            "a pod outside the Ray cluster (this namespace)": ({"app": "other"}, True, ()),
            "a pod outside the Ray cluster (another namespace)": ({"app": "other"}, False, ()),
            "the RayJob's submitter pod": ({"job-name": submitter}, True, (DASHBOARD_PORT,)),
            "the KubeRay operator": (OPERATOR, False, (DASHBOARD_PORT,)),
        }
        for port in [*ports, RAY_PORT]:
            for w in [head, *workers]:
                if not _admits(policy, w, True, port):
                    problems.append(f"{name}: pods of the cluster cannot reach the head's {port}")
                    break
            for who, (labels, same, allowed) in outsiders.items():
                admitted = _admits(policy, labels, same, port)
                if admitted and port != metrics and port not in allowed:
                    problems.append(f"{name}: {who} reaches the head's port {port}")
                elif not admitted and port in allowed:
                    problems.append(f"{name}: {who} cannot reach the head's port {port}")
    return problems


def _guarded_clusters() -> dict[str, dict]:
    return {
        "itool": _load(RAYCLUSTER)["spec"],
        "itool-train-x7k2p": _load(RAYJOB)["spec"]["rayClusterSpec"],
    }


def test_a_networkpolicy_admits_only_the_cluster_to_the_head():
    assert (CLUSTER / "kuberay" / "networkpolicy.yaml").is_file()
    job = _load(RAYJOB)["metadata"]["name"]
    assert networkpolicy_problems(_load(NETWORKPOLICY), _guarded_clusters(), job) == []
    head = _load(RAYCLUSTER)["spec"]["headGroupSpec"]["rayStartParams"]
    assert head["dashboard-host"] == "0.0.0.0", "no longer needed? then drop this policy's reason"


def _ingress(d):
    return d["spec"]["ingress"]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d.update(kind="Policy"), "kind NetworkPolicy"),
        (lambda d: d["spec"].update(policyTypes=["Egress"]), "does not include Ingress"),
        (lambda d: _ingress(d).append({}), "admits every source"),
        (lambda d: _ingress(d).append({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}), "ipBlock"),
        (lambda d: _ingress(d)[1].pop("ports"), "submitter pod reaches the head's port 6379"),
        (lambda d: _ingress(d)[2].pop("ports"), "(another namespace) reaches the head's port 8265"),
        (
            lambda d: _ingress(d)[1]["from"].append({"podSelector": {}}),
            "(this namespace) reaches the head's port 8265",
        ),
        (lambda d: _ingress(d).pop(0), "pods of the cluster cannot reach the head's 6379"),
        (lambda d: _ingress(d)[1]["from"].pop(0), "submitter pod cannot reach"),
        (lambda d: _ingress(d)[1]["from"].pop(1), "operator cannot reach"),
        (
            lambda d: d["spec"]["podSelector"]["matchLabels"].update(
                {"ray.io/node-type": "worker"}
            ),
            "does not select the head",
        ),
        (
            lambda d: d["spec"]["podSelector"]["matchLabels"].pop("ray.io/node-type"),
            "also selects worker pods",
        ),
    ],
)
def test_networkpolicy_check_notices_breakage(breakage, expected):
    doc = _load(NETWORKPOLICY)
    breakage(doc)
    problems = networkpolicy_problems(doc, _guarded_clusters(), _load(RAYJOB)["metadata"]["name"])
    assert any(expected in p for p in problems), problems


def test_networkpolicy_check_notices_a_cluster_without_the_label():
    clusters = _guarded_clusters()
    del clusters["itool"]["headGroupSpec"]["template"]["metadata"]
    problems = networkpolicy_problems(_load(NETWORKPOLICY), clusters, "itool-train")
    assert any("itool: the podSelector does not select the head" in p for p in problems)


def test_the_image_is_built_on_the_pinned_ray():
    base = re.search(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert base and base.group(1).startswith(f"rayproject/ray:{_ray_pin()}-"), base
    assert "cluster/setup.sh" in DOCKERFILE.read_text()
    working_dir = yaml.safe_load(_load(RAYJOB)["spec"]["runtimeEnvYAML"])["working_dir"]
    assert re.search(rf"^WORKDIR\s+{re.escape(working_dir)}\s*$", DOCKERFILE.read_text(), re.M)


# ---- Ray cluster launcher --------------------------------------------------------------------


def launcher_problems(cfg: dict) -> list[str]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    problems = []
    try:  # what `ray up` runs before it talks to the cloud
        validate_config(prepare_config(copy.deepcopy(cfg)))
    except Exception as e:
        problems.append(f"Ray's prepare_config/validate_config: {str(e).splitlines()[0]}")
    for key in ("cluster_name", "provider", "auth", "available_node_types", "head_node_type"):
        if not cfg.get(key):
            problems.append(f"{key} missing")
    if cfg.get("provider", {}).get("type") != "aws" or not cfg.get("provider", {}).get("region"):
        problems.append("provider needs type aws and a region")
    types = cfg.get("available_node_types", {})
    if cfg.get("head_node_type") not in types:
        problems.append("head_node_type is not one of available_node_types")
    total_min = 0
    for name, spec in types.items():
        lo, hi = spec.get("min_workers", 0), spec.get("max_workers")
        if not spec.get("node_config", {}).get("InstanceType"):
            problems.append(f"{name}: node_config.InstanceType missing")
        if "resources" not in spec or not isinstance(hi, int) or not 0 <= lo <= hi:
            problems.append(f"{name}: needs resources and 0 <= min_workers <= max_workers")
        if spec.get("resources", {}).get("GPU", 0) > 0:
            kind = spec.get("node_config", {}).get("InstanceType", "")
            if not re.match(r"^(g|p)\d", kind):
                problems.append(f"{name}: offers GPU on {kind!r}, not a GPU instance family")
        total_min += lo
    if cfg.get("max_workers", 0) < total_min:
        problems.append("max_workers is below the sum of min_workers")
    if cfg.get("max_workers", 0) < sum(s.get("max_workers", 0) for s in types.values()):
        problems.append("max_workers is below the node types' max_workers: it would cap them")
    setup = "\n".join(cfg.get("setup_commands", []))
    if "ITOOL_EXTRA=gpu" not in setup or "bash cluster/setup.sh" not in setup:
        problems.append("setup_commands do not run ITOOL_EXTRA=gpu bash cluster/setup.sh")
    head_start = "\n".join(cfg.get("head_start_ray_commands", []))
    if "--autoscaling-config=~/ray_bootstrap_config.yaml" not in head_start:
        problems.append("head_start_ray_commands do not start the autoscaler")
    if "--dashboard-host=127.0.0.1" not in head_start:
        problems.append("the head's dashboard is not kept on 127.0.0.1")
    return problems


def test_launcher():
    cfg = _load(LAUNCHER)
    assert launcher_problems(cfg) == []
    assert cfg["available_node_types"]["rollout-gpu"]["resources"]["rollout_slot"] == 1
    assert cfg["available_node_types"]["trainer-gpu"]["resources"]["trainer_slot"] == 1


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda c: c.pop("cluster_name"), "cluster_name missing"),
        (lambda c: c["provider"].pop("type"), "provider needs type"),
        (lambda c: c.update(head_node_type="gpu-head"), "head_node_type is not one of"),
        (lambda c: c["available_node_types"]["rollout-gpu"].pop("node_config"), "node_config"),
        (
            lambda c: c["available_node_types"]["rollout-gpu"]["resources"].update(GPU=0.5),
            "not of type 'integer'",
        ),
        (
            lambda c: c["available_node_types"]["rollout-gpu"].update(min_workers=9),
            "min_workers <= max_workers",
        ),
        (lambda c: c.update(max_workers=1), "would cap them"),
        (
            lambda c: c["available_node_types"]["trainer-gpu"]["node_config"].update(
                InstanceType="m5.large"
            ),
            "not a GPU instance family",
        ),
        (lambda c: c.update(setup_commands=["bash cluster/setup.sh"]), "ITOOL_EXTRA=gpu"),
    ],
)
def test_launcher_check_notices_breakage(breakage, expected):
    cfg = _load(LAUNCHER)
    breakage(cfg)
    problems = launcher_problems(cfg)
    assert any(expected in p for p in problems), problems


# ---- Grafana ---------------------------------------------------------------------------------


def exported_names() -> dict[str, str]:
    """Prometheus name -> kind for the project's metrics, as Ray exports them: Ray's metric
    recorder prefixes ``ray_``, and the Prometheus client names a counter's samples
    ``<name>_total`` (``_total`` is not doubled when the name already has it)."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from ray._private.telemetry.open_telemetry_metric_recorder import NAMESPACE

    names = {}
    for name, (kind, _, _) in METRICS.items():
        full = f"{NAMESPACE}_{PREFIX}{name}"
        if kind == "histogram":  # _bucket, _count, _sum
            family = HistogramMetricFamily(full, "", labels=[])
            family.add_metric([], buckets=[("+Inf", 1.0)], sum_value=1.0)
        else:
            family = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}[kind](
                full, "", labels=[]
            )
            family.add_metric([], 1.0)
        names.update({sample.name: kind for sample in family.samples})
    return names


def test_ray_exports_the_project_metrics_as_ray_itool():
    names = exported_names()
    assert names["ray_itool_expansions_total"] == "counter"
    assert names["ray_itool_policy_version"] == "gauge"


def _ray_default_panel_metrics() -> set[str]:
    import ray

    src = (
        Path(ray.__file__).parent
        / "dashboard/modules/metrics/dashboards/default_dashboard_panels.py"
    )
    return set(re.findall(r"\b((?:ray|autoscaler)_[a-z0-9_]+)\{", src.read_text()))


# a metric name before a label matcher, or as label_values()'s first argument
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{|label_values\(\s*([a-zA-Z_:][\w:]*)")


def _exprs(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard.get("panels", []):
        for p in [panel, *panel.get("panels", [])]:
            out += [(p.get("title", "?"), t.get("expr", "")) for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        q = var.get("query")
        if var.get("type") == "query":
            out.append((f"${var.get('name')}", q.get("query", "") if isinstance(q, dict) else q))
    return out


def dashboard_problems(d: dict) -> list[str]:
    problems = []
    if not isinstance(d.get("schemaVersion"), int) or not d.get("title") or not d.get("uid"):
        problems.append("schemaVersion, title and uid are required")
    variables = d.get("templating", {}).get("list", [])
    if not any(
        v.get("type") == "datasource"
        and v.get("query") == "prometheus"
        and v.get("name") == "datasource"
        for v in variables
    ):
        problems.append("no Prometheus datasource template variable named datasource")
    ids = [p.get("id") for p in d.get("panels", [])]
    if len(set(ids)) != len(ids):
        problems.append("panel ids are not unique")
    for p in d.get("panels", []):
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {p.get('title')!r} does not use the datasource variable")
        if not p.get("targets") or not all(t.get("expr") for t in p["targets"]):
            problems.append(f"panel {p.get('title')!r} has no PromQL target")
    ours, ray_default = exported_names(), _ray_default_panel_metrics()
    used = set()
    for title, expr in _exprs(d):
        names = {a or b for a, b in SELECTOR.findall(expr)}
        names |= set(re.findall(r"\bray_itool_\w+", expr))
        if not names:
            problems.append(f"{title!r}: no metric selector in {expr!r}")
        for name in names:
            if name.startswith("ray_itool_"):
                if name not in ours:
                    problems.append(f"{title!r}: {name} is not a metric of itool_ray.metrics")
                used.add(name)
            elif name not in ray_default:
                problems.append(f"{title!r}: {name} is not a metric of Ray's default dashboard")
        for fn, name in re.findall(r"\b(rate|irate|increase)\(\s*(ray_itool_\w+)", expr):
            if ours.get(name) == "gauge":
                problems.append(f"{title!r}: {fn}() of the gauge {name}")
    rows = " ".join(
        p.get("title", "").lower() for p in d.get("panels", []) if p.get("type") == "row"
    )
    for word in ("throughput", "replicas", "trees", "policy", "ray"):
        if word not in rows:
            problems.append(f"no row about {word}")
    for name in (
        "expansions_total",
        "replica_busy_fraction",
        "requests_in_flight",
        "prefix_cache_hit_rate",
        "replicas_healthy",
        "trees_active",
        "pairs_emitted_total",
        "policy_version",
    ):
        if f"ray_{PREFIX}{name}" not in used:
            problems.append(f"no panel shows ray_{PREFIX}{name}")
    return problems


def test_grafana_dashboard():
    assert dashboard_problems(_load(DASHBOARD)) == []


def _first_target(d: dict) -> dict:
    return next(p for p in d["panels"] if p.get("targets"))["targets"][0]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (
            lambda d: _first_target(d).update(expr="sum(rate(ray_itool_expansion_total{}[1m]))"),
            "ray_itool_expansion_total is not a metric",
        ),
        (
            lambda d: _first_target(d).update(expr="sum(rate(itool_expansions_total{}[1m]))"),
            "itool_expansions_total is not a metric of Ray",
        ),
        (
            lambda d: _first_target(d).update(
                expr="sum(rate(ray_itool_expansions_total_total{}[1m]))"
            ),
            "expansions_total_total is not a metric",
        ),
        (
            lambda d: _first_target(d).update(expr="rate(ray_itool_policy_version{}[1m])"),
            "rate() of the gauge",
        ),
        (
            lambda d: _first_target(d).update(expr="sum(ray_node_cpu_utilisation{})"),
            "ray_node_cpu_utilisation",
        ),
        (
            lambda d: d["templating"].update(list=d["templating"]["list"][1:]),
            "datasource template variable",
        ),
        (lambda d: d.pop("schemaVersion"), "schemaVersion"),
        (
            lambda d: d["panels"][1].update(datasource={"type": "prometheus", "uid": "prom-1"}),
            "does not use the datasource variable",
        ),
    ],
)
def test_dashboard_check_notices_breakage(breakage, expected):
    d = _load(DASHBOARD)
    breakage(d)
    problems = dashboard_problems(d)
    assert any(expected in p for p in problems), problems


# ---- all local addresses on loopback ---------------------------------------------------------


def test_local_instructions_stay_on_loopback():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running on a cluster", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "cluster/local-autoscaling.yaml",
        "kubectl apply",
        "ray up",
        "ray job submit",
        "itool-dashboard.json",
        "ray metrics launch-prometheus",
    ):
        assert needle in section, f"README's cluster section does not mention {needle}"
    hosts = set(re.findall(r"https?://([^/:\s]+)", section))
    hosts |= set(re.findall(r"--(?:node-ip-address|dashboard-host)[= ](\S+)", section))
    hosts |= set(re.findall(r"--address[= ](\d[\d.]*)", section))
    assert hosts and hosts <= {"127.0.0.1"}, hosts
