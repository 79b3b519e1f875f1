"""Templates of ``TravelAPI``, and those joining it to ``MathAPI`` and ``TicketAPI`` (registered at
import, in this order)."""

from __future__ import annotations

from itool_ray.calls import Call
from itool_ray.envs.synth_multi_turn.scenarios import _airports, _flight_routes
from itool_ray.envs.synth_multi_turn.templating import (
    _Ctx,
    _Draft,
    _join,
    _login,
    _template,
    _travel_access,
)
from itool_ray.envs.synth_multi_turn.vocabulary import (
    _CURRENCIES,
    _INSURANCE,
    _MATH,
    _TK,
    _TV,
    _an,
    _c,
    _date,
    _one,
)

_CLASSES = ("economy", "business", "first")


def _route(ctx: _Ctx) -> tuple[str, str, str, str]:
    frm, to = ctx.rng.choice(_flight_routes())
    return frm, to, _date(ctx.rng), ctx.rng.choice(_CLASSES)


def _fare(frm: str, to: str, date: str, cls: str) -> Call:
    return _c("get_flight_cost", travel_from=frm, travel_to=to, travel_date=date, travel_class=cls)


@_template("tv.fare_cities", _TV)
def _tv_fare_cities(ctx: _Ctx) -> _Draft | None:
    airports = _airports()
    routes = set(_flight_routes())
    pairs = [(a, b) for a in airports for b in airports if (airports[a], airports[b]) in routes]
    a, b = ctx.rng.choice(pairs)
    date, cls = _date(ctx.rng), ctx.rng.choice(_CLASSES)
    text = _one(
        ctx.rng,
        f"How much is {_an(cls)} flight from {a} to {b} on {date}?",
        f"Price {_an(cls)} ticket from {a} to {b} for {date}, using the nearest airports.",
    )
    calls = [
        _c("get_nearest_airport_by_city", location=a),
        _c("get_nearest_airport_by_city", location=b),
        _fare(airports[a], airports[b], date, cls),
    ]
    return _Draft(text, calls)


@_template("tv.fare_codes", _TV)
def _tv_fare_codes(ctx: _Ctx) -> _Draft | None:
    frm, to, date, cls = _route(ctx)
    text = _one(
        ctx.rng,
        f"What's the {cls}-class fare from {frm} to {to} on {date}?",
        f"Check the cost of flying {cls} class {frm} to {to} on {date}.",
    )
    return _Draft(text, [_fare(frm, to, date, cls)])


@_template("tv.book", _TV)
def _tv_book(ctx: _Ctx) -> _Draft | None:
    pre, login, token = _travel_access(ctx)
    frm, to, date, cls = _route(ctx)
    cost = ctx.peek([_fare(frm, to, date, cls)])[1][0]["travel_cost_list"][0]
    cards = ctx.inst(_TV).credit_card_list
    usable = sorted(c for c, v in cards.items() if v["balance"] >= cost)
    if not usable:
        return None
    card = ctx.rng.choice(usable)
    text = _one(
        ctx.rng,
        f"Book me {_an(cls)} seat from {frm} to {to} on {date}, paid with card {card}.",
        f"Reserve {_an(cls)} flight {frm} to {to} for {date} and charge card {card}.",
    )
    book = _c(
        "book_flight",
        access_token=token,
        card_id=card,
        travel_date=date,
        travel_from=frm,
        travel_to=to,
        travel_class=cls,
        travel_cost=cost,
    )
    return _Draft(_join(pre, text), [*login, _fare(frm, to, date, cls), book], changes=True)


def _bookings(ctx: _Ctx) -> list[str]:
    return sorted(ctx.inst(_TV).booking_record)


@_template("tv.cancel", _TV)
def _tv_cancel(ctx: _Ctx) -> _Draft | None:
    if not (ids := _bookings(ctx)):
        return None
    pre, login, token = _travel_access(ctx)
    b = ctx.rng.choice(ids)
    text = _one(ctx.rng, f"Cancel my booking {b}.", f"I can't make trip {b}; cancel that booking.")
    calls = [*login, _c("cancel_booking", access_token=token, booking_id=b)]
    return _Draft(_join(pre, text), calls, lambda w: b not in w.instances[_TV].booking_record, True)


