"""The job's console (itool_ray.console): plain lines and the live display, actor output to
files, the trainers' progress file, the driver's TensorBoard scalars; and, end to end on the
tiny model, the main job run as a person runs it: a few dozen lines of the project's on a
non-terminal stdout, the engines' and trainers' output under run_dir/logs, training curves
readable by TensorBoard's own event reader."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from itool_ray.console import (
    LOG_DIR_ENV,
    LineFollower,
    RunMonitor,
    Scalars,
    chunk_size,
    chunked,
    stage_brief,
    stage_scalars,
)

REPO = Path(__file__).resolve().parents[1]
STAGES = ["data", "eval-base", "sft", "iter1-mcts", "iter1-dpo", "iter1-eval"]


def scalars_of(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar under ``folder`` (all event files, recursively), read back with
    TensorBoard's own reader: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for d in sorted({p.parent for p in folder.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(d))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


# ---- the monitor without a terminal: one line per event --------------------------------------


def test_plain_lines_one_per_event_and_progress_at_most_every_interval(tmp_path):
    lines: list[str] = []
    mon = RunMonitor(lines.append, plain_every_s=3600)
    mon.open(tmp_path, STAGES)
    mon.stage("data", "running")
    mon.stage(
        "data",
        "done",
        {
            "buckets": {"easy": 2, "medium": 1},
            "reinforce": 1,
            "heldout": {"synth": 4},
            "seconds": 0.1,
        },
    )
    mon.stage("eval-base", "running")
    for i in range(5):
        mon.progress("eval-base", i, 4, unit="records")
    assert not any(line.startswith("[eval-base]") for line in lines), "throttled"
    mon.plain_every_s = 0
    mon.progress("eval-base", 4, 4, unit="records")
    mon.stage(
        "eval-base", "done", {"version": 0, "synth": {"accuracy": 0.25, "n": 4}, "seconds": 2.0}
    )
    mon.close()
    assert lines == [
        "  data: 3 warm-up (easy 2 / medium 1), 1 reinforce; held-out synth 4",
        "[eval-base] 4/4 records",
        "  eval-base: version 0: synth 0.250 (n=4)",
    ]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["finished"] and status["stages"]["eval-base"] == "done"
    assert status["stages"]["sft"] == "todo"


def test_rich_console_without_a_terminal_prints_plain_lines(tmp_path):
    from rich.console import Console

    out = io.StringIO()
    mon = RunMonitor(console=Console(file=out, width=200), plain_every_s=0)
    assert not mon.live_mode
    mon.open(tmp_path, STAGES)
    mon.log("[stage] sft: running")
    mon.stage("sft", "running")
    mon.trainer_record("sft", {"run": "easy", "event": "begin", "step": 0, "max_steps": 4})
    mon.trainer_record(
        "sft", {"run": "easy", "step": 1, "max_steps": 4, "loss": 2.5, "learning_rate": 1e-3}
    )
    mon.close()
    text = out.getvalue()
    assert "\x1b[" not in text, "no cursor movement or colour codes without a terminal"
    assert text.splitlines() == [
        "[stage] sft: running",
        "[sft] easy: 0/4 steps",
        "[sft] easy: 1/4 steps, loss 2.500, lr 1.00e-03",
    ]


def test_live_display_shows_stage_list_and_the_running_stage_bar(tmp_path):
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=150, force_terminal=True, color_system=None)
    mon = RunMonitor(console=console)
    assert mon.live_mode
    mon.open(tmp_path, STAGES)
    mon.stage(
        "data", "reused", {"buckets": {"easy": 1}, "reinforce": 1, "heldout": {}, "seconds": 0.1}
    )
    mon.stage("iter1-mcts", "running")
    mon.mcts_record(
        "iter1-mcts",
        {
            "trees_finished": 3,
            "trees_total": 8,
            "pairs": 12,
            "expansions": 40,
            "t": 4.0,
            "generated_tokens": 800,
        },
    )
    mon.log("[iter1] a line of the project's")
    rendered = io.StringIO()
    Console(file=rendered, width=150, color_system=None).print(mon._render())
    screen = rendered.getvalue()
    mon.close()
    assert re.search(r"✓ data .*done earlier", screen)
    assert re.search(r"▶ iter1-mcts", screen) and re.search(r"· iter1-dpo", screen)
    assert "3/8 trees, pairs 12, expansions 40, exp/s 10.0, tok/s 200" in screen
    assert "[iter1] a line of the project's" in out.getvalue()


def test_briefs_and_scalars_of_stage_summaries():
    dpo = {
        "steps": 2,
        "first_loss": 0.693,
        "last_loss": 0.6,
        "first_margin": 0.0,
        "last_margin": 0.1,
        "trained_pairs": {"n": 20, "accuracy": 0.9, "mean_margin": 0.2},
        "heldout_pairs": {"n": 5, "accuracy": 0.4, "mean_margin": -0.1},
        "seconds": 3,
    }
    assert stage_brief("iter2-dpo", dpo) == (
        "2 steps; loss 0.693 -> 0.600; trained pairs 0.900 (n=20); held-out pairs 0.400 (n=5)"
    )
    values, step = stage_scalars("iter2-dpo", dpo)
    assert step == 2 and values["dpo/heldout_pairs/accuracy"] == 0.4
    assert values["dpo/trained_pairs/mean_margin"] == 0.2
    assert stage_scalars("iter1-dpo", {"skipped": "no pairs"}) == ({}, 1)
    values, step = stage_scalars(
        "iter1-eval", {"version": 2, "bfcl/simple": {"accuracy": 0.5, "n": 4, "parse_errors": 1}}
    )
    assert step == 2
    assert values == {
        "heldout/bfcl/simple/accuracy": 0.5,
        "heldout/bfcl/simple/parse_error_rate": 0.25,
    }
    mcts = {
        "trees_finished": 4,
        "pairs": 10,
        "expansions": 20,
        "failures": 0,
        "seconds": 5.0,
        "pairs_mean_q_gap": None,
    }
    values, step = stage_scalars("iter3-mcts", mcts)
    assert step == 3 and values["mcts/pairs_per_s"] == 2.0 and "mcts/pairs_mean_q_gap" not in values
    assert stage_brief(
        "iter1-select", {"kept": 2, "candidates": 5, "threshold": 3.25, "perplexity_on": "trainer"}
    ) == ("2 of 5 kept (perplexity >= 3.250, scored on trainer)")


def test_chunks_report_records_done():
    seen: list[tuple[int, int]] = []
    fn = chunked(lambda part: [x * 2 for x in part], lambda d, t: seen.append((d, t)), 3)
    assert fn(list(range(7))) == [0, 2, 4, 6, 8, 10, 12]
    assert seen == [(0, 7), (3, 7), (6, 7), (7, 7)]
    assert chunk_size(16, 2) == 64 and chunk_size(10_000, 2) == 500


def test_a_multi_turn_evaluation_shows_its_round_and_the_entries_done(tmp_path):
    """Each lockstep round of a multi-turn evaluation is a part of its own: the bar names the
    round and the entries finished, not only the steps of that round."""
    from itool_ray.pipeline import _rounds

    lines: list[str] = []
    mon = RunMonitor(lines.append, plain_every_s=0)
    mon.open(tmp_path, STAGES)
    mon.stage("eval-base", "running")
    chat = mon.counting("eval-base", "steps", lambda ps: ["x"] * len(ps), part=_rounds(5))
    chat(list(range(5)))
    chat(list(range(2)))  # 3 of the 5 entries ended after round 1
    mon.close()
    got = [line for line in lines if line.startswith("[eval-base]")]
    assert got[-1].startswith("[eval-base] round 2, 3/5 entries done: 2/2 steps")
    assert any(line.startswith("[eval-base] round 1, 0/5 entries done: 5/5 steps") for line in got)


def test_driver_scalars_read_back_with_tensorboard(tmp_path):
    s = Scalars(tmp_path / "tb")
    s.add({"heldout/synth/accuracy": 0.25}, 0)
    s.add({"heldout/synth/accuracy": 0.5}, 1)
    s.close()
    assert scalars_of(tmp_path / "tb") == {"heldout/synth/accuracy": [(0, 0.25), (1, 0.5)]}


# ---- trainer progress across the actor boundary -------------------------------------------------


def test_progress_file_records_steps_and_the_follower_reads_whole_lines(tmp_path):
    from itool_ray.train._common import ProgressFile

    path = tmp_path / "sft" / "progress.jsonl"
    cb = ProgressFile(path)
    args = SimpleNamespace(output_dir=str(tmp_path / "sft" / "runs" / "medium"))
    state = SimpleNamespace(global_step=0, max_steps=3, epoch=0.0)
    follower = LineFollower(path)
    assert follower.read() == []  # not there yet
    cb.on_train_begin(args, state, None)
    state.global_step, state.epoch = 1, 0.5
    cb.on_log(args, state, None, logs={"loss": 1.5, "learning_rate": 1e-3, "note": "x"})
    cb.on_log(args, state, None, logs={"train_runtime": 3.0, "train_loss": 1.5})  # summary row
    with path.open("a") as f:
        f.write('{"step": 9')  # a line still being written
    records = follower.read()
    assert [r.get("event") for r in records] == ["begin", None]
    assert records[1] | {"time": 0} == {
        "run": "medium",
        "time": 0,
        "step": 1,
        "max_steps": 3,
        "epoch": 0.5,
        "loss": 1.5,
        "learning_rate": 1e-3,
    }
    with path.open("a") as f:
        f.write(', "max_steps": 9}\n')
    assert follower.read() == [{"step": 9, "max_steps": 9}]


def test_training_kwargs_report_to_tensorboard():
    from itool_ray.train._common import pick_device, training_kwargs
    from itool_ray.train.config import SFTSettings

    assert "tensorboard" in training_kwargs(SFTSettings(), pick_device(), "/tmp/x")["report_to"]


# ---- output to files ---------------------------------------------------------------------------


def test_log_to_file_takes_the_process_and_its_children(tmp_path):
    code = textwrap.dedent("""
        import logging, subprocess, sys
        from itool_ray.console import log_to_file
        print(log_to_file("itool-replica-0"))
        print("to stdout"); print("to stderr", file=sys.stderr)
        logging.basicConfig(); logging.getLogger("vllm").warning("engine notice")
        subprocess.run([sys.executable, "-c", "import os; os.write(2, b'child fd 2\\\\n')"])
    """)
    env = {**os.environ, LOG_DIR_ENV: str(tmp_path / "logs")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    text = (tmp_path / "logs" / "itool-replica-0.log").read_text()
    for piece in ("itool-replica-0 (pid", "to stdout", "to stderr", "engine notice", "child fd 2"):
        assert piece in text
    env.pop(LOG_DIR_ENV)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    assert proc.stdout.splitlines()[:2] == ["None", "to stdout"]  # --verbose: left alone


def test_driver_logging_and_native_stderr_go_to_driver_log(tmp_path):
    code = textwrap.dedent(f"""
        import logging, os, sys
        from itool_ray.console import RunMonitor
        logging.basicConfig(level=logging.INFO)
        mon = RunMonitor(logs=True)
        mon.open({str(tmp_path)!r}, ["data"])
        logging.getLogger("ray").warning("ray notice")
        logging.getLogger("transformers").warning("library notice")
        logging.getLogger("itool_ray.rollout").warning("replica down")
        os.write(2, b"core_worker.cc: native line\\n")
        mon.log("[stage] data: running")
        mon.close()
        print("after", file=sys.stderr)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "WARNING itool_ray.rollout: replica down",
        "[stage] data: running",
    ]
    assert proc.stderr == "after\n"
    log = (tmp_path / "logs" / "driver.log").read_text()
    for piece in ("ray notice", "library notice", "replica down", "native line"):
        assert piece in log


