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
    from rich.console import Console
    from rich.table import Table

    from itool_ray.config import load_job_config
    from itool_ray.pipeline import ITOolConfig, run_itool

    cfg = load_job_config(ITOolConfig, config, overrides)
    console = Console()
    table_data = run_itool(cfg, log=lambda msg: console.print(msg, markup=False, highlight=False))
    sets = sorted({k for row in table_data.values() for k, v in row.items() if isinstance(v, dict)})
    table = Table(title=f"held-out accuracy per stage ({cfg.run_dir})")
    for col in ("stage", "version", "pairs"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name in sets:
        table.add_column(name, justify="right")
    for stage, row in table_data.items():
        table.add_row(
            stage,
            str(row.get("version", "-")),
            str(row.get("pairs", "-")),
            *(f"{row[n]['accuracy']:.3f} (n={row[n]['n']})" if n in row else "-" for n in sets),
        )
    console.print(table)


if __name__ == "__main__":
    app()
