"""Drafting one turn against the live state: the draft (:class:`_Draft`) and what a template
sees (:class:`_Ctx`), failure detection on call results, the log-in and travel-token sentences,
the template registry (:data:`_REGISTRY`, filled by the :func:`_template` decorator when the
``templates_*`` modules are imported) and the helpers templates of several classes share."""

from __future__ import annotations

import ast
import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

from bfcl.eval_checker.multi_turn_eval.func_source_code.gorilla_file_system import Directory, File

from itool_ray.calls import Call
from itool_ray.envs.bfcl_exec import ERROR_PREFIX, World
from itool_ray.envs.synth_multi_turn.vocabulary import _FS, _MSG, _TK, _TR, _TV, _TW, _c, _one


@dataclass
class _Draft:
    """One user turn and its gold: ``changes`` says the state must differ afterwards,
    ``check`` tests the intended state on the world the calls ran on."""

    text: str
    calls: list[Call]
    check: Callable[[World], bool] | None = None
    changes: bool = False


class _Ctx:
    """What a template sees: the random generator, the world after the earlier turns (read
    it, never change it), the user's facts, and what was already told to the model."""

    def __init__(self, rng: Random, world: World, facts: Mapping[str, Mapping[str, Any]]):
        self.rng = rng
        self.world = world
        self.facts = facts
        self.told: set[str] = set()
        self.pending: set[str] = set()

    def inst(self, class_name: str) -> Any:
        return self.world.instances[class_name]

    def peek(self, calls: Sequence[Call]) -> tuple[World, list[Any]]:
        """Run ``calls`` on a copy: the world after them and their parsed results."""
        world = self.world.copy()
        return world, [_value(r) for r in world.execute(calls)]

    def tell(self, fact: str) -> bool:
        """True the first time ``fact`` is told in this entry (kept if the draft is kept)."""
        if fact in self.told or fact in self.pending:
            return False
        self.pending.add(fact)
        return True


def _value(result: str) -> Any:
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(result)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return result


_FAIL_FLAGS = frozenset(
    {
        "login_status",
        "authentication_status",
        "booking_status",
        "cancel_status",
        "insurance_status",
        "verification_status",
        "success",
        "follow_status",
        "unfollow_status",
        "added_status",
        "sent_status",
        "deleted_status",
    }
)
_FAIL_VALUES = {
    "retweet_status": "Already retweeted",
    "symbol": "Stock not found",
    "zipcode": "00000",
    "nearest_airport": "Unknown",
}


def _failure(value: Any) -> str | None:
    """Why a parsed result says the call failed, or None."""
    if isinstance(value, str):  # also a dict that JSON could not write ({'error': ...})
        failed = value.startswith((ERROR_PREFIX, "Error")) or "'error':" in value
        return value[:120] if failed else None
    if isinstance(value, list):
        return next((why for v in value if (why := _failure(v))), None)
    if isinstance(value, dict):
        if "error" in value:
            return f"error: {str(value['error'])[:100]}"
        for key, v in value.items():
            if (key in _FAIL_FLAGS and v is False) or _FAIL_VALUES.get(key) == v:
                return f"{key}: {v}"
    return None


def _snapshot(world: World) -> dict[str, Any]:
    return copy.deepcopy(world.state())


def _login(ctx: _Ctx, cls: str) -> tuple[str, list[Call]]:
    """The sentence and calls that log the user into ``cls`` when it needs it, else nothing."""
    inst, facts, rng = ctx.inst(cls), ctx.facts.get(cls, {}), ctx.rng
    if cls == _TW and not inst.authenticated:
        text = _one(
            rng,
            f"Log me into Twitter first (username '{inst.username}', password '{inst.password}').",
            f"My Twitter login is '{inst.username}' with password '{inst.password}'.",
        )
        return text, [_c("authenticate_twitter", username=inst.username, password=inst.password)]
    if cls == _MSG and inst.current_user is None:
        text = _one(
            rng,
            f"I am {facts['me']}, user ID {facts['my_id']}; log me in to messaging first.",
            f"Sign me into the message app as {facts['my_id']}.",
        )
        return text, [_c("message_login", user_id=facts["my_id"])]
    user, password = facts.get("username"), facts.get("password")
    if cls == _TK and inst.current_user is None:
        text = _one(
            rng,
            f"Log into the ticket system as '{user}' with password '{password}'.",
            f"My ticketing credentials are '{user}' / '{password}', please sign in.",
        )
        return text, [_c("ticket_login", username=user, password=password)]
    if cls == _TR and not inst.authenticated:
        text = _one(
            rng,
            f"Log into my trading account first (user '{user}', password '{password}').",
            f"Sign in to trading with username '{user}' and password '{password}'.",
        )
        return text, [_c("trading_login", username=user, password=password)]
    return "", []


