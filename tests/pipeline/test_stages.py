"""Resumable stages: run once, reuse the summary, clear or keep an interrupted folder."""

from __future__ import annotations

import pytest

from itool_ray.stages import StageRunner


def test_stage_runs_once_and_resumes_from_its_marker(tmp_path):
    calls = []

    def work(out):
        calls.append(out)
        (out / "result.txt").write_text("x")
        return {"value": 7}

    runner = StageRunner(tmp_path, log=lambda _: None)
    first = runner.run("a", work)
    again = StageRunner(tmp_path, log=lambda _: None).run("a", work)
    assert len(calls) == 1 and first["value"] == again["value"] == 7
    assert "seconds" in again and runner.done("a")


def test_interrupted_stage_is_cleared_or_kept(tmp_path):
    runner = StageRunner(tmp_path, log=lambda _: None)

    def crash(out):
        (out / "partial.txt").write_text("half")
        raise RuntimeError("stopped")

    for name in ("cleared", "kept"):
        with pytest.raises(RuntimeError):
            runner.run(name, crash)
        assert not runner.done(name)
    seen = {}

    def finish(out):
        seen[out.name] = (out / "partial.txt").exists()
        return {}

    runner.run("cleared", finish)
    runner.run("kept", finish, keep_partial=True)
    assert seen == {"cleared": False, "kept": True}
