"""Resumable stages: run once, reuse the summary, clear or keep an interrupted folder; delete
only folders the runner made; trust a DONE marker only with its outputs and its settings."""

from __future__ import annotations

import json
import shutil

import pytest

from itool_ray.stages import (
    RUN_MARKER,
    StageError,
    StageRunner,
    StageSettingsChanged,
    StageSpec,
)


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


# ---- ownership: what the runner may delete, which run folders it takes ---------------------


def _quiet(run_dir, **kw) -> StageRunner:
    return StageRunner(run_dir, log=lambda _: None, **kw)


@pytest.mark.parametrize("where", ["", " ", "/", "home"])
def test_run_dir_that_is_empty_root_or_home_is_refused(where, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(StageError, match="empty|root|home folder"):
        _quiet(str(home) if where == "home" else where)
    assert list(home.iterdir()) == []


def test_a_non_empty_folder_the_runner_did_not_make_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "thesis.tex").write_text("mine too")
    with pytest.raises(StageError, match=r"did not make \(data, notes.txt; no .itool-run"):
        _quiet(tmp_path)
    assert (tmp_path / "data" / "thesis.tex").read_text() == "mine too"
    assert not (tmp_path / RUN_MARKER).exists()
    # an empty folder, or a new one, becomes a run folder
    _quiet(tmp_path / "empty")
    assert (tmp_path / "empty" / RUN_MARKER).is_file()


