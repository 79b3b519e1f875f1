"""A run's finished stages kept outside its run folder, so a long experiment outlives the
machine it ran on (``jobs/experiments.py archive_dir=...``): the folder can be committed.

``archive_run`` copies each finished stage of one run folder (its ``DONE`` marker, its
``.itool-stage`` marker and the outputs ``DONE`` lists) into ``archive/<stage>/``;
``restore_run`` copies the archived stages a run folder lacks back into it, byte for byte, so
the stage runner reuses them (their markers and hashes are those it wrote).

Model weights (``WEIGHT_SUFFIXES``) are what makes an archive large. They are kept while a run
may still need them: a run whose every stage finished (``complete``) is not run again, so its
weights are left out, except those of the stages named in ``keep_weights`` (stages other runs
start from). ``left_out`` in ``archive/ARCHIVE.json`` lists each file left out, per stage.

``archive/.gitignore`` keeps every archived file in git, whatever the repository's own rules
(this one ignores ``runs/``, the folder the trainers' TensorBoard logs are written to).
"""

from __future__ import annotations

import filecmp
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from itool_ray.stages import MANIFEST_KEY, MARKER, RUN_MARKER, STAGE_MARKER

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
INDEX = "ARCHIVE.json"
GITIGNORE = "# written by itool_ray.archive: commit every file of the archive\n!*\n"


def _outputs(stage_dir: Path) -> dict[str, list] | None:
    """The outputs a finished stage's ``DONE`` marker lists (None: not finished or unreadable)."""
    try:
        marker = json.loads((stage_dir / MARKER).read_text())
        outputs = marker[MANIFEST_KEY]["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return outputs if isinstance(outputs, dict) else None


def is_weight(rel: str) -> bool:
    return rel.lower().endswith(WEIGHT_SUFFIXES)


def _copy_stage(src: Path, dst: Path, files: Iterable[str]) -> bool:
    """Make ``dst`` hold exactly ``files`` of ``src`` (plus the two markers); False when it
    already did. Written beside ``dst`` and renamed, so a stop mid-copy leaves the old copy."""
    wanted = sorted({*files, MARKER, STAGE_MARKER})
    if dst.is_dir():
        present = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
        if present == [w for w in wanted if (src / w).is_file()] and all(
            filecmp.cmp(src / w, dst / w, shallow=False) for w in present
        ):
            return False
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for rel in wanted:
        if (src / rel).is_file():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, tmp / rel)
    old = dst.with_name(f".{dst.name}.old")
    if dst.exists():
        dst.replace(old)
    tmp.replace(dst)
    if old.exists():
        shutil.rmtree(old)
    return True


def archive_run(
    run_dir: str | Path,
    archive: str | Path,
    stages: Iterable[str],
    *,
    complete: bool,
    keep_weights: Iterable[str] = (),
) -> list[str]:
    """Copy the finished ``stages`` of ``run_dir`` into ``archive``; returns the stages whose
    copy changed. Weights are left out when ``complete``, except for ``keep_weights``."""
    run_dir, archive = Path(run_dir), Path(archive)
    keep = set(keep_weights)
    index_path = archive / INDEX
    index: dict[str, Any] = {}
    if index_path.is_file():
        index = json.loads(index_path.read_text())
    left_out: dict[str, list[str]] = index.get("left_out", {})
    changed = []
    for name in stages:
        outputs = _outputs(run_dir / name)
        if outputs is None:
            continue
        drop = complete and name not in keep
        files = [rel for rel in outputs if not (drop and is_weight(rel))]
        skipped = sorted(set(outputs) - set(files))
        archive.mkdir(parents=True, exist_ok=True)
        if _copy_stage(run_dir / name, archive / name, files):
            changed.append(name)
        if skipped:
            left_out[name] = skipped
        else:
            left_out.pop(name, None)
    if (run_dir / RUN_MARKER).is_file() and archive.is_dir():
        if not (archive / RUN_MARKER).is_file():
            shutil.copy2(run_dir / RUN_MARKER, archive / RUN_MARKER)
        ignore = archive / ".gitignore"
        if not ignore.is_file() or ignore.read_text() != GITIGNORE:
            ignore.write_text(GITIGNORE)
        text = json.dumps({"left_out": dict(sorted(left_out.items()))}, indent=1) + "\n"
        if not index_path.is_file() or index_path.read_text() != text:
            index_path.write_text(text)
    return changed


def restore_run(archive: str | Path, run_dir: str | Path) -> list[str]:
    """Copy every archived stage that ``run_dir`` has not finished into it (a half-made stage
    folder there is replaced); returns the stages restored. Nothing is copied when a folder
    in the way was not made by the stage runner (``FileExistsError``)."""
    archive, run_dir = Path(archive), Path(run_dir)
    if not archive.is_dir():
        return []
    todo = [
        src
        for src in sorted(p for p in archive.iterdir() if p.is_dir() and not p.name.startswith("."))
        if _outputs(src) is not None and not (run_dir / src.name / MARKER).is_file()
    ]
    for src in todo:
        dst = run_dir / src.name
        if dst.exists() and not (dst / STAGE_MARKER).is_file() and any(dst.iterdir()):
            raise FileExistsError(
                f"restore: {dst} holds files the stage runner did not make (no {STAGE_MARKER} "
                f"marker); move it away to restore {src.name} from {archive}"
            )
    for src in todo:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / RUN_MARKER).is_file() and (archive / RUN_MARKER).is_file():
            shutil.copy2(archive / RUN_MARKER, run_dir / RUN_MARKER)
        dst = run_dir / src.name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
    return [src.name for src in todo]
