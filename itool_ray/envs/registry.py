"""Environments by name: a new task is one module plus one entry here."""

from __future__ import annotations

from collections.abc import Callable
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
