"""The itool-ray console script (itool_ray.cli): registered in pyproject.toml, every job under
one name (the same code as jobs/*.py), and ``status RUN_DIR`` read from the run folder alone.
``status`` on a finished tiny run is checked end to end in tests/test_console.py."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from itool_ray.cli import app, read_status
from itool_ray.config import load_config
from itool_ray.console import PROGRESS_FILE, RunMonitor
from itool_ray.pipeline import ITOolConfig, stage_plan
from itool_ray.stages import StageRunner

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("run", "rollout", "evaluate", "experiments", "report", "status")


def test_console_script_is_registered_and_lists_every_command():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"itool-ray": "itool_ray.cli:main"}
    exe = Path(sys.executable).parent / "itool-ray"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "itool_ray.cli"]
    proc = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in COMMANDS:
        assert f" {name} " in proc.stdout, name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_run_refuses_a_bad_config_as_the_job_does():
    """``itool-ray run`` and ``jobs/itool.py`` run the same code: the same refusal, before
    any actor starts."""
    bad = ["data.num_samples=1", "run_dir=/tmp/itool-cli-never-made"]
    job = subprocess.run(
        [sys.executable, "jobs/itool.py", *bad],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    cli = subprocess.run(
        [sys.executable, "-m", "itool_ray.cli", "run", *bad],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert job.returncode == cli.returncode == 1
    assert "num_samples" in job.stderr and cli.stderr == job.stderr
    assert not Path("/tmp/itool-cli-never-made").exists()


def _interrupted_run(run_dir: Path) -> list[str]:
    """A run folder as the job leaves it while its sft stage runs: data and eval-base done,
    sft started with two optimizer steps in its progress file, the monitor's status.json."""
    cfg = load_config(ITOolConfig, None, ["model=tiny", f"run_dir={run_dir}"])
    plan = stage_plan(cfg)
    monitor = RunMonitor(lambda line: None, tensorboard=False)
    stages = StageRunner(run_dir, monitor.log, plan=plan, on_event=monitor.stage)
    (run_dir / "config.json").write_text(cfg.model_dump_json(indent=1))
    monitor.open(run_dir, list(plan))
    stages.run(
        "data",
        lambda out: {
            "buckets": {"easy": 2, "medium": 2, "hard": 1},
            "reinforce": 2,
            "heldout": {"synth": 4},
        },
    )
    stages.run(
        "eval-base",
        lambda out: {"version": 0, "synth": {"accuracy": 0.25, "n": 4, "parse_errors": 1}},
    )

    class Stopped(Exception):
        pass

    def sft(out: Path) -> dict:
        records = [
            {"run": "easy", "event": "begin", "step": 0, "max_steps": 4},
            {"run": "easy", "step": 1, "max_steps": 4, "loss": 2.5},
            {"run": "easy", "step": 2, "max_steps": 4, "loss": 2.0},
        ]
        for r in records:
            with (out / PROGRESS_FILE).open("a") as f:
                f.write(json.dumps(r) + "\n")
            monitor.trainer_record("sft", r)
        monitor._write_status(force=True)
        raise Stopped

    with pytest.raises(Stopped):
        stages.run("sft", sft)
    monitor.stage("sft", "running")  # as if still running: the job died without closing
    monitor.trainer_record("sft", {"run": "easy", "step": 2, "max_steps": 4, "loss": 2.0})
    monitor._write_status(force=True)
    return list(plan)


def test_status_lists_stages_done_the_running_one_and_last_metrics(tmp_path):
    run_dir = tmp_path / "run"
    names = _interrupted_run(run_dir)
    result = CliRunner().invoke(app, ["status", str(run_dir)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{run_dir}: 2/{len(names)} stages done, running sft"
    assert [ln.split()[1] for ln in lines[1 : 1 + len(names)]] == names
    assert lines[1].startswith("  ✓ data ") and lines[1].endswith(
        "5 warm-up (easy 2 / medium 2 / hard 1), 2 reinforce; held-out synth 4"
    )
    assert lines[2].endswith("version 0: synth 0.250 (n=4)")
    assert lines[3].startswith("  ▶ sft ") and "easy: 2/4 steps, loss 2.000" in lines[3]
    assert all(ln.startswith("  · ") for ln in lines[4 : 1 + len(names)])
    assert lines[-1] == "last held-out accuracy (eval-base): version 0: synth 0.250 (n=4)"

    result = CliRunner().invoke(app, ["status", str(run_dir), "--json"])
    st = json.loads(result.output)
    assert st["done"] == 2 and st["running"] == "sft" and not st["finished"]
    sft = next(s for s in st["stages"] if s["name"] == "sft")
    assert sft["state"] == "started" and sft["progress"]["loss"] == 2.0


def test_status_from_the_folder_alone_without_the_monitor_file(tmp_path):
    run_dir = tmp_path / "run"
    _interrupted_run(run_dir)
    (run_dir / "status.json").unlink()
    st = read_status(run_dir)
    assert st["running"] == "sft" and st["monitor"] is None
    sft = next(s for s in st["stages"] if s["name"] == "sft")
    assert sft["brief"] == "easy: 2/4 steps, loss 2.000"


def test_status_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert result.exit_code != 0
    assert "not an itool-ray run folder" in result.output
