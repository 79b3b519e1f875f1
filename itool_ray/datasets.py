"""Named data sets a job config can ask for: ``synth``, ``toolace:<path>``, ``toolace-hub``,
``seal-tools/<split>``, ``api-bank/<split>``, ``bfcl/<category>``, and the multi-turn sets
``bfcl/multi_turn_<part>`` and ``synth-multi-turn`` (executable multi-turn tasks,
:class:`~itool_ray.envs.MultiTurnEntry` records, not samples: :func:`is_multi_turn_set`).

Kept apart from the pure loaders so configs speak one small language for every source.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, get_args

from itool_ray.data import (
    API_BANK_SPLITS,
    BFCL_CATEGORIES,
    SEAL_SPLITS,
    LoadResult,
    Sample,
    load_api_bank,
    load_bfcl,
    load_seal_tools,
    load_toolace,
    load_toolace_hub,
    synthesize,
)
from itool_ray.envs.bfcl_data import MULTI_TURN_CATEGORIES, MultiTurnEntry, load_multi_turn
from itool_ray.envs.synth_multi_turn import synthesize_multi_turn

log = logging.getLogger(__name__)
T = TypeVar("T")

KNOWN = (
    "synth",
    "toolace:<path>",
    "toolace-hub[:<name>]",
    *(f"seal-tools/{s}" for s in SEAL_SPLITS),
    *(f"api-bank/{s}" for s in API_BANK_SPLITS),
    "bfcl/<category>",
    *(f"bfcl/{c}" for c in MULTI_TURN_CATEGORIES),
    "synth-multi-turn",
)


def is_multi_turn_set(spec: str) -> bool:
    """Whether ``spec`` loads multi-turn entries (:class:`MultiTurnEntry`), not samples."""
    return spec == "synth-multi-turn" or (
        spec.startswith("bfcl/") and spec.split("/", 1)[1] in MULTI_TURN_CATEGORIES
    )


Draw = Literal["first", "spread"]
"""How ``limit`` records are taken from a loaded set: its first ones, in the set's order, or
drawn at random over all of it with the seed and kept in the set's order (a set grouped by
topic, as BFCL's categories are, is then represented whole)."""
DRAWS: tuple[str, ...] = get_args(Draw)


def draw(items: Sequence[T], limit: int | None, *, how: str = "first", seed: int = 0) -> list[T]:
    """``limit`` of ``items`` (all: ``None`` or more than there are) as ``how`` (:data:`Draw`)
    says."""
    if how not in DRAWS:
        raise ValueError(f"unknown draw {how!r}; expected one of: {', '.join(DRAWS)}")
    if limit is None or limit >= len(items):
        return list(items)
    if how == "first":
        return list(items[:limit])
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), limit))]


def load_named(
    spec: str,
    *,
    limit: int | None = None,
    seed: int = 0,
    on_error: str = "skip",
    synth: dict[str, Any] | None = None,
    how: str = "first",
) -> list[Sample] | list[MultiTurnEntry]:
    """Load the data set ``spec``: ``limit`` of its records as ``how`` says (:func:`draw`,
    with ``seed``); ``synth`` and ``synth-multi-turn`` make ``limit`` of them, 1000 by
    default, from ``seed``.

    Malformed records are skipped and counted (``on_error="skip"``) or stop the load
    (``"raise"``); the count is logged. ``synth``: ``SynthConfig`` fields for ``synth``
    (e.g. ``max_candidates``), ignored by the other sources.
    """
    if spec == "synth":
        num = limit if limit is not None else 1000
        result = synthesize(num_samples=num, seed=seed, **dict(synth or {}))
        log.info("%s", result.report.summary())
        return list(result.samples)
    if spec == "synth-multi-turn":
        return synthesize_multi_turn(limit if limit is not None else 1000, seed=seed)
    if is_multi_turn_set(spec):  # BFCL v3 multi-turn: a malformed entry always raises
        return draw(load_multi_turn(spec.split("/", 1)[1]), limit, how=how, seed=seed)
    if spec.startswith("toolace:"):
        loaded: LoadResult = load_toolace(spec.split(":", 1)[1], on_error=on_error)
    elif spec == "toolace-hub" or spec.startswith("toolace-hub:"):
        name = spec.split(":", 1)[1] if ":" in spec else "Team-ACE/ToolACE"
        loaded = load_toolace_hub(name, on_error=on_error)
    elif spec.startswith("seal-tools/") and spec.split("/", 1)[1] in SEAL_SPLITS:
        loaded = load_seal_tools(spec.split("/", 1)[1], on_error=on_error)
    elif spec.startswith("api-bank/") and spec.split("/", 1)[1] in API_BANK_SPLITS:
        loaded = load_api_bank(spec.split("/", 1)[1], on_error=on_error)
    elif spec.startswith("bfcl/") and spec.split("/", 1)[1] in BFCL_CATEGORIES:
        loaded = load_bfcl(spec.split("/", 1)[1], on_error=on_error)
    else:
        raise ValueError(f"unknown data set {spec!r}; expected one of: {', '.join(KNOWN)}")
    return draw(loaded.samples, limit, how=how, seed=seed)
