"""The README opens with exactly the two commands users run, and CI runs the test one."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_opens_with_two_commands():
    first_block_at = (ROOT / "README.md").read_text().index("```bash")
    assert first_block_at < 40, "the README must open with its two commands"
    run, test = _readme_commands()
    assert run.startswith("bash cluster/setup.sh && ") and "jobs/itool.py" in run
    assert test.startswith("bash cluster/setup.sh && ") and "pytest" in test


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci
