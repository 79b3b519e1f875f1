"""What a person running the job sees, and where the engines' output goes.

* :class:`RunMonitor`: the job's console. On a terminal one live display (rich): the stage
  list (done / running / to do, each stage's time) and, inside the running stage, a progress
  bar with its own units, rate and ETA: records decoded (evaluation), optimizer steps with
  the loss (SFT, DPO), trees / expansions / pairs / tokens per second (MCTS), samples scored
  (select). Without a terminal (CI, ``ray job submit`` logs) one plain line per event
  instead: stage started, stage finished with a one-line summary, and a progress line at
  most every ``plain_every_s`` seconds. It also writes the driver's own scalars (held-out
  accuracy, MCTS rates, post-training pair accuracy) to TensorBoard under
  ``run_dir/tensorboard/`` and its view of the run to ``run_dir/status.json``.
* :func:`log_to_file`: called first thing in every actor (replicas, trainer, tree manager):
  when ``$ITOOL_LOG_DIR`` is set (the job sets it unless ``--verbose``), the actor's stdout
  and stderr (and so its children's: vLLM's engine core and workers) go to
  ``$ITOOL_LOG_DIR/<name>.log``, not to the console.
* :func:`wait_reporting`: wait for a Ray call while following the progress lines a trainer
  actor appends to its stage folder (``itool_ray.train._common.ProgressFile``).

No Ray, torch or vLLM import at module level: the pieces that need them import them inside.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_DIR_ENV = "ITOOL_LOG_DIR"
"""Environment variable naming the folder each actor writes its output to (``run_dir/logs``)."""
PROGRESS_FILE = "progress.jsonl"
"""Progress records of a stage, one JSON object a line, in the stage folder."""
STATUS_FILE = "status.json"
"""The monitor's view of a running job (stages, progress, time), in the run folder."""

_MARK = {"todo": "·", "running": "▶", "done": "✓", "reused": "✓", "failed": "✗"}
_STYLE = {
    "todo": "dim",
    "running": "bold cyan",
    "done": "green",
    "reused": "green",
    "failed": "bold red",
}

log = logging.getLogger(__name__)


# ---- actor output to files ---------------------------------------------------------------------


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "actor"


def log_to_file(name: str, folder: str | os.PathLike[str] | None = None) -> Path | None:
    """Send this process's output to ``<folder>/<name>.log`` (appended; ``folder`` default:
    ``$ITOOL_LOG_DIR``); return the file, or None when there is no folder (output left where
    it was: ``--verbose``).

    File descriptors 1 and 2 are redirected, so whatever this process and the processes it
    starts afterwards print (vLLM's engine core and workers, C++ warnings, progress bars,
    every logging handler writing to stdout or stderr) lands in the file.
    """
    folder = folder or os.environ.get(LOG_DIR_ENV)
    if not folder:
        return None
    path = Path(folder) / f"{_file_name(name)}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"---- {name} (pid {os.getpid()}) started {stamp}", flush=True)
    return path


# ---- following a trainer's progress file -------------------------------------------------------


class LineFollower:
    """Reads the complete JSON lines appended to a file since the last call."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written waits for its newline
        self.offset += end
        out = []
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out


def last_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last complete record of a progress file, or None."""
    records = LineFollower(path).read()
    return records[-1] if records else None


def wait_reporting(
    ref: Any,
    progress_file: str | os.PathLike[str],
    on_record: Callable[[dict[str, Any]], None],
    *,
    poll_s: float = 0.5,
) -> Any:
    """``ray.get(ref)``, calling ``on_record`` with every progress record appended to
    ``progress_file`` meanwhile (the trainer actor writes them; the file may not exist yet)."""
    import ray

    follower = LineFollower(progress_file)
    while True:
        ready, _ = ray.wait([ref], timeout=poll_s)
        for record in follower.read():
            on_record(record)
        if ready:
            return ray.get(ref)


def chunked(
    fn: Callable[[list[Any]], Sequence[Any]],
    on_done: Callable[[int, int], None],
    chunk: int,
) -> Callable[[list[Any]], list[Any]]:
    """``fn`` over its items ``chunk`` at a time, calling ``on_done(done, total)`` before
    the first and after each call."""

    def run(items: list[Any]) -> list[Any]:
        items = list(items)
        out: list[Any] = []
        on_done(0, len(items))
        step = max(1, chunk)
        for i in range(0, len(items), step):
            out.extend(fn(items[i : i + step]))
            on_done(len(out), len(items))
        return out

    return run


