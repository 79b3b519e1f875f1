"""Scenarios: one random, valid ``_load_scenario`` input per stateful class, and the facts the
user knows (credentials) that the config does not show the model; plus the routes, airports
and city distances the travel and vehicle classes know (probed once)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from random import Random
from typing import Any

from itool_ray.envs.bfcl_exec import load_instances
from itool_ray.envs.synth_multi_turn.vocabulary import (
    _CAR_CITIES,
    _COMPANIES,
    _DIRS,
    _DOORS,
    _EXTS,
    _FS,
    _ITEMS,
    _MESSAGES,
    _MSG,
    _PEOPLE,
    _ROOTS,
    _STEM_TAGS,
    _STEMS,
    _SURNAMES,
    _TAGS,
    _TICKET_DESCRIPTIONS,
    _TICKET_TITLES,
    _TK,
    _TR,
    _TRAVEL_CITIES,
    _TV,
    _TW,
    _TWEETS,
    _VC,
    _date,
    _handle,
    _line,
    _password,
)

Scenario = tuple[dict[str, Any], dict[str, Any]]


def _file_name(rng: Random, taken: set[str]) -> str:
    while True:
        name = rng.choice(_STEMS) + rng.choice(_STEM_TAGS) + rng.choice(_EXTS)
        if name not in taken:
            taken.add(name)
            return name


def _file_content(rng: Random, name: str) -> str:
    if name.endswith(".csv"):
        rows = [
            f"{item},{rng.randint(1, 60)},{rng.randint(1, 99)}.{rng.randint(0, 99):02d}"
            for item in rng.sample(_ITEMS, rng.randint(2, 5))
        ]
        return "\n".join(["item,quantity,price", *rows])
    lines = list(dict.fromkeys(_line(rng) for _ in range(rng.randint(2, 6))))
    return "\n".join(lines)


def _fs_scenario(rng: Random) -> Scenario:
    taken: set[str] = set()

    def files(count: int) -> dict[str, Any]:
        out = {}
        for _ in range(count):
            name = _file_name(rng, taken)
            out[name] = {"type": "file", "content": _file_content(rng, name)}
        return out

    contents = files(rng.randint(1, 3))
    for d in rng.sample(_DIRS, rng.randint(1, 3)):
        sub = files(rng.randint(0, 3))
        if rng.random() < 0.3:
            inner = rng.choice([x for x in _DIRS if x != d])
            sub[inner] = {"type": "directory", "contents": files(rng.randint(0, 2))}
        contents[d] = {"type": "directory", "contents": sub}
    if rng.random() < 0.25:
        contents[rng.choice((".env", ".settings", ".cache_notes"))] = {
            "type": "file",
            "content": _line(rng),
        }
    return {"root": {rng.choice(_ROOTS): {"type": "directory", "contents": contents}}}, {}


def _message_scenario(rng: Random) -> Scenario:
    names = rng.sample(_PEOPLE, rng.randint(3, 6))
    user_map = {n: f"USR{i:03d}" for i, n in enumerate(names, start=1)}
    me = rng.choice(names)
    others = [user_map[n] for n in names if n != me]
    inbox = [{rng.choice(others): rng.choice(_MESSAGES)} for _ in range(rng.randint(0, 4))]
    config = {
        "random_seed": rng.randint(1, 999_999),
        "user_count": len(names),
        "user_map": user_map,
        "inbox": inbox,
        "message_count": len(inbox),
        "current_user": user_map[me] if rng.random() < 0.35 else None,
    }
    return config, {"me": me, "my_id": user_map[me]}


def _twitter_scenario(rng: Random) -> Scenario:
    handles = list(dict.fromkeys(_handle(rng) for _ in range(7)))
    me, others = handles[0], handles[1:]
    tweets = {}
    for i, text in enumerate(rng.sample(_TWEETS, rng.randint(1, 4))):
        tweets[str(i)] = {
            "id": i,
            "username": me if rng.random() < 0.4 else rng.choice(others),
            "content": text,
            "tags": rng.sample(_TAGS, rng.randint(0, 2)),
            "mentions": [],
        }
    config = {
        "username": me,
        "password": _password(rng),
        "authenticated": rng.random() < 0.3,
        "tweets": tweets,
        "comments": {},
        "retweets": {},
        "following_list": rng.sample(others, rng.randint(1, 3)),
        "tweet_counter": len(tweets),
    }
    return config, {"others": others}


def _ticket_scenario(rng: Random) -> Scenario:
    user = f"{rng.choice(_PEOPLE).lower()}{rng.randint(1, 99)}"
    other = f"{rng.choice(_PEOPLE).lower()}{rng.randint(100, 199)}"
    base = rng.randint(1, 900)
    queue = []
    for i, title in enumerate(rng.sample(_TICKET_TITLES, rng.randint(0, 4))):
        queue.append(
            {
                "id": base + i,
                "title": title,
                "description": rng.choice(_TICKET_DESCRIPTIONS),
                "status": rng.choice(("Open", "Open", "In Progress", "Resolved", "Closed")),
                "priority": rng.randint(1, 5),
                "created_by": user if rng.random() < 0.7 else other,
            }
        )
    config = {
        "ticket_queue": queue,
        "ticket_counter": base + len(queue),
        "current_user": user if rng.random() < 0.4 else None,
    }
    return config, {"username": user, "password": _password(rng)}


def _trading_scenario(rng: Random) -> Scenario:
    symbols = rng.sample(sorted(_COMPANIES.values()), rng.randint(6, 11))
    stocks = {}
    for s in symbols:
        price = round(rng.uniform(15, 900), 2)
        stocks[s] = {
            "price": price,
            "percent_change": round(rng.uniform(-3, 3), 2),
            "volume": round(rng.uniform(0.3, 4), 3),
            "MA(5)": round(price * rng.uniform(0.97, 1.03), 2),
            "MA(20)": round(price * rng.uniform(0.94, 1.06), 2),
        }
    base = rng.randint(10_000, 89_999)
    orders = {}
    for i in range(rng.randint(1, 3)):
        s = rng.choice(symbols)
        orders[str(base + i)] = {
            "id": base + i,
            "order_type": rng.choice(("Buy", "Sell")),
            "symbol": s,
            "price": round(stocks[s]["price"] * rng.uniform(0.9, 1.1), 2),
            "amount": rng.randint(1, 50),
            "status": rng.choice(("Completed", "Pending", "Open", "Cancelled")),
        }
    config = {
        "orders": orders,
        "account_info": {
            "account_id": rng.randint(10_000, 99_999),
            "balance": round(rng.uniform(2_000, 60_000), 2),
            "binding_card": rng.randint(10**15, 10**16 - 1),
        },
        "authenticated": rng.random() < 0.35,
        "market_status": rng.choice(("Open", "Closed")),
        "order_counter": base + len(orders),
        "stocks": stocks,
        "watch_list": rng.sample(symbols, rng.randint(1, 3)),
        "transaction_history": [],
        "random_seed": rng.randint(1, 999_999),
    }
    user = f"{rng.choice(_PEOPLE).lower()}_{rng.choice(_SURNAMES).lower()}"
    return config, {"username": user, "password": _password(rng)}


def _travel_scenario(rng: Random) -> Scenario:
    first, last = rng.choice(_PEOPLE), rng.choice(_SURNAMES)
    cards = {}
    for _ in range(rng.randint(1, 3)):
        cards[str(rng.randint(10**11, 10**12 - 1))] = {
            "card_number": "-".join(f"{rng.randint(0, 9999):04d}" for _ in range(4)),
            "expiration_date": f"{rng.randint(1, 12):02d}/{rng.randint(2026, 2031)}",
            "cardholder_name": f"{first} {last}",
            "card_verification_number": rng.randint(100, 999),
            "balance": round(rng.uniform(900, 25_000), 2),
        }
    bookings = {}
    for _ in range(rng.randint(0, 2)):
        frm, to = rng.choice(_flight_routes())
        bookings[str(rng.randint(10**6, 10**7 - 1))] = {
            "card_id": rng.choice(sorted(cards)),
            "travel_date": _date(rng),
            "travel_from": frm,
            "travel_to": to,
            "travel_class": rng.choice(("economy", "business")),
            "travel_cost": float(rng.randrange(150, 1500, 10)),
            "transaction_id": str(rng.randint(10**7, 10**8 - 1)),
        }
    logged_in = rng.random() < 0.7
    token = "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(12))
    config = {
        "random_seed": rng.randint(1, 999_999),
        "credit_card_list": cards,
        "booking_record": bookings,
        "access_token": token if logged_in else None,
        "token_type": "Bearer" if logged_in else None,
        "token_expires_in": rng.randint(2, 48) * 100 if logged_in else None,
        "token_scope": "read_write" if logged_in else None,
        "user_first_name": first if logged_in else None,
        "user_last_name": last if logged_in else None,
        "budget_limit": float(rng.randrange(200, 900, 50)) if rng.random() < 0.3 else None,
    }
    facts = {
        "first": first,
        "last": last,
        "client_id": f"client_{rng.randint(1000, 9999)}",
        "client_secret": f"secret_{rng.randint(10**5, 10**6 - 1)}",
        "refresh_token": f"refresh_{rng.randint(10**5, 10**6 - 1)}",
    }
    return config, facts


def _vehicle_scenario(rng: Random) -> Scenario:
    engaged = rng.random() < 0.3
    config = {
        "random_seed": rng.randint(1, 999_999),
        "fuelLevel": round(rng.uniform(2, 45), 1),
        "batteryVoltage": round(rng.uniform(11.8, 13.6), 1),
        "engineState": "stopped",
        "doorStatus": {d: rng.choice(("locked", "unlocked")) for d in _DOORS},
        "acTemperature": float(rng.randint(16, 28)),
        "fanSpeed": rng.randrange(0, 101, 10),
        "acMode": rng.choice(("auto", "cool", "heat", "defrost")),
        "humidityLevel": float(rng.randint(30, 70)),
        "headLightStatus": rng.choice(("on", "off")),
        "parkingBrakeStatus": "engaged" if engaged else "released",
        "parkingBrakeForce": 500.0 if engaged else 0.0,
        "slopeAngle": float(rng.randint(0, 12)) if engaged else 0.0,
        "brakePedalStatus": "released",
        "brakePedalForce": 0.0,
        "distanceToNextVehicle": float(rng.randrange(20, 120, 5)),
        "cruiseStatus": "inactive",
        "destination": "None",
        **{
            f"{tire}TirePressure": round(rng.uniform(26, 38), 1)
            for tire in ("frontLeft", "frontRight", "rearLeft", "rearRight")
        },
    }
    return config, {}


_SCENARIOS: dict[str, Callable[[Random], Scenario]] = {
    _FS: _fs_scenario,
    _MSG: _message_scenario,
    _TW: _twitter_scenario,
    _TK: _ticket_scenario,
    _TR: _trading_scenario,
    _TV: _travel_scenario,
    _VC: _vehicle_scenario,
}


@cache
def _flight_routes() -> tuple[tuple[str, str], ...]:
    """The (from, to) airport pairs ``TravelAPI.get_flight_cost`` prices (probed once)."""
    travel = load_instances({}, [_TV], long_context=False)[_TV]
    routes = []
    for a in travel.list_all_airports():
        for b in travel.list_all_airports():
            try:
                travel.get_flight_cost(a, b, "2025-01-01", "economy")
            except ValueError:
                continue
            routes.append((a, b))
    return tuple(routes)


@cache
def _airports() -> dict[str, str]:
    travel = load_instances({}, [_TV], long_context=False)[_TV]
    return {c: travel.get_nearest_airport_by_city(c)["nearest_airport"] for c in _TRAVEL_CITIES}


@cache
def _car_distances() -> tuple[tuple[str, str, float], ...]:
    """City pairs whose zip codes ``VehicleControlAPI.estimate_distance`` knows (probed)."""
    car = load_instances({}, [_VC], long_context=False)[_VC]
    zips = {c: car.get_zipcode_based_on_city(c)["zipcode"] for c in _CAR_CITIES}
    pairs = []
    for a in _CAR_CITIES:
        for b in _CAR_CITIES:
            found = car.estimate_distance(zips[a], zips[b]) if a != b else {"error": ""}
            if "distance" in found:
                pairs.append((a, b, found["distance"]))
    return tuple(pairs)
