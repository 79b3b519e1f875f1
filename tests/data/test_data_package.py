"""Package-level guarantees: pure imports, the data root, the benchmark entrypoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import itool_ray.data as data
from itool_ray.data import paths

ROOT = Path(__file__).resolve().parents[2]


def test_import_pulls_no_heavy_stack():
    code = (
        "import sys, itool_ray.data; "
        "print([m for m in ('torch', 'ray', 'vllm', 'transformers', 'datasets') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_resolve():
    assert all(hasattr(data, name) for name in data.__all__)


def test_shared_data_root_is_relative_to_the_package(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.ENV_SHARED_DATA, raising=False)
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    assert paths.shared_data_root() == (ROOT.parent / "shared" / "data").resolve()
    monkeypatch.setenv(paths.ENV_SHARED_DATA, str(tmp_path))
    assert paths.shared_data_root() == tmp_path.resolve()


def test_bench_synth_smoke():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "jobs" / "bench_synth.py"),
            "--num-samples",
            "200",
            "--repeat",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result = json.loads(out.stdout)
    assert result["num_samples"] == 200 and result["dropped"] == 0
    assert result["verified_samples_per_s"] > 0 and result["ratio_verified_to_baseline"] > 0
    assert "bench_synth.py" in result["command"] and result["date"]
