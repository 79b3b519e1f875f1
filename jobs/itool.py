"""The iTool job: iterative reinforced fine-tuning for tool use, on Ray.

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}' -- \
        python jobs/itool.py --config cluster/jobs/itool-gpu.yaml

Run locally (embedded default: local Ray, SmolLM2-135M-Instruct, synthesized ToolACE-style
data, held-out evaluation on real data):

    bash cluster/setup.sh && .venv/bin/python jobs/itool.py

Options: ``--config FILE.yaml`` and ``KEY.PATH=VALUE`` overrides, e.g.
``.venv/bin/python jobs/itool.py model=tiny data.num_samples=60 run_dir=/tmp/run``; the
configuration is validated before any actor starts (``itool_ray.pipeline.ITOolConfig``).

The console shows the run (``itool_ray.console.RunMonitor``): a live display of the stages and
the running stage's progress on a terminal, one plain line per event otherwise (CI, ``ray job
submit`` logs). What vLLM, Ray workers, TRL and transformers print goes to ``run_dir/logs/``
(one file per actor, ``driver.log`` for this process); ``--verbose`` brings it back to the
console. Training curves: ``.venv/bin/tensorboard --logdir RUN_DIR --host 127.0.0.1``.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    overrides: list[str] = typer.Argument(None, help="KEY.PATH=VALUE overrides"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="engines', Ray's and trainers' output on the console too"
    ),
) -> None:
    from itool_ray.cli import itool_job  # the same code as `itool-ray run`

    itool_job(overrides, config, verbose)


if __name__ == "__main__":
    app()