def _travel_access(ctx: _Ctx) -> tuple[str, list[Call], str]:
    """The sentence, calls and access token for a TravelAPI call that needs a token."""
    inst = ctx.inst(_TV)
    if inst.access_token is None:
        f = ctx.facts[_TV]
        call = _c(
            "authenticate_travel",
            client_id=f["client_id"],
            client_secret=f["client_secret"],
            refresh_token=f["refresh_token"],
            grant_type="read_write",
            user_first_name=f["first"],
            user_last_name=f["last"],
        )
        token = ctx.peek([call])[0].instances[_TV].access_token
        text = (
            f"Authenticate me with the travel service first: client ID '{f['client_id']}', "
            f"secret '{f['client_secret']}', refresh token '{f['refresh_token']}', "
            f"read_write access, for {f['first']} {f['last']}."
        )
        ctx.tell("travel_token")
        return text, [call], token
    if ctx.tell("travel_token"):
        text = _one(
            ctx.rng,
            f"My travel access token is '{inst.access_token}'.",
            f"Use my access token '{inst.access_token}'.",
        )
        return text, [], inst.access_token
    return "", [], inst.access_token


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class _Template:
    name: str
    classes: frozenset[str]
    build: Callable[[_Ctx], _Draft | None]


_REGISTRY: list[_Template] = []


def _template(name: str, *classes: str) -> Callable[[Callable[[_Ctx], _Draft | None]], Any]:
    def register(build: Callable[[_Ctx], _Draft | None]) -> Callable[[_Ctx], _Draft | None]:
        _REGISTRY.append(_Template(name, frozenset(classes), build))
        return build

    return register


# ---------------------------------------------------------------------------------------------
# Helpers the templates of several classes share: the file system's reachable places and files,
# the message contacts


@dataclass(frozen=True)
class _Place:
    """A directory reachable from the current one: how to get there and how to say it."""

    nav: tuple[Call, ...]
    where: str
    dir: Directory


def _visible(d: Directory, kind: type) -> list[str]:
    return [n for n, x in d.contents.items() if isinstance(x, kind) and not n.startswith(".")]


def _places(ctx: _Ctx) -> list[_Place]:
    here = ctx.inst(_FS)._current_dir
    out = [_Place((), ctx.rng.choice(("in the current directory", "here")), here)]
    for d in _visible(here, Directory):
        out.append(_Place((_c("cd", folder=d),), f"in the '{d}' folder", here.contents[d]))
    return out


def _pick_file(
    ctx: _Ctx, ok: Callable[[File], bool] = lambda f: True
) -> tuple[_Place, str, File] | None:
    options = [
        (p, n, p.dir.contents[n])
        for p in _places(ctx)
        for n in _visible(p.dir, File)
        if ok(p.dir.contents[n])
    ]
    return ctx.rng.choice(options) if options else None


def _two_files(ctx: _Ctx) -> tuple[_Place, str, str] | None:
    options = [p for p in _places(ctx) if len(_visible(p.dir, File)) >= 2]
    if not options:
        return None
    place = ctx.rng.choice(options)
    a, b = ctx.rng.sample(_visible(place.dir, File), 2)
    return place, a, b


def _msg_people(ctx: _Ctx) -> list[str]:
    me = ctx.facts[_MSG]["me"]
    return [n for n in ctx.inst(_MSG).user_map if n != me]
