"""The ``itool-ray`` command: the jobs under one name, plus ``status`` of a run folder.

    itool-ray run [KEY.PATH=VALUE ...] [--config FILE] [--verbose]   # jobs/itool.py
    itool-ray rollout [KEY.PATH=VALUE ...] [--config FILE]           # jobs/rollout.py
    itool-ray evaluate [KEY.PATH=VALUE ...] [--config FILE]          # jobs/evaluate.py
    itool-ray experiments [KEY.PATH=VALUE ...] [--config FILE]       # jobs/experiments.py
    itool-ray report RUN_DIR [--out DIR]                             # jobs/report.py
    itool-ray status RUN_DIR [--json]

Each command runs the same code as its ``jobs/`` script (those stay for ``ray job submit``,
which runs a file). ``status`` reads the run folder alone: the stages' ``DONE`` markers
(summary plus the runner's ``_stage`` manifest), the started-but-unfinished stage folders and
their ``progress.jsonl``, and the live monitor's ``status.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="iTool on Ray: iterative reinforced fine-tuning of LLMs for tool use.",
)

_OVERRIDES = typer.Argument(None, help="KEY.PATH=VALUE overrides")
_CONFIG = typer.Option(None, "--config", "-c", help="YAML config file")


# ---- the main job --------------------------------------------------------------------------


def itool_job(overrides: list[str] | None, config: Path | None, verbose: bool = False) -> dict:
    """The main job (``jobs/itool.py`` and ``itool-ray run``): the iTool loop under the
    console monitor, then the held-out table; returns the table."""
    from rich.console import Console
    from rich.table import Table

    from itool_ray.config import load_job_config
    from itool_ray.console import RunMonitor, quiet_libraries

    if not verbose:
        quiet_libraries()
    from itool_ray.pipeline import ITOolConfig, run_itool

    cfg = load_job_config(ITOolConfig, config, overrides)
    console = Console(highlight=False)
    with RunMonitor(console=console, logs=not verbose) as monitor:
        table_data = run_itool(cfg, monitor=monitor)
    sets = sorted({k for row in table_data.values() for k, v in row.items() if isinstance(v, dict)})
    table = Table()
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
    console.print(f"held-out accuracy per stage ({cfg.run_dir})", markup=False, soft_wrap=True)
    console.print(table)
    return table_data


@app.command()
def run(
    overrides: list[str] = _OVERRIDES,
    config: Path | None = _CONFIG,
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="engines', Ray's and trainers' output on the console too"
    ),
) -> None:
    """Run (or resume) the iTool loop: data, warm-up SFT, then select / MCTS / DPO / eval."""
    itool_job(overrides, config, verbose)


@app.command()
def rollout(overrides: list[str] = _OVERRIDES, config: Path | None = _CONFIG) -> None:
    """MCTS rollout over a data set on vLLM replicas; pairs to a file."""
    from itool_ray.config import load_job_config
    from itool_ray.rollout.job import RolloutJobConfig, run_rollout_job

    cfg = load_job_config(RolloutJobConfig, config, overrides)
    print(json.dumps(run_rollout_job(cfg), indent=1))


@app.command()
def evaluate(overrides: list[str] = _OVERRIDES, config: Path | None = _CONFIG) -> None:
    """Benchmarks of a model plus an optional adapter: BFCL v3, API-Bank, Seal-Tools."""
    from itool_ray.config import load_job_config
    from itool_ray.eval.job import EvaluateConfig, run_evaluate_job

    cfg = load_job_config(EvaluateConfig, config, overrides)
    result = run_evaluate_job(cfg)
    print(Path(result["files"]["markdown"]).read_text())
    print("written:", ", ".join(result["files"].values()))


@app.command()
def experiments(overrides: list[str] = _OVERRIDES, config: Path | None = _CONFIG) -> None:
    """The paper's comparisons at small scale, in one resumable command."""
    from itool_ray.config import ConfigError, load_job_config
    from itool_ray.experiments import (
        ExperimentsConfig,
        itool_config,
        results_markdown,
        run_experiments,
        summarize,
    )

    cfg = load_job_config(ExperimentsConfig, config, overrides)
    try:
        itool_config(cfg, Path(cfg.run_dir) / "itool")  # the shared overrides validate too
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    result = summarize(cfg) if cfg.summarize_only else run_experiments(cfg)
    print(results_markdown(result))


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="run folder of the main job or of a rollout"),
    out: Path | None = typer.Option(None, "--out", help="report folder (default RUN_DIR/report)"),
) -> None:
    """Report of a finished (or stopped) run: Markdown, HTML and PNG plots."""
    from itool_ray.report import write_report

    try:
        path = write_report(run_dir, out)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    print(path)


# ---- status ----------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stage_order(run_dir: Path) -> list[str]:
    """The job's stages in order: from its ``config.json`` (``stage_plan``), else the stage
    folders found, oldest first."""
    from itool_ray.stages import STAGE_MARKER

    found = sorted(
        (p for p in run_dir.iterdir() if p.is_dir() and (p / STAGE_MARKER).is_file()),
        key=lambda p: (p / STAGE_MARKER).stat().st_mtime,
    )
    names: list[str] = []
    config = _read_json(run_dir / "config.json")
    if isinstance(config, dict):
        try:
            from itool_ray.pipeline import ITOolConfig, stage_plan

            names = list(stage_plan(ITOolConfig.model_validate(config)))
        except Exception:  # another job's or an older version's config: the folders tell
            names = []
    return names + [p.name for p in found if p.name not in names]