@_template("tv.invoice", _TV)
def _tv_invoice(ctx: _Ctx) -> _Draft | None:
    if not (ids := _bookings(ctx)):
        return None
    pre, login, token = _travel_access(ctx)
    b = ctx.rng.choice(ids)
    text = _one(
        ctx.rng, f"Get me the invoice for booking {b}.", f"Retrieve the invoice of trip {b}."
    )
    calls = [*login, _c("retrieve_invoice", access_token=token, booking_id=b)]
    return _Draft(_join(pre, text), calls)


@_template("tv.card_balance", _TV)
def _tv_card_balance(ctx: _Ctx) -> _Draft | None:
    pre, login, token = _travel_access(ctx)
    card = ctx.rng.choice(sorted(ctx.inst(_TV).credit_card_list))
    text = _one(
        ctx.rng, f"What's the balance on card {card}?", f"How much is left on my card {card}?"
    )
    calls = [*login, _c("get_credit_card_balance", access_token=token, card_id=card)]
    return _Draft(_join(pre, text), calls)


@_template("tv.budget", _TV)
def _tv_budget(ctx: _Ctx) -> _Draft | None:
    pre, login, token = _travel_access(ctx)
    limit = float(ctx.rng.randrange(200, 900, 25))
    if limit == ctx.inst(_TV).budget_limit:
        return None
    text = _one(
        ctx.rng,
        f"Set my travel budget limit to ${limit:.0f}.",
        f"Cap my travel budget at {limit:.0f} USD.",
    )
    calls = [*login, _c("set_budget_limit", access_token=token, budget_limit=limit)]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tv.exchange", _TV)
def _tv_exchange(ctx: _Ctx) -> _Draft | None:
    cur, value = ctx.rng.choice(_CURRENCIES), float(ctx.rng.randrange(20, 5000, 5))
    base, target = ("USD", cur) if ctx.rng.random() < 0.5 else (cur, "USD")
    text = _one(
        ctx.rng,
        f"How much is {value:.0f} {base} in {target}?",
        f"Convert {value:.0f} {base} to {target} for me.",
    )
    call = _c("compute_exchange_rate", base_currency=base, target_currency=target, value=value)
    return _Draft(text, [call])


@_template("tv.register_card", _TV)
def _tv_register_card(ctx: _Ctx) -> _Draft | None:
    pre, login, token = _travel_access(ctx)
    f = ctx.facts[_TV]
    number = "-".join(f"{ctx.rng.randint(0, 9999):04d}" for _ in range(4))
    expiry = f"{ctx.rng.randint(1, 12):02d}/{ctx.rng.randint(2027, 2032)}"
    cvv, holder = ctx.rng.randint(100, 999), f"{f['first']} {f['last']}"
    text = _one(
        ctx.rng,
        f"Register my card {number}, expiring {expiry}, name {holder}, CVV {cvv}.",
        f"Add a new credit card: number {number}, expiry {expiry}, holder {holder}, "
        f"security code {cvv}.",
    )
    call = _c(
        "register_credit_card",
        access_token=token,
        card_number=number,
        expiration_date=expiry,
        cardholder_name=holder,
        card_verification_number=cvv,
    )
    return _Draft(_join(pre, text), [*login, call], changes=True)


@_template("tv.verify", _TV)
def _tv_verify(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TV)
    first, last = inst.user_first_name, inst.user_last_name
    if first is None:
        return None
    year, month, day = ctx.rng.randint(1950, 1999), ctx.rng.randint(1, 12), ctx.rng.randint(1, 28)
    dob = f"{year}-{month:02d}-{day:02d}"
    passport = f"US{ctx.rng.randint(10**6, 10**7 - 1)}"
    text = _one(
        ctx.rng,
        f"Verify my traveler details: {first} {last}, born {dob}, passport {passport}.",
        f"Check that I can travel: name {first} {last}, date of birth {dob}, passport "
        f"number {passport}.",
    )
    call = _c(
        "verify_traveler_information",
        first_name=first,
        last_name=last,
        date_of_birth=dob,
        passport_number=passport,
    )
    return _Draft(text, [call])


