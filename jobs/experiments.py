"""The paper's experiments at small scale: base, mixed vs easy-to-hard SFT, iTool iterations
1-3, and DPO against SimPO, IPO and ORPO on the same MCTS pairs (one command, resumable).

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}' -- \
        python jobs/experiments.py run_dir=/mnt/shared/runs/experiments

Locally, on the embedded default (SmolLM2-135M-Instruct, synthesized ToolACE-style data,
held-out real data):

    .venv/bin/python jobs/experiments.py            # -> runs/experiments/results.md

``archive_dir=jobs/results/experiments`` keeps every finished stage there (weights only while
a run still needs them), to commit: a later run on another machine restores from it, and
``summarize_only=true`` rebuilds the table from it alone.

Options: ``--config FILE.yaml`` plus ``KEY.PATH=VALUE`` overrides of
``itool_ray.experiments.ExperimentsConfig``; ``itool=[...]`` passes overrides to every iTool
run (e.g. ``'itool=["data.num_samples=96"]'``).
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    overrides: list[str] = typer.Argument(None, help="KEY.PATH=VALUE overrides"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
) -> None:
    from itool_ray.config import ConfigError, load_job_config
    from itool_ray.experiments import (
        ExperimentsConfig,
        keep_archive,
        restore_archive,
        results_markdown,
        run_experiments,
        summarize,
    )

    cfg = load_job_config(ExperimentsConfig, config, overrides)
    try:
        from itool_ray.experiments import itool_config

        itool_config(cfg, Path(cfg.run_dir) / "itool")  # the shared overrides validate too
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    if cfg.summarize_only:
        restore_archive(cfg)
        keep_archive(cfg)
        result = summarize(cfg)
    else:
        result = run_experiments(cfg)
    print(results_markdown(result))


if __name__ == "__main__":
    app()
