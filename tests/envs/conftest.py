"""Shared helpers for the BFCL multi-turn environment tests: the entries, BFCL's own
executor on trusted strings, and a guard that restores the class modules' globals."""

from __future__ import annotations

import copy
import importlib
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from bfcl.eval_checker.multi_turn_eval import multi_turn_utils

from itool_ray.calls import Call
from itool_ray.envs import MultiTurnEntry, load_all_multi_turn

_TAGS = itertools.count()
CLASS_MODULES = [
    importlib.import_module(m) for m in multi_turn_utils.CLASS_FILE_PATH_MAPPING.values()
] + [importlib.import_module("bfcl.eval_checker.multi_turn_eval.func_source_code.long_context")]


@pytest.fixture(scope="session")
def all_entries() -> dict[str, tuple[MultiTurnEntry, ...]]:
    return load_all_multi_turn()


@pytest.fixture(scope="session")
def entries_by_id(all_entries) -> dict[str, MultiTurnEntry]:
    return {e.id: e for es in all_entries.values() for e in es}


def new_tag() -> str:
    """A fresh model name for BFCL's executor (it caches instances in its module globals)."""
    return f"itooltest{next(_TAGS)}"


def clear_bfcl_instances(tag: str) -> None:
    cached = vars(multi_turn_utils)
    for name in [k for k in cached if k.startswith(tag + "_")]:
        del cached[name]


def bfcl_execute(entry: MultiTurnEntry, texts: Sequence[str], tag: str) -> tuple[list[str], dict]:
    """BFCL's own (eval-based) executor, on trusted strings only."""
    return multi_turn_utils.execute_multi_turn_func_call(
        list(texts),
        entry.initial_config,
        list(entry.involved_classes),
        tag,
        entry.id,
        long_context=entry.long_context,
    )


def bfcl_text(call: Call) -> str:
    """A gold-derived call as the string BFCL's decoder would produce (repr of values)."""
    return f"{call.name}(" + ", ".join(f"{k}={v!r}" for k, v in call.arguments.items()) + ")"


def class_globals() -> dict[tuple[str, str], Any]:
    """A deep copy of the mutable module-level values of BFCL's class modules."""
    return {
        (m.__name__, k): copy.deepcopy(v)
        for m in CLASS_MODULES
        for k, v in vars(m).items()
        if not k.startswith("__") and isinstance(v, dict | list | set)
    }


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