@_template("tv.insurance", _TV)
def _tv_insurance(ctx: _Ctx) -> _Draft | None:
    if not (ids := _bookings(ctx)):
        return None
    pre, login, token = _travel_access(ctx)
    b, kind = ctx.rng.choice(ids), ctx.rng.choice(_INSURANCE)
    cost = float(ctx.rng.randrange(20, 180, 5))
    card = ctx.rng.choice(sorted(ctx.inst(_TV).credit_card_list))
    text = _one(
        ctx.rng,
        f"Buy {kind} insurance for booking {b} at ${cost:.0f}, charged to card {card}.",
        f"Add {kind} travel insurance (${cost:.0f}) to trip {b}; pay with card {card}.",
    )
    call = _c(
        "purchase_insurance",
        access_token=token,
        insurance_type=kind,
        booking_id=b,
        insurance_cost=cost,
        card_id=card,
    )
    return _Draft(_join(pre, text), [*login, call], changes=True)


@_template("tv.support", _TV)
def _tv_support(ctx: _Ctx) -> _Draft | None:
    if not (ids := _bookings(ctx)):
        return None
    b = ctx.rng.choice(ids)
    note = ctx.rng.choice(
        ("I need to change my seat.", "My name is misspelled on the ticket.", "Can I add a bag?")
    )
    text = _one(
        ctx.rng,
        f"Contact customer support about booking {b} with the message '{note}'",
        f"Tell travel support '{note}' regarding booking {b}.",
    )
    return _Draft(text, [_c("contact_customer_support", booking_id=b, message=note)])


@_template("tv.cards", _TV)
def _tv_cards(ctx: _Ctx) -> _Draft | None:
    text = _one(ctx.rng, "List all my registered credit cards.", "Which cards do I have on file?")
    return _Draft(text, [_c("get_all_credit_cards")])


@_template("tv_math.group_fare", _TV, _MATH)
def _tv_math_group_fare(ctx: _Ctx) -> _Draft | None:
    frm, to, date, cls = _route(ctx)
    n = ctx.rng.randint(2, 6)
    cost = ctx.peek([_fare(frm, to, date, cls)])[1][0]["travel_cost_list"][0]
    text = _one(
        ctx.rng,
        f"What would {n} {cls}-class tickets from {frm} to {to} on {date} cost in total?",
        f"We're {n} people flying {cls} class {frm} to {to} on {date}. What's the total fare?",
    )
    return _Draft(text, [_fare(frm, to, date, cls), _c("multiply", a=cost, b=n)])


@_template("tv_tk.refund_ticket", _TV, _TK)
def _tv_tk_refund_ticket(ctx: _Ctx) -> _Draft | None:
    if not (ids := _bookings(ctx)):
        return None
    pre_tv, login_tv, token = _travel_access(ctx)
    pre_tk, login_tk = _login(ctx, _TK)
    b, p = ctx.rng.choice(ids), ctx.rng.randint(1, 5)
    title, desc = f"Refund for booking {b}", "Please refund the cancelled flight."
    text = _one(
        ctx.rng,
        f"Cancel booking {b} and open a ticket titled '{title}' with the description "
        f"'{desc}' at priority {p}.",
        f"Call off trip {b}, then file a priority {p} ticket '{title}' saying '{desc}'",
    )
    calls = [
        *login_tv,
        _c("cancel_booking", access_token=token, booking_id=b),
        *login_tk,
        _c("create_ticket", title=title, description=desc, priority=p),
    ]
    return _Draft(_join(pre_tv, pre_tk, text), calls, changes=True)
