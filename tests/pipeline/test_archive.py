"""A run's finished stages kept in an archive folder and restored on another machine: the
stage runner reuses what is restored, weights leave the archive only once nothing needs them."""

from __future__ import annotations

import json

import pytest

from itool_ray.archive import INDEX, archive_run, restore_run
from itool_ray.stages import StageRunner, StageSpec

PLAN = {
    "data": StageSpec({"n": 3}),
    "sft": StageSpec({"lr": 1e-3}, ("data",)),
    "eval": StageSpec({"k": 1}, ("data", "sft")),
}


def _write(name: str):
    def fn(out):
        (out / f"{name}.jsonl").write_text(f"{name}\n")
        if name == "sft":
            (out / "adapter").mkdir()
            (out / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
        return {"stage": name}

    return fn


def _run_all(run_dir, calls: list[str]):
    runner = StageRunner(run_dir, lambda _: None, plan=PLAN)
    runner.check()
    for name in PLAN:
        runner.run(name, lambda out, name=name: (calls.append(name), _write(name)(out))[1])
    return runner


def test_restored_stages_are_reused_and_weights_kept_while_needed(tmp_path):
    run, archive, calls = tmp_path / "run", tmp_path / "archive", []
    runner = StageRunner(run, lambda _: None, plan=PLAN)
    runner.run("data", _write("data"))
    runner.run("sft", _write("sft"))
    (run / "eval").mkdir()  # an evaluation half-way: not archived
    assert archive_run(run, archive, PLAN, complete=False) == ["data", "sft"]
    assert (archive / "sft" / "adapter" / "adapter_model.safetensors").stat().st_size == 4096
    assert not (archive / "eval").exists()
    assert archive_run(run, archive, PLAN, complete=False) == []  # unchanged: nothing copied

    # another machine: the restored stages are reused as they are, only eval runs
    other = tmp_path / "other"
    assert restore_run(archive, other) == ["data", "sft"]
    _run_all(other, calls)
    assert calls == ["eval"]


def test_a_complete_run_leaves_its_weights_out_unless_another_run_starts_from_them(tmp_path):
    run, archive = tmp_path / "run", tmp_path / "archive"
    _run_all(run, [])
    archive_run(run, archive, PLAN, complete=False)
    assert archive_run(run, archive, PLAN, complete=True) == ["sft"]
    assert not (archive / "sft" / "adapter" / "adapter_model.safetensors").exists()
    assert (archive / "sft" / "sft.jsonl").read_text() == "sft\n"
    index = json.loads((archive / INDEX).read_text())
    assert index["left_out"] == {"sft": ["adapter/adapter_model.safetensors"]}
    # kept when another run is seeded from it; the index then lists nothing left out
    archive_run(run, archive, PLAN, complete=True, keep_weights=("sft",))
    assert (archive / "sft" / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((archive / INDEX).read_text())["left_out"] == {}


def test_git_keeps_every_archived_file_despite_the_repository_ignoring_runs(tmp_path):
    """The project's .gitignore drops ``runs/`` (where the trainers' TensorBoard logs go): in
    a repository with that rule, git must still track those files of an archive."""
    import shutil
    import subprocess

    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([git, "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("runs/\n*.pyc\n")
    run, archive = repo / "runs" / "exp" / "itool", repo / "results" / "itool"

    def sft(out):
        _write("sft")(out)
        logs = out / "runs" / "easy"
        logs.mkdir(parents=True)
        (logs / "events.out.tfevents.1.vm.1.0").write_bytes(b"curve")
        return {"stage": "sft"}

    runner = StageRunner(run, lambda _: None, plan=PLAN)
    runner.run("data", _write("data"))
    runner.run("sft", sft)
    archive_run(run, archive, list(PLAN), complete=False)
    log = archive / "sft" / "runs" / "easy" / "events.out.tfevents.1.vm.1.0"
    assert log.is_file()
    ignored = subprocess.run(
        [git, "-C", str(repo), "check-ignore", "-q", str(log.relative_to(repo))]
    )
    assert ignored.returncode == 1, "git ignores an archived file"
    kept = subprocess.run(
        [git, "-C", str(repo), "check-ignore", "-q", "runs/exp/itool/sft/sft.jsonl"]
    )
    assert kept.returncode == 0, "the repository's own rule still applies outside the archive"


def test_restore_keeps_finished_stages_and_refuses_a_folder_it_did_not_make(tmp_path):
    run, archive = tmp_path / "run", tmp_path / "archive"
    _run_all(run, [])
    archive_run(run, archive, PLAN, complete=False)
    other = tmp_path / "other"
    StageRunner(other, lambda _: None, plan=PLAN).run("data", _write("data"))
    (other / "sft").mkdir()
    (other / "sft" / "mine.txt").write_text("not a stage")
    with pytest.raises(FileExistsError, match="sft"):
        restore_run(archive, other)
    (other / "sft" / "mine.txt").unlink()
    # data finished there already: kept, not replaced; sft and eval restored
    assert restore_run(archive, other) == ["eval", "sft"]
    assert restore_run(tmp_path / "absent", other) == []


def test_the_experiments_table_is_rebuilt_from_its_archive_without_running(tmp_path, monkeypatch):
    from itool_ray import pipeline
    from itool_ray.config import load_config
    from itool_ray.experiments import (
        ExperimentsConfig,
        _plan,
        keep_archive,
        run_experiments,
        run_folders,
    )

    def cfg_for(run_dir):
        return load_config(
            ExperimentsConfig,
            None,
            [
                f"run_dir={run_dir}",
                f"archive_dir={tmp_path / 'archive'}",
                "iterations=1",
                "mixed_sft=false",
                "losses=[ipo]",
                "one_step_search=false",
                "graded_outcome=false",
                "dpo_epochs=[]",
                "variants={}",
            ],
        )

    cfg = cfg_for(tmp_path / "run")
    assert run_folders(cfg) == {
        "itool": ("", ()),
        "loss-ipo": (
            "itool",
            ("data", "eval-base", "sft", "eval-sft", "iter1-select", "iter1-mcts"),
        ),
    }
    for folder in run_folders(cfg):  # every stage of both runs, made by the stage runner
        plan = _plan(cfg, folder)
        runner = StageRunner(tmp_path / "run" / folder, lambda _: None, plan=plan)
        for name in plan:
            runner.run(name, _write(name))
    keep_archive(cfg)
    archive = tmp_path / "archive"
    # the main run's SFT weights stay (the IPO row starts from them); the rest leave
    assert (archive / "itool" / "sft" / "adapter" / "adapter_model.safetensors").is_file()
    assert not list((archive / "loss-ipo").rglob("*.safetensors"))

    def no_run(*a, **k):
        raise AssertionError("a complete run was started again")

    monkeypatch.setattr(pipeline, "run_itool", no_run)
    fresh = cfg_for(tmp_path / "fresh")
    result = run_experiments(fresh, log=lambda _: None)
    assert (tmp_path / "fresh" / "loss-ipo" / "iter1-dpo" / "DONE").is_file()
    assert (tmp_path / "fresh" / "results.md").is_file() and "rows" in result
    assert (archive / "results.md").read_text() == (tmp_path / "fresh" / "results.md").read_text()
    # stage times from the markers: each run lists only the stages it made itself
    times = result["stage_seconds"]
    assert list(times["loss-ipo"]) == ["iter1-dpo", "iter1-eval"]
    assert (
        "sft" in times["itool"]
        and "- loss-ipo: iter1-dpo 0, iter1-eval 0" in (archive / "results.md").read_text()
    )
