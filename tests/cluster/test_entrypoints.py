"""Every job entrypoint opens with the exact ``ray job submit`` line that runs it, and that line
is right: loopback address, the repository as working dir, a runtime env that parses, this
very script, and a config file that exists and validates with the job's own config class."""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path

import pytest

from itool_ray.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINTS = ("itool.py", "rollout.py", "evaluate.py", "report.py", "experiments.py")


def _config_class(script: str):
    if script == "itool.py":
        from itool_ray.pipeline import ITOolConfig

        return ITOolConfig
    if script == "rollout.py":
        from itool_ray.rollout.job import RolloutJobConfig

        return RolloutJobConfig
    return None


def submit_line(script: str) -> list[str]:
    """The first ``ray job submit`` command of the script's docstring, as argv."""
    doc = ast.get_docstring(ast.parse((ROOT / "jobs" / script).read_text())) or ""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ray job submit"))
    # the command is the first thing after the docstring's one-paragraph title
    assert start <= 3, f"jobs/{script}: the ray job submit line must open the docstring"
    cmd = ""
    for line in lines[start:]:
        cmd += line.strip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            break
    return shlex.split(cmd)


@pytest.mark.parametrize("script", ENTRYPOINTS)
def test_entrypoint_opens_with_a_working_submit_line(script):
    argv = submit_line(script)
    assert argv[:3] == ["ray", "job", "submit"]
    opts, cmd = argv[3 : argv.index("--")], argv[argv.index("--") + 1 :]
    flags = dict(zip(opts[::2], opts[1::2], strict=True))
    assert flags["--address"].startswith("http://127.0.0.1:")
    assert flags["--working-dir"] == "."
    if "--runtime-env-json" in flags:
        env = json.loads(flags["--runtime-env-json"])
        assert set(env) <= {"env_vars", "pip", "py_modules", "working_dir", "excludes"}
    assert cmd[:2] == ["python", f"jobs/{script}"]
    if "--config" in cmd:
        path = ROOT / cmd[cmd.index("--config") + 1]
        assert path.is_file(), f"jobs/{script}: {path} does not exist"
        cls = _config_class(script)
        if cls is not None:
            load_config(cls, path, [a for a in cmd[2:] if "=" in a and not a.startswith("-")])


def test_a_wrong_key_is_rejected_before_any_actor_starts():
    from itool_ray.rollout.job import RolloutJobConfig

    with pytest.raises(
        ConfigError, match=r"replicas.max_cnt: unknown key; allowed here: .*max_count"
    ):
        load_config(RolloutJobConfig, None, ["replicas.max_cnt=3"])
    with pytest.raises(ConfigError, match=r"max_count \(1\) must be >= count \(2\)"):
        load_config(RolloutJobConfig, None, ["replicas.count=2", "replicas.max_count=1"])
