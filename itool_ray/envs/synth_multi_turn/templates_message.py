"""Templates of ``MessageAPI``, and the one sending a file's line (registered at import, in this
order)."""

from __future__ import annotations

import re

from itool_ray.envs.bfcl_exec import World
from itool_ray.envs.synth_multi_turn.templating import (
    _Ctx,
    _Draft,
    _join,
    _login,
    _msg_people,
    _pick_file,
    _template,
)
from itool_ray.envs.synth_multi_turn.vocabulary import _FS, _MESSAGES, _MSG, _PEOPLE, _c, _one


@_template("msg.send", _MSG)
def _msg_send(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _MSG)
    name, message = ctx.rng.choice(_msg_people(ctx)), ctx.rng.choice(_MESSAGES)
    uid = ctx.inst(_MSG).user_map[name]
    text = _one(
        ctx.rng,
        f"Send {name} a message saying '{message}'",
        f"Please message {name}: '{message}'",
        f"Let {name} know '{message}' via a direct message",
    )
    calls = [
        *login,
        _c("get_user_id", user=name),
        _c("send_message", receiver_id=uid, message=message),
    ]
    return _Draft(
        _join(pre, text), calls, lambda w: w.instances[_MSG].inbox[-1] == {uid: message}, True
    )


@_template("msg.add_send", _MSG)
def _msg_add_send(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_MSG)
    name = ctx.rng.choice([p for p in _PEOPLE if p not in inst.user_map])
    message = ctx.rng.choice(_MESSAGES)
    new_id = f"USR{inst.user_count + 1:03d}"
    pre, login = _login(ctx, _MSG)
    text = _one(
        ctx.rng,
        f"Add {name} as a new contact and send them '{message}'",
        f"{name} just joined: add them to my contacts and message them '{message}'",
    )
    calls = [
        *login,
        _c("add_contact", user_name=name),
        _c("send_message", receiver_id=new_id, message=message),
    ]

    def check(w: World) -> bool:
        api = w.instances[_MSG]
        return api.user_map.get(name) == new_id and api.inbox[-1] == {new_id: message}

    return _Draft(_join(pre, text), calls, check, True)


@_template("msg.add_contact", _MSG)
def _msg_add_contact(ctx: _Ctx) -> _Draft | None:
    name = ctx.rng.choice([p for p in _PEOPLE if p not in ctx.inst(_MSG).user_map])
    text = _one(ctx.rng, f"Add {name} to my contacts.", f"Please create a contact for {name}.")
    calls = [_c("add_contact", user_name=name)]
    return _Draft(text, calls, lambda w: name in w.instances[_MSG].user_map, True)


@_template("msg.view_sent", _MSG)
def _msg_view_sent(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _MSG)
    text = _one(ctx.rng, "Show me every message I've sent so far.", "List my sent messages.")
    return _Draft(_join(pre, text), [*login, _c("view_messages_sent")])


@_template("msg.search", _MSG)
def _msg_search(ctx: _Ctx) -> _Draft | None:
    inbox = ctx.inst(_MSG).inbox
    words = sorted({w for m in inbox for t in m.values() for w in re.findall(r"[A-Za-z]{5,}", t)})
    if not words:
        return None
    pre, login = _login(ctx, _MSG)
    word = ctx.rng.choice(words)
    text = _one(
        ctx.rng,
        f"Find my messages that mention '{word}'.",
        f"Search my messages for the keyword '{word}'.",
    )
    return _Draft(_join(pre, text), [*login, _c("search_messages", keyword=word)])


@_template("msg.delete_last", _MSG)
def _msg_delete_last(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_MSG)
    by_id = {uid: n for n, uid in inst.user_map.items()}
    names = sorted({by_id[r] for m in inst.inbox for r in m if r in by_id})
    if not names:
        return None
    pre, login = _login(ctx, _MSG)
    name = ctx.rng.choice(names)
    uid = inst.user_map[name]
    text = _one(
        ctx.rng,
        f"Delete the latest message I sent to {name}.",
        f"Retract my most recent message to {name}.",
    )
    calls = [*login, _c("get_user_id", user=name), _c("delete_message", receiver_id=uid)]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("msg.stats", _MSG)
def _msg_stats(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _MSG)
    text = _one(
        ctx.rng,
        "How many messages have I sent, and to how many contacts?",
        "Give me my messaging statistics.",
    )
    return _Draft(_join(pre, text), [*login, _c("get_message_stats")])


@_template("msg.users", _MSG)
def _msg_users(ctx: _Ctx) -> _Draft | None:
    text = _one(ctx.rng, "Who is in this workspace?", "List all the users I can message.")
    return _Draft(text, [_c("list_users")])


@_template("msg.lookup", _MSG)
def _msg_lookup(ctx: _Ctx) -> _Draft | None:
    name = ctx.rng.choice(_msg_people(ctx))
    text = _one(ctx.rng, f"What's {name}'s user ID?", f"Look up the user ID of {name}.")
    return _Draft(text, [_c("get_user_id", user=name)])


@_template("fs_msg.send_file", _FS, _MSG)
def _fs_msg_send_file(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx, lambda f: 0 < len(f.content) <= 400)):
        return None
    place, name, file = pick
    pre, login = _login(ctx, _MSG)
    person = ctx.rng.choice(_msg_people(ctx))
    uid = ctx.inst(_MSG).user_map[person]
    text = _one(
        ctx.rng,
        f"Send {person} the contents of '{name}' {place.where} as a message.",
        f"Message {person} the full text of '{name}' {place.where}.",
    )
    calls = [
        *login,
        *place.nav,
        _c("cat", file_name=name),
        _c("get_user_id", user=person),
        _c("send_message", receiver_id=uid, message=file.content),
    ]
    return _Draft(_join(pre, text), calls, changes=True)
