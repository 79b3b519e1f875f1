"""Fixtures for the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from itool_ray.data import shared_data_root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Seal-Tools / API-Bank files (skips the test where they are absent)."""
    root = shared_data_root()
    if not (root / "seal-tools" / "tool.jsonl").exists():
        pytest.skip(f"shared data not found at {root}")
    return root
