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


class StageRunner:
    """Runs named stages under ``run_dir`` at most once each."""

    def __init__(self, run_dir: str | Path, log: Callable[[str], None] = print) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = log

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def done(self, name: str) -> bool:
        return (self.path(name) / MARKER).is_file()

    def summary(self, name: str) -> dict[str, Any]:
        return json.loads((self.path(name) / MARKER).read_text())

    def run(self, name: str, fn: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """Run ``fn(stage_dir) -> summary`` unless ``name`` already finished."""
        if self.done(name):
            self.log(f"[stage] {name}: done earlier, reusing {self.path(name)}")
            return self.summary(name)
        folder = self.path(name)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        self.log(f"[stage] {name}: running")
        start = time.perf_counter()
        summary = dict(fn(folder) or {})
        summary["seconds"] = round(time.perf_counter() - start, 2)
        tmp = folder / f".{MARKER}.tmp"
        tmp.write_text(json.dumps(summary, indent=1, default=str))
        tmp.rename(folder / MARKER)
        self.log(f"[stage] {name}: finished in {summary['seconds']} s")
        return summary