def test_a_stage_folder_the_runner_did_not_make_is_never_deleted(tmp_path):
    runner = _quiet(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("user file")
    for keep_partial in (False, True):
        with pytest.raises(StageError, match="not made by this job .* refusing to delete"):
            runner.run("data", lambda out: {}, keep_partial=keep_partial)
    assert (tmp_path / "data" / "keep.txt").read_text() == "user file"
    # nor one with a DONE marker it did not write
    (tmp_path / "data" / "DONE").write_text('{"seconds": 1}')
    with pytest.raises(StageError, match="refusing to delete"):
        runner.run("data", lambda out: {})
    assert (tmp_path / "data" / "keep.txt").is_file()
    with pytest.raises(StageError, match="plain folder name"):
        runner.run("../escape", lambda out: {})


def test_a_folder_of_stages_copied_from_another_run_is_taken_over(tmp_path):
    main, variant = tmp_path / "main", tmp_path / "variant"
    _quiet(main).run("data", lambda out: (out / "x.jsonl").write_text("1") and {"n": 1})
    shutil.copytree(main / "data", variant / "data")  # what experiments._seed_from does
    runner = _quiet(variant)
    assert runner.run("data", lambda out: pytest.fail("reused, not run"))["n"] == 1
    assert (variant / RUN_MARKER).is_file()


# ---- DONE markers list their outputs ---------------------------------------------------------


def _adapter_stage(calls: list, content: bytes = b"weights"):
    def work(out):
        calls.append(1)
        (out / "adapter").mkdir()
        (out / "adapter" / "adapter_model.safetensors").write_bytes(content + bytes([len(calls)]))
        (out / "adapter" / "adapter_config.json").write_text("{}")
        return {"adapter_dir": str(out / "adapter")}

    return work


@pytest.mark.parametrize("damage", ["folder deleted", "file deleted", "truncated", "rewritten"])
def test_a_done_stage_whose_outputs_are_gone_or_changed_runs_again(damage, tmp_path):
    logs: list[str] = []
    calls: list = []
    runner = StageRunner(tmp_path, log=logs.append)
    runner.run("iter1-dpo", _adapter_stage(calls))
    adapter = tmp_path / "iter1-dpo" / "adapter"
    weights = adapter / "adapter_model.safetensors"
    manifest = json.loads((tmp_path / "iter1-dpo" / "DONE").read_text())["_stage"]
    size = len(b"weights") + 1
    assert manifest["outputs"]["adapter/adapter_model.safetensors"][0] == size
    if damage == "folder deleted":
        shutil.rmtree(adapter)
    elif damage == "file deleted":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(b"")
    else:  # same size, other bytes
        weights.write_bytes(b"WEIGHTS" + bytes([1]))
    summary = StageRunner(tmp_path, log=logs.append).run("iter1-dpo", _adapter_stage(calls))
    assert len(calls) == 2, "the damaged stage must run again"
    assert weights.stat().st_size == size and summary["adapter_dir"] == str(adapter)
    why = [line for line in logs if "not reusing it" in line]
    assert why and "adapter/adapter_model.safetensors" in why[0], logs
    # and, made again, it is reused
    StageRunner(tmp_path, log=logs.append).run("iter1-dpo", _adapter_stage(calls))
    assert len(calls) == 2


def test_a_done_stage_that_lost_only_its_tensorboard_logs_is_reused(tmp_path):
    """Event files are curves, not inputs of any stage: a copy without them (an archive whose
    ``runs/`` a ``.gitignore`` dropped) is reused, while a lost adapter still is not."""
    calls: list = []

    def work(out):
        _adapter_stage(calls)(out)
        logs = out / "runs" / "easy" / "runs" / "Dec03_06-37-30_vm"
        logs.mkdir(parents=True)
        (logs / "events.out.tfevents.1796279850.vm.12692.0").write_bytes(b"curve")
        return {"adapter_dir": str(out / "adapter")}

    _quiet(tmp_path).run("sft", work)
    manifest = json.loads((tmp_path / "sft" / "DONE").read_text())["_stage"]
    assert any("events.out.tfevents." in rel for rel in manifest["outputs"])  # still listed
    shutil.rmtree(tmp_path / "sft" / "runs")
    _quiet(tmp_path).run("sft", work)
    assert len(calls) == 1, "a stage that lost only its event files must be reused"
    (tmp_path / "sft" / "adapter" / "adapter_config.json").unlink()
    _quiet(tmp_path).run("sft", work)
    assert len(calls) == 2, "a stage that lost an output must run again"


def test_a_done_marker_without_its_output_list_is_not_trusted(tmp_path):
    calls: list = []
    runner = _quiet(tmp_path)
    runner.run("sft", _adapter_stage(calls))
    (tmp_path / "sft" / "DONE").write_text('{"adapter_dir": "x", "seconds": 1}')  # older form
    runner.run("sft", _adapter_stage(calls))
    assert len(calls) == 2


def test_a_consumer_runs_again_when_its_input_was_made_again(tmp_path):
    plan = {"mcts": StageSpec({"k": 3}), "dpo": StageSpec({"lr": 0.1}, ("mcts",))}
    calls: list = []
    logs: list[str] = []

    def mcts(out):
        calls.append("mcts")
        (out / "pairs.jsonl").write_text(f"{len(calls)}\n")
        return {}

    def dpo(out):
        calls.append("dpo")
        return {}

    runner = StageRunner(tmp_path, log=logs.append, plan=plan)
    runner.run("mcts", mcts)
    runner.run("dpo", dpo)
    (tmp_path / "mcts" / "pairs.jsonl").unlink()
    again = StageRunner(tmp_path, log=logs.append, plan=plan)
    assert again.check() == []
    again.run("mcts", mcts)
    again.run("dpo", dpo)
    assert calls == ["mcts", "dpo", "mcts", "dpo"]
    assert any("dpo: not reusing it, its inputs were made again since (mcts)" in x for x in logs)


# ---- fingerprints: a resume under other settings -----------------------------------------


def _two_stage_plan(lr: float, k: int = 3) -> dict[str, StageSpec]:
    return {
        "data": StageSpec({"data": {"n": 10}}),
        "sft": StageSpec({"train": {"sft": {"lr": lr}}}, ("data",)),
        "eval-sft": StageSpec({"eval": {"max_tokens": 8}}, ("data", "sft")),
        "mcts": StageSpec({"mcts": {"k": k}}, ("data",)),
    }


def _run_all(runner: StageRunner, calls: list) -> None:
    for name in runner.plan:

        def work(out, name=name):
            calls.append(name)
            (out / "out.txt").write_text(f"{name} {len(calls)}")
            return {}

        runner.run(name, work, keep_partial=name == "mcts")


def test_resuming_under_other_settings_is_refused_naming_stage_and_setting(tmp_path):
    calls: list = []
    _run_all(_quiet(tmp_path, plan=_two_stage_plan(lr=0.001)), calls)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    changed = _quiet(tmp_path, plan=_two_stage_plan(lr=0.01, k=4))
    with pytest.raises(StageSettingsChanged) as err:
        changed.check()
    msg = str(err.value)
    assert "sft: train.sft.lr: 0.001 -> 0.01" in msg and "mcts: mcts.k: 3 -> 4" in msg
    assert "rerun_changed=true" in msg and "data" not in msg.split("\n", 1)[1].split("rerun")[0]
    with pytest.raises(StageSettingsChanged, match="stage sft .* train.sft.lr: 0.001 -> 0.01"):
        changed.run("sft", lambda out: {})
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    # the same settings (a setting no stage depends on may differ) resume as before
    _run_all(_quiet(tmp_path, plan=_two_stage_plan(lr=0.001)), calls)
    assert calls == ["data", "sft", "eval-sft", "mcts"]


def test_rerun_changed_runs_the_changed_stages_and_every_stage_after_them(tmp_path):
    calls: list = []
    _run_all(_quiet(tmp_path, plan=_two_stage_plan(lr=0.001)), calls)
    logs: list[str] = []
    runner = StageRunner(
        tmp_path, log=logs.append, plan=_two_stage_plan(lr=0.01), rerun_changed=True
    )
    assert runner.check() == ["sft", "eval-sft"]
    assert not (tmp_path / "sft").exists() and not (tmp_path / "eval-sft").exists()
    assert any("sft: settings changed (train.sft.lr: 0.001 -> 0.01)" in x for x in logs)
    calls.clear()
    _run_all(runner, calls)
    assert calls == ["sft", "eval-sft"]
    recorded = json.loads((tmp_path / "sft" / "DONE").read_text())["_stage"]["settings"]
    assert recorded == {"train": {"sft": {"lr": 0.01}}}


def test_an_interrupted_resumable_stage_started_under_other_settings_or_inputs(tmp_path):
    def crash(out):
        (out / "trees.json").write_text("{}")
        raise RuntimeError("killed")

    def finish(out):
        seen.append((out / "trees.json").exists())
        return {}

    seen: list[bool] = []
    first = _quiet(tmp_path, plan=_two_stage_plan(0.1, k=3))
    first.run("data", lambda out: (out / "d.txt").write_text("1") and {})
    with pytest.raises(RuntimeError, match="killed"):
        first.run("mcts", crash, keep_partial=True)
    with pytest.raises(StageSettingsChanged, match="mcts.k: 3 -> 4"):
        _quiet(tmp_path, plan=_two_stage_plan(0.1, k=4)).check()
    # same settings and inputs: resumed from its checkpoint
    _quiet(tmp_path, plan=_two_stage_plan(0.1, k=3)).run("mcts", finish, keep_partial=True)
    # interrupted again, then its input is made again: it starts afresh
    shutil.rmtree(tmp_path / "mcts")
    with pytest.raises(RuntimeError, match="killed"):
        first.run("mcts", crash, keep_partial=True)
    (tmp_path / "data" / "d.txt").unlink()
    again = _quiet(tmp_path, plan=_two_stage_plan(0.1, k=3))
    again.run("data", lambda out: (out / "d.txt").write_text("2") and {})
    again.run("mcts", finish, keep_partial=True)
    assert seen == [True, False]
