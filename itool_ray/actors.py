"""Ray actor options, assembled in one place for every actor of the job (policy replicas,
the tree manager, the trainer): placement (CPUs, GPUs, custom resources), restarts, name and
the environment variables of its ``runtime_env``. Pure: builds the ``.options(...)`` dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def actor_options(
    *,
    num_cpus: float,
    num_gpus: float = 0,
    resources: Mapping[str, float] | None = None,
    env: Mapping[str, str] | None = None,
    max_restarts: int = 0,
    name: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``ray.remote(cls).options(...)``; ``extra`` passes other Ray
    actor options through (``max_concurrency``, ``max_task_retries``, ...). Resources and the
    name are set only when given; ``env`` always becomes the actor's ``runtime_env``."""
    opts: dict[str, Any] = {"num_cpus": num_cpus, "max_restarts": max_restarts, **extra}
    if num_gpus:
        opts["num_gpus"] = num_gpus
    if resources:
        opts["resources"] = dict(resources)
    if env is not None:
        opts["runtime_env"] = {"env_vars": dict(env)}
    if name:
        opts["name"] = name
    return opts
