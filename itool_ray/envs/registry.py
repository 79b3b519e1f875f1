"""Environments by name: a new task is one module plus one entry here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from itool_ray.envs.base import Environment


def _single_turn(**kwargs: Any) -> Environment:
    from itool_ray.envs.single_turn import SingleTurnCalls

    return SingleTurnCalls(**kwargs)


def _multi_turn(**kwargs: Any) -> Environment:
    from itool_ray.envs.multi_turn import MultiTurnEnv

    return MultiTurnEnv(**kwargs)


ENVIRONMENTS: dict[str, Callable[..., Environment]] = {
    "calls": _single_turn,
    "bfcl-multi-turn": _multi_turn,
}


def make_environment(name: str, **kwargs: Any) -> Environment:
    """The environment registered as ``name`` (``ENVIRONMENTS``)."""
    try:
        factory = ENVIRONMENTS[name]
    except KeyError:
        raise ValueError(f"unknown environment {name!r}; known: {sorted(ENVIRONMENTS)}") from None
    return factory(**kwargs)


def environment_for(samples: Sequence[Any], outcome: str = "exact") -> Environment | None:
    """The environment that runs ``samples``: ``bfcl-multi-turn`` for multi-turn entries
    (``MultiTurnEntry``), with ``outcome`` (``mcts.outcome``) as its O; None for single-turn
    samples (the search's fast path, which composes its O from ``mcts.outcome`` itself).

    Raises:
        ValueError: samples of both kinds.
    """
    from itool_ray.envs.bfcl_data import MultiTurnEntry

    kinds = {isinstance(s, MultiTurnEntry) for s in samples}
    if kinds == {True, False}:
        raise ValueError(
            "samples mix multi-turn entries and single-turn samples: search them apart"
        )
    return make_environment("bfcl-multi-turn", outcome=outcome) if kinds == {True} else None
