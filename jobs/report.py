"""Report of a finished (or stopped) run: Markdown plus PNG plots.

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"MPLBACKEND": "Agg"}}' -- \
        python jobs/report.py /mnt/shared/runs/itool-gpu

Locally:

    .venv/bin/python jobs/report.py runs/itool            # -> runs/itool/report/report.md

Works on an iTool run folder (jobs/itool.py) or a rollout folder (jobs/rollout.py); both jobs
write it themselves at the end.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    run_dir: Path = typer.Argument(..., help="run folder of jobs/itool.py or jobs/rollout.py"),
    out: Path | None = typer.Option(None, "--out", help="report folder (default RUN_DIR/report)"),
) -> None:
    from itool_ray.report import write_report

    try:
        path = write_report(run_dir, out)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    print(path)


if __name__ == "__main__":
    app()
