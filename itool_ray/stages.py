"""Resumable stages: each writes its outputs into its own folder, then a ``DONE`` marker.

A job stopped anywhere resumes from the last finished stage: a stage whose marker exists is
not run again, its saved summary is returned instead. A stage that died half-way leaves no
marker, and its folder is cleared before it runs again.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKER = "DONE"


class StopAfter(Exception):  # noqa: N818 (a request, not an error)
    """Raised after the stage named in ``StageRunner(stop_after=...)`` finished."""


class StageRunner:
    """Runs named stages under ``run_dir`` at most once each; ``stop_after`` names a stage
    after which the job stops (``StopAfter``), to be resumed by running it again."""

    def __init__(
        self,
        run_dir: str | Path,
        log: Callable[[str], None] = print,
        stop_after: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.stop_after = stop_after

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def done(self, name: str) -> bool:
        return (self.path(name) / MARKER).is_file()

    def summary(self, name: str) -> dict[str, Any]:
        return json.loads((self.path(name) / MARKER).read_text())

    def run(
        self, name: str, fn: Callable[[Path], dict[str, Any]], *, keep_partial: bool = False
    ) -> dict[str, Any]:
        """Run ``fn(stage_dir) -> summary`` unless ``name`` already finished.

        ``keep_partial``: a folder left by an interrupted run is kept, for stages that resume
        from their own checkpoints (MCTS); otherwise it is cleared first.
        """
        if self.done(name):
            self.log(f"[stage] {name}: done earlier, reusing {self.path(name)}")
            return self._maybe_stop(name, self.summary(name))
        folder = self.path(name)
        resumed = folder.exists() and keep_partial
        if folder.exists() and not keep_partial:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.log(f"[stage] {name}: {'resuming' if resumed else 'running'}")
        start = time.perf_counter()
        summary = dict(fn(folder) or {})
        summary["seconds"] = round(time.perf_counter() - start, 2)
        tmp = folder / f".{MARKER}.tmp"
        tmp.write_text(json.dumps(summary, indent=1, default=str))
        tmp.rename(folder / MARKER)
        self.log(f"[stage] {name}: finished in {summary['seconds']} s")
        return self._maybe_stop(name, summary)

    def _maybe_stop(self, name: str, summary: dict[str, Any]) -> dict[str, Any]:
        if name == self.stop_after:
            raise StopAfter(name)
        return summary
