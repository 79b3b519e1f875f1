"""Templates of ``TicketAPI``, and the one filing a ticket from a file (registered at import, in
this order)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from itool_ray.envs.synth_multi_turn.templating import (
    _Ctx,
    _Draft,
    _join,
    _login,
    _pick_file,
    _template,
)
from itool_ray.envs.synth_multi_turn.vocabulary import (
    _FS,
    _RESOLUTIONS,
    _TICKET_DESCRIPTIONS,
    _TICKET_TITLES,
    _TK,
    _c,
    _one,
)


def _tickets(ctx: _Ctx, ok: Callable[[Mapping[str, Any]], bool] = lambda t: True) -> list[int]:
    return [t["id"] for t in ctx.inst(_TK).ticket_queue if ok(t)]


@_template("tk.create", _TK)
def _tk_create(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TK)
    title, desc = ctx.rng.choice(_TICKET_TITLES), ctx.rng.choice(_TICKET_DESCRIPTIONS)
    p = ctx.rng.randint(1, 5)
    text = _one(
        ctx.rng,
        f"Open a ticket titled '{title}' with the description '{desc}' and priority {p}.",
        f"File a support ticket '{title}' (priority {p}): '{desc}'",
    )
    calls = [*login, _c("create_ticket", title=title, description=desc, priority=p)]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tk.get", _TK)
def _tk_get(ctx: _Ctx) -> _Draft | None:
    if not (ids := _tickets(ctx)):
        return None
    i = ctx.rng.choice(ids)
    text = _one(ctx.rng, f"What's the status of ticket {i}?", f"Pull up the details of ticket {i}.")
    return _Draft(text, [_c("get_ticket", ticket_id=i)])


@_template("tk.close", _TK)
def _tk_close(ctx: _Ctx) -> _Draft | None:
    if not (ids := _tickets(ctx, lambda t: t["status"] != "Closed")):
        return None
    i = ctx.rng.choice(ids)
    text = _one(ctx.rng, f"Close ticket {i}.", f"Ticket {i} is no longer needed, please close it.")
    return _Draft(text, [_c("close_ticket", ticket_id=i)], changes=True)


@_template("tk.resolve", _TK)
def _tk_resolve(ctx: _Ctx) -> _Draft | None:
    if not (ids := _tickets(ctx, lambda t: t["status"] not in ("Resolved", "Closed"))):
        return None
    i, note = ctx.rng.choice(ids), ctx.rng.choice(_RESOLUTIONS)
    text = _one(
        ctx.rng,
        f"Mark ticket {i} as resolved with the note '{note}'",
        f"Resolve ticket {i}; resolution: '{note}'",
    )
    return _Draft(text, [_c("resolve_ticket", ticket_id=i, resolution=note)], changes=True)


@_template("tk.priority", _TK)
def _tk_priority(ctx: _Ctx) -> _Draft | None:
    if not (ids := _tickets(ctx, lambda t: t["status"] != "Closed")):
        return None
    i = ctx.rng.choice(ids)
    current = next(t["priority"] for t in ctx.inst(_TK).ticket_queue if t["id"] == i)
    p = ctx.rng.choice([x for x in range(1, 6) if x != current])
    text = _one(
        ctx.rng,
        f"Change the priority of ticket {i} to {p}.",
        f"Set ticket {i} to priority level {p}.",
    )
    return _Draft(text, [_c("edit_ticket", ticket_id=i, updates={"priority": p})], changes=True)


@_template("tk.retitle", _TK)
def _tk_retitle(ctx: _Ctx) -> _Draft | None:
    if not (ids := _tickets(ctx)):
        return None
    i = ctx.rng.choice(ids)
    title = ctx.rng.choice(_TICKET_TITLES) + ctx.rng.choice((" (urgent)", " again", " - follow up"))
    text = _one(
        ctx.rng, f"Rename ticket {i} to '{title}'.", f"Update the title of ticket {i} to '{title}'."
    )
    return _Draft(text, [_c("edit_ticket", ticket_id=i, updates={"title": title})], changes=True)


@_template("tk.mine", _TK)
def _tk_mine(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TK)
    status = ctx.rng.choice((None, "Open", "Closed", "Resolved"))
    if status is None:
        text = _one(ctx.rng, "List all of my tickets.", "Show every ticket I have created.")
        return _Draft(_join(pre, text), [*login, _c("get_user_tickets")])
    text = _one(
        ctx.rng, f"List my {status.lower()} tickets.", f"Which of my tickets are {status.lower()}?"
    )
    return _Draft(_join(pre, text), [*login, _c("get_user_tickets", status=status)])


@_template("tk.logout", _TK)
def _tk_logout(ctx: _Ctx) -> _Draft | None:
    if ctx.inst(_TK).current_user is None:
        return None
    text = _one(ctx.rng, "Log me out of the ticket system.", "Sign out of ticketing, please.")
    return _Draft(text, [_c("logout")], changes=True)


@_template("fs_tk.ticket_from_file", _FS, _TK)
def _fs_tk_ticket_from_file(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx, lambda f: 0 < len(f.content) <= 400)):
        return None
    place, name, file = pick
    pre, login = _login(ctx, _TK)
    title, p = ctx.rng.choice(_TICKET_TITLES), ctx.rng.randint(1, 5)
    text = _one(
        ctx.rng,
        f"Open a ticket titled '{title}' at priority {p} whose description is the text of "
        f"'{name}' {place.where}.",
        f"Create a priority {p} ticket '{title}' and use the contents of '{name}' "
        f"{place.where} as its description.",
    )
    calls = [
        *login,
        *place.nav,
        _c("cat", file_name=name),
        _c("create_ticket", title=title, description=file.content, priority=p),
    ]
    return _Draft(_join(pre, text), calls, changes=True)
