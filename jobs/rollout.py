"""MCTS rollout: step-level search over a data set on vLLM replicas, pairs to a file.

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}' -- \
        python jobs/rollout.py --config cluster/jobs/rollout-gpu.yaml

Locally (starts its own Ray on 127.0.0.1):

    .venv/bin/python jobs/rollout.py model=tiny limit=8 replicas.count=2

On the local fake-autoscaling cluster (cluster/local-autoscaling.yaml), replicas added while
trees wait and removed when idle: ``--config cluster/jobs/rollout-local-autoscaling.yaml``.

Options: ``--config FILE.yaml`` plus ``KEY.PATH=VALUE`` overrides (see
``itool_ray.rollout.job.RolloutJobConfig``); the configuration is validated before any actor
starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    overrides: list[str] = typer.Argument(None, help="KEY.PATH=VALUE overrides"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
) -> None:
    from itool_ray.config import load_job_config
    from itool_ray.rollout.job import RolloutJobConfig, run_rollout_job

    cfg = load_job_config(RolloutJobConfig, config, overrides)
    print(json.dumps(run_rollout_job(cfg), indent=1))


if __name__ == "__main__":
    app()