def test_actors_get_the_driver_only_quieting_back_empty(tmp_path, monkeypatch):
    import itool_ray.console as console

    monkeypatch.setattr(console, "_quieted", set())
    for key in console._QUIET_ENV:
        monkeypatch.setenv(key, "x")
        monkeypatch.delenv(key)
    console.quiet_libraries()
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    mon = RunMonitor(lambda line: None, logs=True)
    mon.run_dir = tmp_path
    assert mon.actor_env() == {
        LOG_DIR_ENV: str((tmp_path / "logs").resolve()),
        "HF_HUB_DISABLE_PROGRESS_BARS": "",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "",
    }
    assert not mon.log_to_driver
    assert RunMonitor(lambda line: None).actor_env() == {}


def test_verbose_flag_of_the_main_job():
    proc = subprocess.run(
        [sys.executable, "jobs/itool.py", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0 and "--verbose" in proc.stdout


# ---- the main job on the tiny model, as a person runs it -----------------------------------------

TINY_JOB = [
    "model=tiny",
    "data.num_samples=12",
    "data.reinforce_fraction=0.3",
    "data.heldout={synth: 4}",
    "replicas.count=1",
    "engine.dtype=float32",
    "engine.max_lora_rank=8",
    "engine.max_logprobs=4096",
    "engine.cpu_kvcache_gb=1",
    "mcts={k: 3, simulations: 6, max_inflight: 2, max_step_tokens: 12, max_depth: 3, "
    "max_tokens: 256}",
    "train.alpha=1.0",
    "train.lora={r: 8, alpha: 16}",
    "train.sft={max_steps: 2, batch_size: 2, max_length: 2048, lr: 0.01}",
    "train.dpo={max_steps: 2, batch_size: 2, max_length: 2048, lr: 0.01}",
    "eval.max_tokens=16",
]
PROJECT_LINE = re.compile(
    r"^(\[stage\] [\w-]+: |  [\w-]+: |\[(iter\d+|job)\] |\[[\w-]+\] ([\w-]+: )?\d+(/\d+)? |"
    r"held-out accuracy per stage \(|[┏┃┡│└])"
)
ENGINE_NOISE = (
    "INFO",
    "WARNING",
    "PolicyReplica",
    "Trainer pid",
    "EngineCore",
    "vllm",
    "vLLM",
    "Triton",
    "core_worker",
    "{'loss'",
    "it/s]",
    "Ray deduplicates",
)


@pytest.mark.vllm
def test_main_job_prints_the_run_and_keeps_the_engines_output_in_logs(tmp_path):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"TOKENIZERS_PARALLELISM": "false", "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run(
        [sys.executable, "jobs/itool.py", *TINY_JOB, f"run_dir={run_dir}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert 20 <= len(lines) <= 60, proc.stdout
    assert proc.stderr.strip() == "", proc.stderr[-3000:]
    strangers = [ln for ln in lines if not PROJECT_LINE.match(ln)]
    assert not strangers, strangers
    assert not [ln for ln in lines if any(n in ln for n in ENGINE_NOISE)], proc.stdout
    for stage in (
        "data",
        "eval-base",
        "sft",
        "eval-sft",
        "iter1-select",
        "iter1-mcts",
        "iter1-dpo",
        "iter1-eval",
    ):
        assert f"[stage] {stage}: running" in lines and any(
            ln.startswith(f"[stage] {stage}: finished in ") for ln in lines
        )

    # the engines' and trainers' output: one file per actor
    logs = run_dir / "logs"
    names = sorted(p.name for p in logs.iterdir())
    assert {"driver.log", "itool-replica-0.log", "trainer.log", "tree-manager.log"} <= set(names)
    replica = (logs / "itool-replica-0.log").read_text()
    # vLLM's own output (its engine core's log lines, or its weight loader's progress, which
    # the engine's worker prints whatever its log level): never on the console, here
    vllm_markers = ("EngineCore", "Loading safetensors checkpoint shards", "vllm")
    assert any(m in replica for m in vllm_markers), replica[:500]
    assert not any(m in proc.stdout + proc.stderr for m in vllm_markers[:2])
    trainer = (logs / "trainer.log").read_text()
    assert "train_runtime" in trainer or "'loss'" in trainer
    assert "Started a local Ray instance" in (logs / "driver.log").read_text()

    # training curves: TRL's under the stage folders, the driver's under run_dir/tensorboard
    sft = scalars_of(run_dir / "sft")
    assert len(sft["train/loss"]) == 6 and "train/learning_rate" in sft  # 3 buckets x 2 steps
    dpo = scalars_of(run_dir / "iter1-dpo")
    for tag in ("train/loss", "train/rewards/margins", "train/rewards/chosen"):
        assert len(dpo[tag]) == 2, tag
    driver = scalars_of(run_dir / "tensorboard")
    assert [step for step, _ in driver["heldout/synth/accuracy"]] == [0, 1, 2]
    assert driver["mcts/pairs"][0][1] > 0
    trained = json.loads((run_dir / "iter1-dpo" / "DONE").read_text())["trained_pairs"]
    assert driver["dpo/trained_pairs/accuracy"] == [(1, pytest.approx(trained["accuracy"]))]
    assert "iter1-mcts/expansions_per_s" in driver

    # the trainer's steps crossed the actor boundary through the stage folder
    steps = [json.loads(x) for x in (run_dir / "sft" / "progress.jsonl").read_text().splitlines()]
    assert [r["run"] for r in steps if r.get("event") == "begin"] == ["easy", "medium", "hard"]

    # itool-ray status on the finished run lists its stages
    proc = subprocess.run(
        [sys.executable, "-m", "itool_ray.cli", "status", str(run_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == f"{run_dir}: 8/8 stages done, finished"
    assert [ln.split()[1] for ln in out[1:9]] == [
        "data",
        "eval-base",
        "sft",
        "eval-sft",
        "iter1-select",
        "iter1-mcts",
        "iter1-dpo",
        "iter1-eval",
    ]
    assert all(ln.startswith("  ✓ ") for ln in out[1:9])
