"""Resumable stages: each writes its outputs into its own folder, then a ``DONE`` marker.

A job stopped anywhere resumes from the last finished stage: a stage whose marker is valid is
not run again, its saved summary is returned instead. A stage that died half-way leaves no
marker, and its folder is cleared before it runs again (or kept, for stages that resume from
their own checkpoints).

What the runner trusts, and what it may delete:

* **Ownership.** The run folder carries a ``.itool-run`` marker and every stage folder the
  runner made a ``.itool-stage`` marker (written when it creates the folder). The runner only
  deletes a stage folder holding its marker, and refuses a ``run_dir`` that is empty, ``/``,
  the home folder, or an existing non-empty folder it does not own (one holding only stage
  folders it made, e.g. copied from another run, is taken over).
* **Outputs.** ``DONE`` lists every file the stage wrote (relative path, size, SHA-256). At
  resume a stage whose files are missing or changed is run again (logged), never trusted.
  TensorBoard event files (:func:`is_log`) are listed too but not checked: they are curves
  for a person to read, which no stage consumes, so a copy of a stage that lost them (an
  archive under a ``.gitignore`` that drops ``runs/``) is still reused.
* **Settings.** Each stage has a fingerprint: the hash of the settings it depends on and of
  the identities of the stages it consumes (``StageSpec``). A finished stage made under other
  settings is refused with a message naming the stage and the differing settings, unless
  ``rerun_changed`` is set: then it and every stage after it (consuming it, transitively) run
  again. A stage whose inputs were made again since it ran is run again (logged).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = "DONE"
RUN_MARKER = ".itool-run"
STAGE_MARKER = ".itool-stage"
MANIFEST_KEY = "_stage"
"""Key of the ``DONE`` marker holding what the runner checks at resume (not the summary)."""
HASH_LIMIT = 1 << 30
"""Output files larger than this (1 GiB: a merged full model's shards) are checked by size
only, so a resume does not read tens of GB; smaller ones (adapters, JSONL) by SHA-256."""

_OWN_FILES = {MARKER, STAGE_MARKER, f".{MARKER}.tmp", f".{STAGE_MARKER}.tmp"}
LOG_PREFIX = "events.out.tfevents."
"""How TensorBoard names its event files (the trainers' curves, ``report_to``)."""


def is_log(rel: str) -> bool:
    """Whether the output ``rel`` is a TensorBoard event file: a log, not checked at resume."""
    return rel.rsplit("/", 1)[-1].startswith(LOG_PREFIX)


class StopAfter(Exception):  # noqa: N818 (a request, not an error)
    """Raised after the stage named in ``StageRunner(stop_after=...)`` finished."""


class StageError(RuntimeError):
    """The runner refuses: a run folder or stage folder it does not own, a bad stage name."""


class StageSettingsChanged(StageError):
    """A stage under ``run_dir`` was made under other settings than the job's."""


@dataclass(frozen=True)
class StageSpec:
    """What a stage depends on: ``settings`` (JSON-able, nested dicts allowed) and the names
    of the stages whose outputs it consumes (``inputs``, run before it)."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()


def _canonical(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples -> lists, keys -> strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(settings: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """Hash of a stage's settings and of the identities of the stages it consumes."""
    return _digest({"settings": _canonical(dict(settings)), "inputs": dict(sorted(inputs.items()))})


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= _flatten(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: value}


_ABSENT = object()


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``["train.sft.lr: 0.001 -> 0.01", ...]``: dotted keys whose values differ."""
    a, b = _flatten(_canonical(dict(old))), _flatten(_canonical(dict(new)))
    lines = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if x != y:
            show = [("(not set)" if v is _ABSENT else json.dumps(v)) for v in (x, y)]
            lines.append(f"{key}: {show[0]} -> {show[1]}")
    return lines


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def list_outputs(folder: Path) -> dict[str, list]:
    """``{relative path: [size, sha256 or None]}`` of every file a stage left in ``folder``
    (the runner's own markers excluded)."""
    out: dict[str, list] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if rel in _OWN_FILES or not p.is_file() or p.is_symlink():
            continue
        size = p.stat().st_size
        out[rel] = [size, _file_sha256(p) if size <= HASH_LIMIT else None]
    return out


def output_problems(folder: Path, outputs: Mapping[str, Any]) -> list[str]:
    """Files of ``outputs`` (from :func:`list_outputs`) missing or changed under ``folder``
    (logs, :func:`is_log`, left out)."""
    problems = []
    for rel, (size, sha) in outputs.items():
        if is_log(rel):
            continue
        p = folder / rel
        if not p.is_file():
            problems.append(f"{rel} is missing")
        elif p.stat().st_size != size:
            problems.append(f"{rel} changed size ({size} -> {p.stat().st_size} bytes)")
        elif sha is not None and _file_sha256(p) != sha:
            problems.append(f"{rel} changed content")
    return problems


def check_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    """The resolved ``run_dir``, unless it is empty, ``/`` or the home folder
    (``StageError``); where it may already hold files is checked by ``StageRunner``."""
    text = os.fspath(run_dir)
    if not str(text).strip():
        raise StageError("run_dir is empty: name a folder for the run (e.g. runs/itool)")
    path = Path(text).expanduser().resolve()
    if path == Path(path.anchor):
        raise StageError(f"run_dir {text!r} is the file system root: name a folder of its own")
    if path == Path.home().resolve():
        raise StageError(f"run_dir {text!r} is the home folder: name a folder of its own")
    return path


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1, default=str))
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class StageRunner:
    """Runs named stages under ``run_dir`` at most once each; ``stop_after`` names a stage
    after which the job stops (``StopAfter``), to be resumed by running it again.

    ``plan`` maps stage names to their ``StageSpec`` (settings and inputs; a stage not in it
    depends on nothing); ``check()`` compares the finished stages with it before anything
    runs. ``rerun_changed``: a stage made under other settings is run again, with every
    stage after it, instead of refused. ``on_event(name, state, summary)`` hears every
    stage's moves beside the log lines (a live display): ``running`` or ``resuming``, then
    ``done`` with its summary or ``failed``; ``reused`` with the saved summary.
    """

    def __init__(
        self,
        run_dir: str | Path,
        log: Callable[[str], None] = print,
        stop_after: str | None = None,
        *,
        plan: Mapping[str, StageSpec] | None = None,
        rerun_changed: bool = False,
        on_event: Callable[[str, str, dict[str, Any] | None], None] | None = None,
    ) -> None:
        resolved = check_run_dir(run_dir)
        self.run_dir = Path(run_dir)
        self.log = log
        self.on_event = on_event or (lambda name, state, summary: None)
        self.stop_after = stop_after
        self.plan = dict(plan or {})
        self.rerun_changed = rerun_changed
        for name in self.plan:
            self._check_name(name)
        self._claim(resolved)

    # ---- ownership -----------------------------------------------------------------------
    def _claim(self, path: Path) -> None:
        if path.exists() and not path.is_dir():
            raise StageError(f"run_dir {self.run_dir} is a file, not a folder")
        marker = path / RUN_MARKER
        if path.is_dir() and not marker.is_file():
            foreign = [p.name for p in sorted(path.iterdir()) if not self._owned_stage(p)]
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise StageError(
                    f"run_dir {self.run_dir} already holds files this job did not make "
                    f"({shown}; no {RUN_MARKER} marker): choose a new or empty folder"
                )
        path.mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            _write_json(marker, {"itool-ray": "run folder", "created": time.time()})

    @staticmethod
    def _owned_stage(folder: Path) -> bool:
        return folder.is_dir() and not folder.is_symlink() and (folder / STAGE_MARKER).is_file()

    @staticmethod
    def _check_name(name: str) -> None:
        if not name or name.startswith(".") or "/" in name or "\\" in name or name != name.strip():
            raise StageError(f"stage name {name!r} is not a plain folder name")

    def _clear(self, name: str) -> None:
        """Delete stage ``name``'s folder, only if the runner made it."""
        folder = self.path(name)
        if not (folder.exists() or folder.is_symlink()):
            return
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
            return
        if not self._owned_stage(folder):
            raise StageError(
                f"stage folder {folder} was not made by this job (no {STAGE_MARKER} marker); "
                "refusing to delete it: move it away or choose another run_dir"
            )
        shutil.rmtree(folder)

    # ---- markers -------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        self._check_name(name)
        return self.run_dir / name

    def done(self, name: str) -> bool:
        return (self.path(name) / MARKER).is_file()

    def _marker(self, name: str) -> dict[str, Any] | None:
        data = _read_json(self.path(name) / MARKER)
        return data if isinstance(data, dict) else None

    def _manifest(self, name: str) -> dict[str, Any] | None:
        manifest = (self._marker(name) or {}).get(MANIFEST_KEY)
        ok = isinstance(manifest, dict) and all(
            k in manifest for k in ("fingerprint", "settings", "inputs", "outputs", "identity")
        )
        return manifest if ok else None

    def summary(self, name: str) -> dict[str, Any]:
        data = self._marker(name) or {}
        return {k: v for k, v in data.items() if k != MANIFEST_KEY}

    def identity(self, name: str) -> str:
        """What consumers of stage ``name`` record: its fingerprint and its outputs' hash."""
        manifest = self._manifest(name)
        if manifest is None:
            raise StageError(f"stage {name} is consumed before it finished")
        return manifest["identity"]

    def _recorded_settings(self, name: str) -> dict[str, Any] | None:
        """The settings stage ``name`` was (or is being) made under, where recorded."""
        if self.done(name):
            manifest = self._manifest(name)
            return manifest["settings"] if manifest else None
        data = _read_json(self.path(name) / STAGE_MARKER)
        return data.get("settings") if isinstance(data, dict) else None

    # ---- the up-front check ----------------------------------------------------------------
    def check(self) -> list[str]:
        """Compare every stage of the plan already under ``run_dir`` with its settings, before
        anything runs: raise ``StageSettingsChanged`` naming every changed stage and setting,
        or (``rerun_changed``) delete those stages and every stage after them, so no stage
        left under ``run_dir`` claims settings it was not made with. Returns the stages
        deleted."""
        changed: dict[str, list[str]] = {}
        for name, spec in self.plan.items():
            recorded = self._recorded_settings(name)
            if recorded is not None and (diff := settings_diff(recorded, spec.settings)):
                changed[name] = diff
        if not changed:
            return []
        if not self.rerun_changed:
            lines = [
                f"{len(changed)} stage(s) under {self.run_dir} were made under other settings:"
            ]
            for name, diff in changed.items():
                lines.append(f"  {name}: " + "; ".join(diff))
            lines.append(
                "  run with rerun_changed=true to run them and every stage after them again, "
                "or use another run_dir"
            )
            raise StageSettingsChanged("\n".join(lines))
        stale = self._after(changed)
        for name in stale:
            if self.path(name).exists():
                why = "; ".join(changed[name]) if name in changed else "consumes a re-run stage"
                self.log(f"[stage] {name}: settings changed ({why}); running it again")
                self._clear(name)
        return stale

    def _after(self, names: Iterable[str]) -> list[str]:
        """``names`` and every plan stage consuming them, transitively, in plan order."""
        stale = set(names)
        for name, spec in self.plan.items():
            if any(i in stale for i in spec.inputs):
                stale.add(name)
        return [n for n in self.plan if n in stale]

    # ---- running -------------------------------------------------------------------------
    def _stale(self, name: str, settings: dict, inputs: dict[str, str]) -> tuple[str, bool] | None:
        """Why a finished stage cannot be reused ((reason, settings changed)), or None."""
        manifest = self._manifest(name)
        if manifest is None:
            return (
                "its DONE marker lists no outputs (unreadable, or made by an older version)",
                False,
            )
        if diff := settings_diff(manifest["settings"], settings):
            return "made under other settings: " + "; ".join(diff), True
        if manifest["inputs"] != inputs:
            old = manifest["inputs"]
            again = sorted(k for k in {*old, *inputs} if old.get(k) != inputs.get(k))
            return f"its inputs were made again since ({', '.join(again)})", False
        if problems := output_problems(self.path(name), manifest["outputs"]):
            shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
            return f"its outputs are not as it left them ({shown})", False
        return None

    def run(
        self,
        name: str,
        fn: Callable[[Path], dict[str, Any]],
        *,
        keep_partial: bool = False,
        spec: StageSpec | None = None,
    ) -> dict[str, Any]:
        """Run ``fn(stage_dir) -> summary`` unless ``name`` already finished (and its
        settings, inputs and outputs check out).

        ``keep_partial``: a folder left by an interrupted run under the same settings and
        inputs is kept, for stages that resume from their own checkpoints (MCTS); otherwise
        it is cleared first. ``spec``: the stage's settings and inputs (default: the plan's).
        """
        spec = spec or self.plan.get(name) or StageSpec()
        folder = self.path(name)
        settings = _canonical(dict(spec.settings))
        inputs = {i: self.identity(i) for i in spec.inputs}
        fp = fingerprint(settings, inputs)
        resumed = False
        if self.done(name):
            stale = self._stale(name, settings, inputs)
            if stale is None:
                self.log(f"[stage] {name}: done earlier, reusing {folder}")
                summary = self.summary(name)
                self.on_event(name, "reused", summary)
                return self._maybe_stop(name, summary)
            reason, settings_changed = stale
            if settings_changed and not self.rerun_changed:
                raise StageSettingsChanged(
                    f"stage {name} under {self.run_dir} was {reason}; run with "
                    "rerun_changed=true to run it and every stage after it again, or use "
                    "another run_dir"
                )
            self.log(f"[stage] {name}: not reusing it, {reason}; running it again")
            self._clear(name)
        elif folder.exists() or folder.is_symlink():
            started = _read_json(folder / STAGE_MARKER) if self._owned_stage(folder) else None
            same = isinstance(started, dict) and started.get("fingerprint") == fp
            if keep_partial and same:
                resumed = True
            else:
                if keep_partial and isinstance(started, dict):
                    diff = settings_diff(started.get("settings") or {}, settings)
                    if diff and not self.rerun_changed:
                        raise StageSettingsChanged(
                            f"the interrupted stage {name} under {self.run_dir} was started "
                            f"under other settings: {'; '.join(diff)}; run with "
                            "rerun_changed=true to start it again, or use another run_dir"
                        )
                    self.log(
                        f"[stage] {name}: the interrupted run was started from other "
                        "settings or inputs; starting it again"
                    )
                self._clear(name)
        if not resumed:
            folder.mkdir(parents=True)
            mine = {"stage": name, "fingerprint": fp, "settings": settings, "inputs": inputs}
            _write_json(folder / STAGE_MARKER, mine)
        self.log(f"[stage] {name}: {'resuming' if resumed else 'running'}")
        self.on_event(name, "resuming" if resumed else "running", None)
        start = time.perf_counter()
        try:
            summary = dict(fn(folder) or {})
        except BaseException:
            self.on_event(name, "failed", None)
            raise
        summary.pop(MANIFEST_KEY, None)
        summary["seconds"] = round(time.perf_counter() - start, 2)
        outputs = list_outputs(folder)
        manifest = {
            "fingerprint": fp,
            "settings": settings,
            "inputs": inputs,
            "outputs": outputs,
            "identity": _digest({"fingerprint": fp, "outputs": outputs}),
        }
        _write_json(folder / MARKER, {**summary, MANIFEST_KEY: manifest})
        self.log(f"[stage] {name}: finished in {summary['seconds']} s")
        self.on_event(name, "done", summary)
        return self._maybe_stop(name, summary)

    def _maybe_stop(self, name: str, summary: dict[str, Any]) -> dict[str, Any]:
        if name == self.stop_after:
            raise StopAfter(name)
        return summary