def chunk_size(n: int, workers: int, *, per_worker: int = 32, parts: int = 20) -> int:
    """Items per call when ``n`` items are split for progress: at least ``per_worker`` per
    worker (engine batches stay large), at most about ``parts`` calls."""
    return max(per_worker * max(workers, 1), math.ceil(n / parts), 1)


# ---- one-line summaries and scalars of finished stages -----------------------------------------


def _num(value: Any, digits: int = 3) -> str:
    if value is None or isinstance(value, bool | int | str):
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e6 and digits == 0:
        return str(int(v))
    return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"


def _iteration(name: str) -> int | None:
    m = re.match(r"iter(\d+)-", name)
    return int(m.group(1)) if m else None


def _kind(name: str) -> str:
    """data, eval, sft, select, mcts, dpo or export (``eval-base``, ``iter2-mcts``...)."""
    if name.startswith("eval"):
        return "eval"
    return name.rsplit("-", 1)[-1] if _iteration(name) is not None else name


def _accuracies(summary: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {k: v for k, v in summary.items() if isinstance(v, Mapping) and "accuracy" in v}


def stage_brief(name: str, summary: Mapping[str, Any]) -> str:
    """What a finished stage produced, in one line (from its ``DONE`` summary)."""
    kind = _kind(name)
    if "skipped" in summary:
        return f"skipped: {summary['skipped']}"
    if kind == "data":
        sizes = summary.get("buckets") or {}
        parts = " / ".join(f"{k} {v}" for k, v in sizes.items())
        held = ", ".join(f"{k} {v}" for k, v in (summary.get("heldout") or {}).items())
        return (
            f"{sum(sizes.values())} warm-up ({parts}), {summary.get('reinforce', 0)} "
            f"reinforce; held-out {held or 'none'}"
        )
    if kind == "eval":
        sets = ", ".join(
            f"{k} {_num(v['accuracy'])} (n={v.get('n', '?')})"
            for k, v in _accuracies(summary).items()
        )
        return f"version {summary.get('version', '?')}: {sets or 'no held-out records'}"
    if kind == "sft":
        runs = summary.get("stages") or []
        parts = ", ".join(
            f"{r.get('name')} {_num(r.get('first_loss'))} -> {_num(r.get('last_loss'))}"
            for r in runs
        )
        return f"{summary.get('steps', 0)} steps; loss {parts or '-'}"
    if kind == "select":
        return (
            f"{summary.get('kept')} of {summary.get('candidates')} kept (perplexity >= "
            f"{_num(summary.get('threshold'))}, scored on {summary.get('perplexity_on')})"
        )
    if kind == "mcts":
        return (
            f"{summary.get('trees_finished', 0)} trees, {summary.get('pairs', 0)} pairs, "
            f"{summary.get('expansions', 0)} expansions, {summary.get('failures', 0)} "
            "failures"
        )
    if kind == "dpo":
        text = (
            f"{summary.get('steps', 0)} steps; loss {_num(summary.get('first_loss'))} -> "
            f"{_num(summary.get('last_loss'))}"
        )
        for key, label in (("trained_pairs", "trained"), ("heldout_pairs", "held-out")):
            score = summary.get(key)
            if isinstance(score, Mapping) and score.get("n"):
                text += f"; {label} pairs {_num(score.get('accuracy'))} (n={score['n']})"
        return text
    shown = {
        k: v for k, v in summary.items() if isinstance(v, int | float | str) and k != "seconds"
    }
    return ", ".join(f"{k}={v}" for k, v in list(shown.items())[:4])


def stage_scalars(name: str, summary: Mapping[str, Any]) -> tuple[dict[str, float], int]:
    """The driver's TensorBoard scalars of a finished stage, and their step: the policy
    version for evaluations, the iteration for select / MCTS / DPO, 0 for SFT."""
    kind = _kind(name)
    step = _iteration(name) or 0
    values: dict[str, Any] = {}
    if kind == "eval":
        step = int(summary.get("version", 0))
        for k, v in _accuracies(summary).items():
            values[f"heldout/{k}/accuracy"] = v["accuracy"]
            if v.get("n"):
                values[f"heldout/{k}/parse_error_rate"] = (v.get("parse_errors") or 0) / v["n"]
    elif kind == "select":
        values = {"select/kept": summary.get("kept"), "select/threshold": summary.get("threshold")}
    elif kind == "mcts":
        for k in (
            "trees_finished",
            "pairs",
            "expansions",
            "failures",
            "prefix_cache_hit_rate",
            "pairs_mean_q_gap",
        ):
            values[f"mcts/{k}"] = summary.get(k)
        seconds = summary.get("seconds") or 0
        if seconds:
            for k in ("trees_finished", "expansions", "pairs"):
                values[f"mcts/{k.split('_')[0]}_per_s"] = (summary.get(k) or 0) / seconds
    elif kind == "dpo" and "skipped" not in summary:
        for k in ("first_loss", "last_loss", "first_margin", "last_margin"):
            values[f"dpo/{k}"] = summary.get(k)
        for key in ("trained_pairs", "heldout_pairs"):
            score = summary.get(key)
            if isinstance(score, Mapping):
                values[f"dpo/{key}/accuracy"] = score.get("accuracy")
                values[f"dpo/{key}/mean_margin"] = score.get("mean_margin")
    elif kind == "sft":
        for run in summary.get("stages") or []:
            values[f"sft/{run.get('name')}/last_loss"] = run.get("last_loss")
    clean: dict[str, float] = {}
    for k, v in values.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            clean[k] = f
    return clean, step


# ---- the driver's TensorBoard writer -----------------------------------------------------------


class Scalars:
    """One TensorBoard writer for the driver's scalars under ``folder`` (made on first use);
    a no-op, with one warning, where TensorBoard is not installed."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._writer: Any = None
        self._off = False

    def _get(self) -> Any:
        if self._writer is None and not self._off:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # curves off, the run goes on
                log.warning("TensorBoard scalars off: %s", e)
                self._off = True
                return None
            self._writer = SummaryWriter(log_dir=str(self.folder), flush_secs=10)
        return self._writer

    def add(self, values: Mapping[str, float], step: int) -> None:
        writer = self._get() if values else None
        if writer is None:
            return
        for tag, value in values.items():
            writer.add_scalar(tag, float(value), int(step))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ---- the monitor -------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """``4.2 s``, ``38 s``, ``3m05s``, ``2h10m``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


@dataclass
class Bar:
    """The progress of the running stage: ``completed`` of ``total`` ``unit`` (total None:
    unknown); ``run`` names a part (an SFT bucket), ``fields`` figures shown beside."""

    unit: str
    completed: float = 0.0
    total: float | None = None
    run: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    base: float = 0.0  # completed when the rate's clock started

    @property
    def rate(self) -> float | None:
        dt = time.monotonic() - self.started
        done = self.completed - self.base
        return done / dt if dt > 0.5 and done > 0 else None

    @property
    def eta(self) -> float | None:
        rate = self.rate
        if self.total is None or not rate:
            return None
        return max(self.total - self.completed, 0) / rate

    def text(self) -> str:
        total = f"/{_num(self.total, 0)}" if self.total is not None else ""
        head = f"{self.run}: " if self.run else ""
        extra = [
            f"{k} {v if isinstance(v, str) else _num(v)}"
            for k, v in self.fields.items()
            if v is not None
        ]
        if self.rate:
            extra.append(f"{self.rate:.2f} {self.unit}/s")
        if self.eta is not None:
            extra.append(f"ETA {duration(self.eta)}")
        return f"{head}{_num(self.completed, 0)}{total} {self.unit}" + "".join(
            f", {e}" for e in extra
        )


@dataclass
class _Stage:
    name: str
    state: str = "todo"
    started: float | None = None
    seconds: float | None = None
    brief: str = ""


class RunMonitor:
    """The job's console, logs folder and driver scalars (module docstring).

    ``log``: where lines go when given (tests, the experiments job: plain lines, nothing
    else); otherwise a rich ``console`` (default: stdout), live when it is a terminal
    (``live`` forces either way). ``logs``: the engines', Ray workers' and trainers' output
    to ``run_dir/logs/`` (one file per actor) and the driver's logging to
    ``run_dir/logs/driver.log`` (off with ``--verbose``: everything on the console as Ray
    forwards it). ``tensorboard``: the driver's scalars under ``run_dir/tensorboard/``.
    """

    def __init__(
        self,
        log: Callable[[str], None] | None = None,
        *,
        console: Any = None,
        live: bool | None = None,
        logs: bool = False,
        tensorboard: bool = True,
        plain_every_s: float = 30.0,
    ) -> None:
        self._log = log
        self.console = console
        if log is None and console is None:
            from rich.console import Console

            self.console = Console(highlight=False)
        terminal = bool(self.console is not None and self.console.is_terminal)
        self.live_mode = log is None and (terminal if live is None else live)
        self.logs = logs
        self.tensorboard = tensorboard
        self.plain_every_s = plain_every_s
        self.run_dir: Path | None = None
        self.stages: dict[str, _Stage] = {}
        self.current: str | None = None
        self.bar: Bar | None = None
        self.scalars: Scalars | None = None
        self._live: Any = None
        self._last_plain = 0.0
        self._last_status = 0.0
        self._handlers: list[logging.Handler] = []
        self._removed: list[tuple[logging.Logger, logging.Handler, bool]] = []
        self._saved_stderr: tuple[int, Any] | None = None
        self._started = time.monotonic()

    # ---- set-up ------------------------------------------------------------------------
    @property
    def logs_dir(self) -> Path | None:
        return self.run_dir / "logs" if self.logs and self.run_dir is not None else None

    @property
    def log_to_driver(self) -> bool:
        """Whether Ray forwards the workers' output to the driver (``ray.init``)."""
        return not self.logs

    def actor_env(self) -> dict[str, str]:
        """Environment variables for an actor's ``runtime_env``: where it logs."""
        folder = self.logs_dir
        if folder is None:
            return {}
        return {LOG_DIR_ENV: str(folder.resolve()), **dict.fromkeys(sorted(_quieted), "")}

    def open(self, run_dir: str | os.PathLike[str], stages: Sequence[str]) -> None:
        """Start following the run in ``run_dir`` (after its runner claimed the folder)."""
        self.run_dir = Path(run_dir)
        self.stages = {n: _Stage(n) for n in stages}
        if self.tensorboard and self.scalars is None:
            self.scalars = Scalars(self.run_dir / "tensorboard")
        if self.logs_dir is not None and self._saved_stderr is None:
            self._route_driver_output(self.logs_dir)
        if self.live_mode and self._live is None:
            from rich.live import Live

            self._live = Live(
                get_renderable=self._render,
                console=self.console,
                refresh_per_second=4,
                redirect_stdout=True,
                redirect_stderr=False,
            )
            self._live.start()
        self._write_status(force=True)

    def _route_driver_output(self, folder: Path) -> None:
        """The driver's logging (Ray's included) to ``driver.log``, and what its native
        parts (Ray's core worker) write to file descriptor 2; Python's ``sys.stderr`` stays
        on the console (tracebacks). On the console only the project's own warnings
        (``itool_ray.*``), as lines of the display."""
        import ray  # noqa: F401  (Ray sets up its logging at import: rerouted below)

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "driver.log"
        sys.stderr.flush()
        console_fd = os.dup(2)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        self._saved_stderr = (console_fd, sys.stderr)
        sys.stderr = open(console_fd, "w", buffering=1, closefd=False)  # noqa: SIM115
        root = logging.getLogger()
        for lg in (root, logging.getLogger("ray")):
            for h in list(lg.handlers):
                if not isinstance(h, logging.FileHandler):
                    lg.removeHandler(h)
                    self._removed.append((lg, h, lg.propagate))
        logging.getLogger("ray").propagate = True
        to_file = logging.FileHandler(path)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        to_console = _MonitorHandler(self)
        to_console.setLevel(logging.WARNING)
        to_console.addFilter(lambda r: r.name.startswith("itool_ray"))
        for h in (to_file, to_console):
            root.addHandler(h)
            self._handlers.append(h)
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        logging.captureWarnings(True)

    def _restore_driver_output(self) -> None:
        root = logging.getLogger()
        for h in self._handlers:
            root.removeHandler(h)
            h.close()
        self._handlers.clear()
        for lg, h, propagate in self._removed:
            lg.addHandler(h)
            lg.propagate = propagate
        self._removed.clear()
        if self._saved_stderr is not None:
            console_fd, old = self._saved_stderr
            sys.stderr.flush()
            os.dup2(console_fd, 2)
            os.close(console_fd)
            sys.stderr = old
            self._saved_stderr = None
            logging.captureWarnings(False)

    def close(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
        if self.scalars is not None:
            self.scalars.close()
        self._write_status(force=True, finished=True)
        self._restore_driver_output()

    def __enter__(self) -> RunMonitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- lines ---------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        """A line of the project's: printed (above the live display), never redrawn."""
        if self._log is not None:
            self._log(msg)
        elif self._live is not None:
            self._live.console.print(msg, markup=False, highlight=False)
        else:
            self.console.print(msg, markup=False, highlight=False, soft_wrap=True)

    __call__ = log

    # ---- stage events (StageRunner's on_event) -------------------------------------------
    def stage(self, name: str, state: str, summary: Mapping[str, Any] | None = None) -> None:
        """Stage ``name`` moved to ``state``: running, resuming, reused, done or failed."""
        st = self.stages.setdefault(name, _Stage(name))
        now = time.monotonic()
        if state in ("running", "resuming"):
            st.state, st.started, st.seconds = "running", now, None
            self.current, self.bar = name, None
            self._last_plain = now
        else:
            st.state = state if state in _MARK else "done"
            if summary is not None and summary.get("seconds") is not None:
                st.seconds = float(summary["seconds"])
            elif st.started is not None:
                st.seconds = now - st.started
            if summary is not None and state != "failed":
                try:
                    st.brief = stage_brief(name, summary)
                except Exception as e:  # a summary of another shape: no brief, no failure
                    st.brief = f"({type(e).__name__} reading its summary)"
                if state == "done":
                    if st.brief:
                        self.log(f"  {name}: {st.brief}")
                    self._stage_scalars(name, summary)
            if self.current == name:
                self.current, self.bar = None, None
        self._write_status(force=True)

    def _stage_scalars(self, name: str, summary: Mapping[str, Any]) -> None:
        if self.scalars is None:
            return
        values, step = stage_scalars(name, summary)
        if values:
            self.scalars.add(values, step)
            self.scalars.flush()

    # ---- progress inside the running stage ----------------------------------------------
    def progress(
        self,
        stage: str,
        completed: float,
        total: float | None = None,
        *,
        unit: str,
        run: str | None = None,
        **fields: Any,
    ) -> None:
        """Stage ``stage`` reached ``completed`` of ``total`` ``unit``; ``run`` names the
        part being worked on (a new part restarts the rate), ``fields`` figures beside."""
        bar = self.bar if self.current == stage else None
        if bar is None or bar.run != run or bar.unit != unit or completed < bar.completed:
            bar = Bar(unit, base=completed, run=run)
            self.current, self.bar = stage, bar
        bar.completed, bar.total, bar.fields = completed, total, dict(fields)
        now = time.monotonic()
        if self._live is None and now - self._last_plain >= self.plain_every_s:
            self._last_plain = now
            self.log(f"[{stage}] {bar.text()}")
        self._write_status()

    def trainer_record(self, stage: str, record: Mapping[str, Any]) -> None:
        """A record of a trainer's progress file (``ProgressFile``): optimizer steps."""
        if record.get("step") is None or record.get("event") == "end":
            return
        fields: dict[str, Any] = {"loss": record.get("loss")}
        for key, name in (("rewards/margins", "margin"), ("rewards/accuracies", "accuracy")):
            if key in record:
                fields[name] = record[key]
        if isinstance(record.get("learning_rate"), int | float):
            fields["lr"] = f"{record['learning_rate']:.2e}"
        self.progress(
            stage,
            record["step"],
            record.get("max_steps"),
            unit="steps",
            run=record.get("run"),
            **fields,
        )

    def follow(self, ref: Any, stage_dir: str | os.PathLike[str]) -> Any:
        """``ray.get(ref)`` of a trainer call, showing the optimizer steps it appends to
        ``stage_dir/progress.jsonl`` meanwhile."""
        folder = Path(stage_dir)
        return wait_reporting(
            ref, folder / PROGRESS_FILE, lambda r: self.trainer_record(folder.name, r)
        )

    def counting(
        self,
        stage: str,
        unit: str,
        fn: Callable[[list[Any]], Sequence[Any]],
        workers: int = 1,
        *,
        part: Callable[[list[Any]], str] | None = None,
    ) -> Callable[[list[Any]], list[Any]]:
        """``fn`` (items -> one result each) called on chunks of its items
        (:func:`chunk_size`), the items done shown as the stage's progress; ``part(items)``
        names each call's part (its own bar, e.g. a multi-turn evaluation's lockstep round)."""

        def run(items: list[Any]) -> list[Any]:
            items = list(items)
            name = part(items) if part is not None else None

            def report(done: int, total: int) -> None:
                self.progress(stage, done, total, unit=unit, run=name)

            return chunked(fn, report, chunk_size(len(items), workers))(items)

        return run

    def mcts_record(self, stage: str, record: Mapping[str, Any]) -> None:
        """A tree-manager progress record (``TreeManager.progress``, plus ``t`` and the
        replicas' ``generated_tokens`` where known)."""
        t = record.get("t") or record.get("seconds") or 0
        fields: dict[str, Any] = {
            "pairs": record.get("pairs"),
            "expansions": record.get("expansions"),
        }
        rates: dict[str, float] = {}
        if t:
            rates["expansions_per_s"] = (record.get("expansions") or 0) / t
            fields["exp/s"] = f"{rates['expansions_per_s']:.1f}"
            if isinstance(record.get("generated_tokens"), int | float):
                rates["tokens_per_s"] = record["generated_tokens"] / t
                if record["generated_tokens"]:
                    fields["tok/s"] = f"{rates['tokens_per_s']:.0f}"
        if record.get("failures"):
            fields["failures"] = record["failures"]
        self.progress(
            stage,
            record.get("trees_finished", 0),
            record.get("trees_total"),
            unit="trees",
            **fields,
        )
        if self.scalars is not None and t:
            values = {
                f"{stage}/{k}": float(record[k])
                for k in ("trees_finished", "pairs", "expansions")
                if isinstance(record.get(k), int | float)
            }
            values |= {f"{stage}/{k}": v for k, v in rates.items()}
            self.scalars.add(values, int(t))

    # ---- the live display ----------------------------------------------------------------
    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        table = Table.grid(padding=(0, 1))
        table.add_column(width=1)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(overflow="ellipsis", no_wrap=True)
        for st in list(self.stages.values()):  # the refresh thread: a copy
            seconds = st.seconds
            if st.state == "running" and st.started is not None:
                seconds = now - st.started
            note = "" if st.state == "running" else st.brief
            if st.state == "reused":
                note = "done earlier" + (f": {st.brief}" if st.brief else "")
            table.add_row(
                Text(_MARK[st.state], style=_STYLE[st.state]),
                Text(st.name, style=_STYLE[st.state]),
                Text(duration(seconds) if seconds is not None else ""),
                Text(note, style="dim"),
            )
        parts: list[Any] = [table]
        if self.current is not None:
            bar = self.bar
            row = Table.grid(padding=(0, 1))
            row.add_column(no_wrap=True)
            row.add_column(no_wrap=True)
            row.add_column(overflow="ellipsis", no_wrap=True)
            if bar is not None and bar.total:
                widget = ProgressBar(total=bar.total, completed=bar.completed, width=30)
            else:
                widget = ProgressBar(total=None, width=30, pulse=True)
            text = bar.text() if bar is not None else "starting"
            row.add_row(Text(f"  {self.current}", style="bold cyan"), widget, Text(text))
            parts.append(row)
        where = f", output of the engines and trainers in {self.logs_dir}" if self.logs_dir else ""
        parts.append(Text(f"  {duration(now - self._started)} elapsed{where}", style="dim"))
        return Group(*parts)

    # ---- status.json ---------------------------------------------------------------------
    def _write_status(self, *, force: bool = False, finished: bool = False) -> None:
        now = time.monotonic()
        if self.run_dir is None or (not force and now - self._last_status < 2.0):
            return
        self._last_status = now
        bar = self.bar
        progress = None
        if bar is not None:
            progress = {
                "unit": bar.unit,
                "completed": bar.completed,
                "total": bar.total,
                "run": bar.run,
                "text": bar.text(),
            }
        status = {
            "pid": os.getpid(),
            "updated": time.time(),
            "finished": finished,
            "running": self.current,
            "progress": progress,
            "stages": {n: st.state for n, st in self.stages.items()},
        }
        try:
            tmp = self.run_dir / f".{STATUS_FILE}.tmp"
            tmp.write_text(json.dumps(status, indent=1, default=str))
            tmp.replace(self.run_dir / STATUS_FILE)
        except OSError:
            pass


class _MonitorHandler(logging.Handler):
    """Logging records as lines of the monitor (the project's warnings)."""

    def __init__(self, monitor: RunMonitor) -> None:
        super().__init__()
        self.monitor = monitor
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.monitor.log(self.format(record))
        except Exception:
            self.handleError(record)


_QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
_quieted: set[str] = set()  # the variables quiet_libraries set (the actors get them back empty)


def quiet_libraries() -> None:
    """Progress bars and advisory notices of the libraries the driver loads itself
    (transformers, the Hugging Face hub, datasets) off, in this process only: the display
    shows the run. The actors, which inherit a local Ray's environment, get these variables
    back empty (``RunMonitor.actor_env``), so their logs hold all the libraries print."""
    for key, value in _QUIET_ENV.items():
        if key not in os.environ:
            os.environ[key] = value
            _quieted.add(key)
