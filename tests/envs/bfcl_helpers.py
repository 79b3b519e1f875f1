"""Helpers for the BFCL multi-turn environment tests: BFCL's own (eval-based) executor on
trusted strings, and snapshots of the class modules' globals."""

from __future__ import annotations

import copy
import importlib
import itertools
from collections.abc import Sequence
from typing import Any

from bfcl.eval_checker.multi_turn_eval import multi_turn_utils

from itool_ray.calls import Call
from itool_ray.envs import MultiTurnEntry

# Gold calls that are not valid Python (all in multi_turn_composite: a typographic apostrophe
# inside a quoted string, an unclosed quote or parenthesis, `passport_number: 'P...'`, an
# empty call string). BFCL's eval returns the SyntaxError text for them and runs nothing; so
# does the safe path: they round-trip too (same result text, same state), listed here
# because no model can answer them (test_envs_bfcl_score.py).
SYNTAX_ERROR_GOLD = {
    "multi_turn_composite_8": "invalid character",
    "multi_turn_composite_11": "was never closed",
    "multi_turn_composite_14": "unterminated string literal",
    "multi_turn_composite_17": "unterminated string literal",
    "multi_turn_composite_18": "invalid character",
    "multi_turn_composite_22": "invalid character",
    "multi_turn_composite_26": "unterminated string literal",
    "multi_turn_composite_30": "invalid character",
    "multi_turn_composite_43": "invalid character",
    "multi_turn_composite_45": "unterminated string literal",
    "multi_turn_composite_153": "positional argument follows keyword argument",
    "multi_turn_composite_154": "positional argument follows keyword argument",
    "multi_turn_composite_173": "was never closed",
    "multi_turn_composite_174": "invalid syntax. Perhaps you forgot a comma?",
    "multi_turn_composite_184": "unterminated string literal",
    "multi_turn_composite_185": "invalid syntax",
}

_TAGS = itertools.count()
CLASS_MODULES = [
    importlib.import_module(m) for m in multi_turn_utils.CLASS_FILE_PATH_MAPPING.values()
] + [importlib.import_module("bfcl.eval_checker.multi_turn_eval.func_source_code.long_context")]


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
