"""The iTool paper's experiments at small scale, as one resumable command.

Rows of the results table (held-out accuracy per set, plus the mean over sets):

* ``base``: the model before training;
* ``mixed SFT``: warm-up SFT on all samples shuffled together (ablation of eq. 1-3);
* ``easy-to-hard SFT``: warm-up SFT easy, then medium, then hard bucket;
* ``iTool iter N``: after N iterations of select -> MCTS -> step-level DPO (N = 1..iterations);
* ``SimPO / IPO / ORPO (iter 1)``: iteration 1 with another preference loss on the *same*
  MCTS pairs as DPO's iteration 1 (the paper's loss comparison).

Each variant is an iTool run of its own under ``run_dir`` that starts from copies of the
stages it shares with the main run (data, baseline evaluation, SFT, hard-sample selection,
MCTS pairs), so every row differs from its neighbour only in what the row names. Every run
resumes from its finished stages when the command is run again.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from itool_ray.config import Section, load_config

# loss -> its strength parameter (DPOSettings.beta); SimPO's scale is ~2 in its paper
LOSS_BETA: dict[str, float] = {"simpo": 2.0, "ipo": 0.1, "orpo": 0.1}


class ExperimentsConfig(Section):
    """``jobs/experiments.py``; ``itool`` holds ``KEY.PATH=VALUE`` overrides of the iTool job
    (``itool_ray.pipeline.ITOolConfig``) shared by every run."""

    run_dir: str = "runs/experiments"
    seed: int = 0
    iterations: int = Field(3, ge=1)
    mixed_sft: bool = True
    losses: list[str] = Field(default_factory=lambda: ["simpo", "ipo", "orpo"])
    itool: list[str] = Field(default_factory=list)
    summarize_only: bool = Field(False, description="only rebuild the table from finished runs")


def itool_config(cfg: ExperimentsConfig, run_dir: Path, *extra: str):
    from itool_ray.pipeline import ITOolConfig

    overrides = [*cfg.itool, f"seed={cfg.seed}", f"run_dir={run_dir}", *extra]
    return load_config(ITOolConfig, None, overrides)


def _seed_from(main: Path, run: Path, stages: tuple[str, ...]) -> None:
    """Copy the finished ``stages`` of the main run into a variant's run folder."""
    for name in stages:
        src, dst = main / name, run / name
        if not (src / "DONE").is_file():
            raise RuntimeError(f"experiments: stage {name} of {main} did not finish")
        if not (dst / "DONE").is_file():
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst)


def mean_accuracy(row: dict[str, Any]) -> float | None:
    accs = [v["accuracy"] for v in row.values() if isinstance(v, dict) and "accuracy" in v]
    return sum(accs) / len(accs) if accs else None


def _done(path: Path) -> dict[str, Any] | None:
    marker = path / "DONE"
    return json.loads(marker.read_text()) if marker.is_file() else None


def collect_rows(cfg: ExperimentsConfig) -> dict[str, dict[str, Any] | None]:
    """The table's rows from the runs' finished evaluation stages (None: not run yet), so a
    partial set of runs still gives a table."""
    root, main = Path(cfg.run_dir), Path(cfg.run_dir) / "itool"
    rows: dict[str, dict[str, Any] | None] = {"base": _done(main / "eval-base")}
    if cfg.mixed_sft:
        rows["mixed SFT"] = _done(root / "mixed-sft" / "eval-sft")
    rows["easy-to-hard SFT"] = _done(main / "eval-sft")
    for it in range(1, cfg.iterations + 1):
        row, mcts = _done(main / f"iter{it}-eval"), _done(main / f"iter{it}-mcts")
        rows[f"iTool iter {it} (DPO)"] = row and {**row, "pairs": (mcts or {}).get("pairs")}
    for loss in cfg.losses:
        rows[f"iter 1 with {loss.upper()}"] = _done(root / f"loss-{loss}" / "iter1-eval")
    return rows


def summarize(cfg: ExperimentsConfig, seconds: dict[str, float] | None = None) -> dict:
    rows = collect_rows(cfg)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "seed": cfg.seed,
        "config": cfg.model_dump(),
        "seconds": seconds or {},
        "rows": rows,
        "mean_accuracy": {k: v and mean_accuracy(v) for k, v in rows.items()},
    }
    root = Path(cfg.run_dir)
    (root / "results.json").write_text(json.dumps(result, indent=1))
    (root / "results.md").write_text(results_markdown(result))
    return result


def run_experiments(cfg: ExperimentsConfig, log: Callable[[str], None] = print) -> dict:
    from itool_ray.pipeline import run_itool

    root = Path(cfg.run_dir)
    root.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def timed(name: str, fn) -> None:
        start = time.perf_counter()
        fn()
        seconds[name] = round(time.perf_counter() - start, 1)
        summarize(cfg, seconds)  # the table so far, after every run

    main = root / "itool"
    timed("itool", lambda: run_itool(
        itool_config(cfg, main, f"train.iterations={cfg.iterations}"), log=log))  # fmt: skip
    if cfg.mixed_sft:
        run = root / "mixed-sft"
        _seed_from(main, run, ("data", "eval-base"))
        timed("mixed-sft", lambda: run_itool(itool_config(
            cfg, run, "train.iterations=0", "train.sft.order=mixed"), log=log))  # fmt: skip
    shared = ("data", "eval-base", "sft", "eval-sft", "iter1-select", "iter1-mcts")
    for loss in cfg.losses:
        run = root / f"loss-{loss}"
        _seed_from(main, run, shared)
        beta = LOSS_BETA.get(loss, 0.1)
        timed(f"loss-{loss}", lambda run=run, loss=loss, beta=beta: run_itool(
            itool_config(cfg, run, "train.iterations=1", f"train.dpo.loss={loss}",
                         f"train.dpo.beta={beta}"), log=log))  # fmt: skip
    return summarize(cfg, seconds)


def results_markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    sets: list[str] = []
    for row in rows.values():
        sets += [k for k, v in (row or {}).items() if isinstance(v, dict) and "accuracy" in v]
    sets = list(dict.fromkeys(sets))
    lines = [
        f"Measured {result['date']}, seed {result['seed']}.",
        "",
        "| model | " + " | ".join(sets) + " | mean | pairs |",
        "|---|" + "---|" * (len(sets) + 2),
    ]
    for name, row in rows.items():
        if row is None:
            lines.append(f"| {name} | " + " | ".join("-" for _ in sets) + " | not run yet | - |")
            continue
        cells = []
        for s in sets:
            v = row.get(s)
            cells.append(f"{v['accuracy']:.3f} ({round(v['accuracy'] * v['n'])}/{v['n']})"
                         if isinstance(v, dict) else "-")  # fmt: skip
        mean = result["mean_accuracy"][name]
        pairs = row.get("pairs")
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {'-' if mean is None else f'{mean:.3f}'} | {'-' if pairs is None else pairs} |")  # fmt: skip
    lines += ["", "Wall time per run (s): "
              + ", ".join(f"{k} {v}" for k, v in result["seconds"].items())]  # fmt: skip
    return "\n".join(lines) + "\n"
