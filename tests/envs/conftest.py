"""Fixtures of the BFCL multi-turn environment tests: the entries, and a guard that restores
the class modules' globals after a test that runs BFCL's own executor."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from itool_ray.envs import MultiTurnEntry, load_all_multi_turn
from tests.envs.bfcl_helpers import class_globals


@pytest.fixture(scope="session")
def all_entries() -> dict[str, tuple[MultiTurnEntry, ...]]:
    return load_all_multi_turn()


@pytest.fixture(scope="session")
def entries_by_id(all_entries) -> dict[str, MultiTurnEntry]:
    return {e.id: e for es in all_entries.values() for e in es}


@pytest.fixture
def restore_class_globals() -> Iterator[None]:
    """BFCL's eval path writes module globals (LONG_WEATHER_EXTENSION, aliased long-context
    dicts): put them back so that later tests see a fresh process's values."""
    saved = class_globals()
    yield
    for (module, name), value in saved.items():
        target = vars(importlib.import_module(module))[name]
        target.clear()
        target.update(value) if isinstance(target, dict | set) else target.extend(value)