def _progress_text(record: Mapping[str, Any]) -> str:
    """A stage's last progress record in words (MCTS manager or trainer records)."""
    from itool_ray.console import Bar

    if "trees_total" in record:
        bar = Bar("trees", record.get("trees_finished", 0), record.get("trees_total"))
        bar.fields = {
            "pairs": record.get("pairs"),
            "expansions": record.get("expansions"),
            "failures": record.get("failures"),
        }
    elif "step" in record:
        bar = Bar("steps", record["step"], record.get("max_steps"), run=record.get("run"))
        bar.fields = {"loss": record.get("loss")}
    else:
        return ""
    bar.started = time.monotonic()  # no rate from one record
    return bar.text()


def _is_eval(name: str) -> bool:
    return name.startswith("eval-") or (name.startswith("iter") and name.endswith("-eval"))


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """Where a run stands, from its folder alone (module docstring): every stage with its
    state (done, started, to do), seconds, one-line summary and, for a started stage, its
    last progress record; the running stage and the last held-out accuracies."""
    from itool_ray.console import PROGRESS_FILE, STATUS_FILE, last_record, stage_brief
    from itool_ray.stages import MANIFEST_KEY, MARKER, RUN_MARKER, STAGE_MARKER

    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    if not (root / RUN_MARKER).is_file():
        raise FileNotFoundError(f"{root} is not an itool-ray run folder (no {RUN_MARKER})")
    live = _read_json(root / STATUS_FILE)
    live = live if isinstance(live, dict) else {}
    stages = []
    for name in _stage_order(root):
        folder = root / name
        entry: dict[str, Any] = {"name": name, "state": "todo"}
        done = _read_json(folder / MARKER) if (folder / MARKER).is_file() else None
        if isinstance(done, dict):
            summary = {k: v for k, v in done.items() if k != MANIFEST_KEY}
            entry |= {"state": "done", "seconds": summary.get("seconds"), "summary": summary}
            try:
                entry["brief"] = stage_brief(name, summary)
            except Exception:
                entry["brief"] = ""
        elif (folder / STAGE_MARKER).is_file():
            entry["state"] = "started"
            record = last_record(folder / PROGRESS_FILE)
            if record is not None:
                entry["progress"] = record
                entry["brief"] = _progress_text(record)
            newest = folder / PROGRESS_FILE if (folder / PROGRESS_FILE).is_file() else folder
            with contextlib.suppress(OSError):
                entry["age_s"] = time.time() - newest.stat().st_mtime
        stages.append(entry)
    evals = [s for s in stages if s["state"] == "done" and _is_eval(s["name"])]
    last_eval = evals[-1] if evals else None
    started = [s["name"] for s in stages if s["state"] == "started"]
    running = live.get("running") if not live.get("finished") else None
    return {
        "run_dir": str(root),
        "stages": stages,
        "done": sum(s["state"] == "done" for s in stages),
        "running": running or (started[0] if started else None),
        "monitor": live or None,
        "finished": bool(stages) and all(s["state"] == "done" for s in stages),
        "last_eval": None
        if last_eval is None
        else {
            "stage": last_eval["name"],
            "brief": last_eval.get("brief", ""),
        },
    }


def format_status(status: Mapping[str, Any]) -> list[str]:
    """``read_status`` as lines for a person."""
    from itool_ray.console import duration

    stages = status["stages"]
    monitor = status.get("monitor") or {}
    if status["finished"]:
        head = "finished"
    elif status["running"]:
        live = monitor and not monitor.get("finished")
        head = f"running {status['running']}" if live else f"stopped in {status['running']}"
    else:
        head = "stopped" if status["done"] else "not started"
    lines = [f"{status['run_dir']}: {status['done']}/{len(stages)} stages done, {head}"]
    width = max((len(s["name"]) for s in stages), default=0)
    marks = {"done": "✓", "started": "▶", "todo": "·"}
    for s in stages:
        seconds = duration(s["seconds"]) if s.get("seconds") is not None else ""
        note = s.get("brief", "")
        if s["state"] == "started":
            live = monitor.get("progress") if monitor.get("running") == s["name"] else None
            note = (live or {}).get("text") or note or "started"
            if s.get("age_s") is not None:
                note += f" (last written {duration(s['age_s'])} ago)"
        lines.append(f"  {marks[s['state']]} {s['name']:<{width}}  {seconds:>7}  {note}".rstrip())
    if monitor.get("updated") and not monitor.get("finished"):
        pid = monitor.get("pid")
        gone = ""
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            gone = ", not running on this machine"
        except (TypeError, ValueError, OSError):
            pass
        age = duration(time.time() - monitor["updated"])
        lines.append(f"monitor updated {age} ago (pid {pid}{gone})")
    if status.get("last_eval"):
        e = status["last_eval"]
        lines.append(f"last held-out accuracy ({e['stage']}): {e['brief']}")
    return lines


@app.command()
def status(
    run_dir: Path = typer.Argument(..., help="run folder of the main job"),
    as_json: bool = typer.Option(False, "--json", help="print the status as JSON"),
) -> None:
    """Stages done, the running one and the last metrics, read from the run folder alone."""
    try:
        st = read_status(run_dir)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    if as_json:
        print(json.dumps(st, indent=1, default=str))
    else:
        print("\n".join(format_status(st)))


def main() -> None:
    """The console script's entry point (``[project.scripts]`` in pyproject.toml)."""
    app()


if __name__ == "__main__":
    main()
