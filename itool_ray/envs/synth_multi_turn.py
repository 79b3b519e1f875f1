"""Executable multi-turn tasks over BFCL's eight classes, synthesized offline (pure, no eval).

Training data that is not the test set: :func:`synthesize_multi_turn` writes entries in the
shape :func:`~itool_ray.envs.bfcl_data.load_multi_turn` produces (:class:`MultiTurnEntry`,
category :data:`SYNTH_CATEGORY`), so the executor, the scorer and the pipeline take them
unchanged. Each entry has

* an ``initial_config`` for one or two involved classes (``MathAPI`` is stateless and only
  joins a stateful class, as in BFCL), drawn at random but valid for each class's
  ``_load_scenario``: a file tree with random folder / file names and contents, a trading
  account with random stocks, orders and watch list, a messaging workspace with random users
  and sent messages, a Twitter account with tweets and follows, a ticket queue, a travel
  profile with credit cards and bookings, a car's state;
* user turns written from templates (:data:`TEMPLATES`, each tied to the classes it calls)
  that state a goal in natural language with every value the calls need (names, quoted
  texts, credentials when the class is not logged in, told once per entry);
* the gold call list of each turn, built from the live state reached by the earlier turns
  and **verified by executing it** on the safe executor (:class:`World`): a turn whose calls
  give an error (``Error during execution``, an ``"error"`` key, a failure flag such as
  ``login_status: False``), that leaves the state unchanged when it should change it, or
  whose own check of the intended state fails is discarded and another template is drawn.
  A finished entry is replayed from its gold strings and must score valid with
  :func:`score_entry` on :func:`oracle_outputs`.

Disjoint from BFCL: no initial config (whole or per class) equal to one of BFCL's 1,000
multi-turn entries, and no user turn equal to or a near-duplicate of a BFCL query (normalised
text: lower case, letters and digits only; near: word-set Jaccard >=
:data:`NEAR_DUPLICATE_JACCARD`); drawn again otherwise. :func:`bfcl_overlaps` reports any.

Deterministic: one ``random.Random(seed)`` (no global state); entry ``i`` does not depend on
``n``, so a smaller ``n`` gives a prefix. :func:`write_multi_turn` / :func:`read_multi_turn`
keep entries as JSON lines in BFCL's record shape plus ``category`` and ``ground_truth``.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from random import Random
from typing import Any

from bfcl.eval_checker.multi_turn_eval.func_source_code.gorilla_file_system import (
    Directory,
    File,
)
from bfcl.eval_checker.multi_turn_eval.multi_turn_utils import STATELESS_CLASSES

from itool_ray.calls import Call, render_call
from itool_ray.envs.bfcl_data import (
    KNOWN_CLASSES,
    BfclEntryError,
    MultiTurnEntry,
    class_function_docs,
    entry_from_record,
    load_all_multi_turn,
)
from itool_ray.envs.bfcl_exec import ERROR_PREFIX, World, load_instances
from itool_ray.envs.bfcl_score import oracle_outputs, score_entry

SYNTH_CATEGORY = "synth_multi_turn"
"""The category (and id prefix) of synthesized entries."""

NEAR_DUPLICATE_JACCARD = 0.75
"""Word-set Jaccard similarity at or above which a user turn counts as a BFCL near-duplicate."""

PAIR_FRACTION = 0.5
"""Probability that an entry involves a second class."""

CROSS_FIRST = 0.5
"""Probability that a turn of a two-class entry first tries the templates using both."""

_MAX_FAILED_DRAFTS = 10  # verified drafts that failed before a turn gives up
_FS, _MATH, _MSG, _TW = "GorillaFileSystem", "MathAPI", "MessageAPI", "TwitterAPI"
_TK, _TR, _TV, _VC = "TicketAPI", "TradingBot", "TravelAPI", "VehicleControlAPI"

# ---------------------------------------------------------------------------------------------
# Vocabulary (no apostrophes inside values the user quotes)


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.strip().splitlines())


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_PEOPLE = _words(
    "Alice Bruno Carmen Dmitri Elena Farid Grace Hiro Ines Jonas Keiko Liam Maya Nikhil Olga "
    "Pablo Quinn Rosa Samir Tara Umar Vera Wen Yara Zoe Anders Bianca Cyrus Delia Emeka"
)
_SURNAMES = _words(
    "Adler Brooks Castillo Dubois Eriksen Fontaine Gupta Hansen Ivanova Jensen Kowalski "
    "Lindqvist Moreau Nakamura Okafor Petrov Quintero Rossi Sato Varga Weber Yilmaz"
)
_ROOTS = ("workspace", "home", "office", "studio", "lab", "desk", "files", "vault", "depot")
_DIRS = _words(
    "archive backup drafts reports datasets research shared notes invoices photos scripts "
    "meetings clients legacy exports templates budgets designs receipts sprints"
)
_STEMS = _words(
    "notes report summary budget todo ideas plan inventory minutes schedule contacts results "
    "feedback roadmap checklist expenses log draft agenda survey memo outline tasks prices"
)
_STEM_TAGS = ("", "", "_2025", "_v2", "_final", "_q3", "_old", "_june", "_team", "_wip")
_EXTS = (".txt", ".txt", ".md", ".log", ".csv")
_SUBJECTS = _lines("""
    The budget
    Our team
    The client
    Sales
    The server
    Marketing
    The new logo
    Support
    The prototype
    Quarterly revenue
    The deadline
    The audit
    Inventory
    The survey
    Hiring
    The vendor
    Shipping
    The beta
""")
_PREDICATES = _lines("""
    was approved on Monday
    needs another review
    grew by 8 percent
    is scheduled for Friday
    moved to the next phase
    passed all checks
    is waiting on legal
    dropped slightly in March
    will be presented next week
    requires two more testers
    exceeded the forecast
    is still pending
    slipped by a week
    looks promising
    needs updated figures
    is on hold
""")
_ITEMS = ("widget", "gadget", "bolt", "cable", "sensor", "panel", "valve", "filter", "lamp")
_MESSAGES = _lines("""
    Can we move the meeting to Thursday?
    The slides are ready for review.
    Please send me the latest figures.
    Lunch at noon tomorrow?
    I pushed the fix to the main branch.
    Reminder: the demo starts at 10.
    Thanks for your help yesterday.
    Could you check the shared folder?
    The client approved the proposal.
    Running ten minutes late.
    The invoice is attached to the ticket.
    Are you joining the retro?
    Budget numbers look good this month.
    Please review my pull request.
""")
_TWEETS = _lines("""
    Just wrapped up a great workshop
    Coffee first, then code
    New blog post is live
    Our team hit a big milestone today
    Exploring the city this weekend
    Reading a fascinating book on design
    Fresh release notes are out
    Thanks everyone for the kind words
    Weekend hike with friends
    Testing a new recipe tonight
    Sunrise run along the river
    Learning something new every day
    Road trip playlist is ready
    Cleaned up my desk and my inbox
    Finally fixed that flaky test
""")
_TAGS = _words(
    "#tech #weekend #coding #travel #design #food #fitness #books #startup #music #learning #news"
)
_HANDLE_A = ("sunny", "quiet", "rapid", "lucky", "urban", "cosmic", "golden", "silver", "happy")
_HANDLE_B = ("coder", "traveler", "baker", "writer", "runner", "maker", "analyst", "owl", "fox")
_TICKET_TITLES = _lines("""
    Laptop will not boot
    VPN keeps disconnecting
    Printer jam on floor 3
    Password reset needed
    Email not syncing on phone
    Monitor flickers
    Software license expired
    Slow network in the lab
    Broken office chair
    Projector has no signal
    Access badge not working
    Cannot install updates
""")
_TICKET_DESCRIPTIONS = _lines("""
    Started this morning after the update.
    Happens several times a day.
    Blocking my work on the quarterly report.
    Tried restarting twice, no change.
    Affects the whole team.
    Needs a fix before Friday.
    Only on the second floor.
""")
_RESOLUTIONS = _lines("""
    Replaced the faulty cable.
    Reset the account and confirmed access.
    Installed the latest driver.
    Escalated to the vendor and fixed.
    Cleared the cache and restarted the service.
    Swapped the unit for a spare.
""")
_COMPANIES = {
    "Apple": "AAPL",
    "Google": "GOOG",
    "Tesla": "TSLA",
    "Microsoft": "MSFT",
    "Nvidia": "NVDA",
    "Zeta Corp": "ZETA",
    "Alpha Tech": "ALPH",
    "Omega Industries": "OMEG",
    "Quasar Ltd.": "QUAS",
    "Neptune Systems": "NEPT",
    "Synex Solutions": "SYNX",
}
_TRAVEL_CITIES = _lines("""
    Rivermist
    Stonebrook
    Maplecrest
    Silverpine
    Shadowridge
    London
    Paris
    Sunset Valley
    Oakendale
    Willowbend
    Crescent Hollow
    Autumnville
    Pinehaven
    Greenfield
    San Francisco
    Los Angeles
    New York
    Chicago
    Boston
    Beijing
    Hong Kong
    Rome
    Tokyo
""")
_CAR_CITIES = _lines("""
    Rivermist
    Stonebrook
    Maplecrest
    Silverpine
    Shadowridge
    Sunset Valley
    Oakendale
    Willowbend
    Crescent Hollow
    Autumnville
    San Francisco
""")
_STREETS = ("Maple Avenue", "Harbor Road", "Pine Lane", "Elm Drive", "Quarry Street", "Mill Way")
_DOORS = ("driver", "passenger", "rear_left", "rear_right")
_INSURANCE = ("comprehensive", "cancellation", "medical", "baggage")
_CURRENCIES = ("RMB", "EUR", "JPY", "GBP", "CAD", "AUD", "INR", "BRL", "MXN")
_OPENERS = ("", "", "", "Thanks. ", "Great. ", "Okay, next: ", "One more thing. ")


def _one(rng: Random, *options: str) -> str:
    return rng.choice(options)


def _an(cabin: str) -> str:
    return ("an " if cabin[0] in "aeiou" else "a ") + cabin + "-class"


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


def _c(function: str, /, **arguments: Any) -> Call:
    return Call(function, arguments)


def _date(rng: Random) -> str:
    return f"{rng.choice((2025, 2026))}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _password(rng: Random) -> str:
    word = rng.choice(("maple", "orbit", "falcon", "ember", "cobalt", "tundra", "violet"))
    return f"{word}{rng.randint(10, 9999)}{rng.choice('!#$%&*')}"


def _handle(rng: Random) -> str:
    return f"{rng.choice(_HANDLE_A)}_{rng.choice(_HANDLE_B)}{rng.randint(1, 99)}"


def _line(rng: Random) -> str:
    return f"{rng.choice(_SUBJECTS)} {rng.choice(_PREDICATES)}."


def _number(rng: Random) -> int | float:
    return rng.randint(2, 400) if rng.random() < 0.6 else round(rng.uniform(1, 300), 1)


def _numbers(rng: Random, low: int = 3, high: int = 6) -> list[int | float]:
    return [_number(rng) for _ in range(rng.randint(low, high))]


def _listing(values: Sequence[Any]) -> str:
    texts = [str(v) for v in values]
    return ", ".join(texts[:-1]) + " and " + texts[-1] if len(texts) > 1 else texts[0]


# ---------------------------------------------------------------------------------------------
# Scenarios: one random, valid ``_load_scenario`` input per stateful class, and the facts the
# user knows (credentials) that the config does not show the model.

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


# ---------------------------------------------------------------------------------------------
# Drafting one turn against the live state


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


# --- GorillaFileSystem ------------------------------------------------------------------------


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


def _new_name(ctx: _Ctx, d: Directory, pool: Sequence[str], ext: str = "") -> str:
    while True:
        name = ctx.rng.choice(pool) + ctx.rng.choice(("", "_new", "_2", "_copy", "_v3")) + ext
        if name not in d.contents:
            return name


def _cwd(world: World) -> Directory:
    return world.instances[_FS]._current_dir


@_template("fs.mkdir_move", _FS)
def _fs_mkdir_move(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    d = _new_name(ctx, place.dir, _DIRS)
    text = _one(
        ctx.rng,
        f"Create a folder named '{d}' {place.where} and move '{name}' into it.",
        f"Make a new directory '{d}' {place.where}, then put '{name}' inside it.",
    )
    calls = [*place.nav, _c("mkdir", dir_name=d), _c("mv", source=name, destination=d)]

    def check(w: World) -> bool:
        cwd = _cwd(w)
        return isinstance(cwd.contents.get(d), Directory) and name in cwd.contents[d].contents

    return _Draft(text, calls, check, changes=True)


@_template("fs.new_file", _FS)
def _fs_new_file(ctx: _Ctx) -> _Draft | None:
    place = ctx.rng.choice(_places(ctx))
    name, line = _new_name(ctx, place.dir, _STEMS, ".txt"), _line(ctx.rng)
    text = _one(
        ctx.rng,
        f"Create a file called '{name}' {place.where} and write '{line}' in it.",
        f"Please start a new file '{name}' {place.where} containing the sentence '{line}'.",
    )
    calls = [*place.nav, _c("touch", file_name=name), _c("echo", content=line, file_name=name)]

    def check(w: World) -> bool:
        item = _cwd(w).contents.get(name)
        return isinstance(item, File) and item.content == line

    return _Draft(text, calls, check, changes=True)


@_template("fs.overwrite", _FS)
def _fs_overwrite(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    line = _line(ctx.rng)
    text = _one(
        ctx.rng,
        f"Replace everything in '{name}' {place.where} with the line '{line}'.",
        f"Overwrite '{name}' {place.where} so it only says '{line}'.",
    )
    calls = [*place.nav, _c("echo", content=line, file_name=name)]
    return _Draft(text, calls, lambda w: _cwd(w).contents[name].content == line, changes=True)


@_template("fs.cat", _FS)
def _fs_cat(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    text = _one(
        ctx.rng,
        f"Show me what's inside '{name}' {place.where}.",
        f"Can you display the contents of '{name}' {place.where}?",
        f"Read '{name}' {place.where} out to me.",
    )
    return _Draft(text, [*place.nav, _c("cat", file_name=name)])


@_template("fs.grep", _FS)
def _fs_grep(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx, lambda f: bool(f.content.strip()))):
        return None
    place, name, file = pick
    words = sorted({w for w in re.findall(r"[A-Za-z]{4,}", file.content)})
    if not words:
        return None
    word = ctx.rng.choice(words)
    text = _one(
        ctx.rng,
        f"Which lines of '{name}' {place.where} mention '{word}'?",
        f"Search '{name}' {place.where} for lines containing '{word}'.",
    )
    return _Draft(text, [*place.nav, _c("grep", file_name=name, pattern=word)])


@_template("fs.sort", _FS)
def _fs_sort(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx, lambda f: len(f.content.splitlines()) >= 2)):
        return None
    place, name, _ = pick
    text = _one(
        ctx.rng,
        f"Sort the lines of '{name}' {place.where} alphabetically and show me the result.",
        f"Give me '{name}' {place.where} with its lines in sorted order.",
    )
    return _Draft(text, [*place.nav, _c("sort", file_name=name)])


@_template("fs.tail", _FS)
def _fs_tail(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx, lambda f: len(f.content.splitlines()) >= 3)):
        return None
    place, name, file = pick
    n = ctx.rng.randint(1, len(file.content.splitlines()) - 1)
    text = _one(
        ctx.rng,
        f"Show me the last {_count(n, 'line')} of '{name}' {place.where}.",
        f"What are the final {_count(n, 'line')} of '{name}' {place.where}?",
    )
    return _Draft(text, [*place.nav, _c("tail", file_name=name, lines=n)])


@_template("fs.wc", _FS)
def _fs_wc(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    mode, unit = ctx.rng.choice((("l", "lines"), ("w", "words"), ("c", "characters")))
    text = _one(
        ctx.rng,
        f"How many {unit} are in '{name}' {place.where}?",
        f"Count the {unit} of '{name}' {place.where} for me.",
    )
    return _Draft(text, [*place.nav, _c("wc", file_name=name, mode=mode)])


def _two_files(ctx: _Ctx) -> tuple[_Place, str, str] | None:
    options = [p for p in _places(ctx) if len(_visible(p.dir, File)) >= 2]
    if not options:
        return None
    place = ctx.rng.choice(options)
    a, b = ctx.rng.sample(_visible(place.dir, File), 2)
    return place, a, b


@_template("fs.diff", _FS)
def _fs_diff(ctx: _Ctx) -> _Draft | None:
    if not (pick := _two_files(ctx)):
        return None
    place, a, b = pick
    text = _one(
        ctx.rng,
        f"Compare '{a}' and '{b}' {place.where} line by line.",
        f"What differs between '{a}' and '{b}' {place.where}?",
    )
    return _Draft(text, [*place.nav, _c("diff", file_name1=a, file_name2=b)])


@_template("fs.copy_as", _FS)
def _fs_copy_as(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, file = pick
    stem, dot, ext = name.rpartition(".")
    new = _new_name(
        ctx, place.dir, (f"{stem}_backup", f"{stem}_copy", f"copy_of_{stem}"), dot + ext
    )
    text = _one(
        ctx.rng,
        f"Make a copy of '{name}' {place.where} called '{new}'.",
        f"Duplicate '{name}' {place.where} as '{new}', keeping the original.",
    )

    def check(w: World) -> bool:
        cwd = _cwd(w)
        return name in cwd.contents and cwd.contents.get(new) == File(new, file.content)

    return _Draft(text, [*place.nav, _c("cp", source=name, destination=new)], check, True)


def _file_and_folder(ctx: _Ctx) -> tuple[_Place, str, str] | None:
    options = [
        (p, f, d)
        for p in _places(ctx)
        for f in _visible(p.dir, File)
        for d in _visible(p.dir, Directory)
        if f not in p.dir.contents[d].contents
    ]
    return ctx.rng.choice(options) if options else None


@_template("fs.copy_into", _FS)
def _fs_copy_into(ctx: _Ctx) -> _Draft | None:
    if not (pick := _file_and_folder(ctx)):
        return None
    place, name, d = pick
    text = _one(
        ctx.rng,
        f"Copy '{name}' {place.where} into the '{d}' subfolder, keeping the original where it is.",
        f"Put a copy of '{name}' {place.where} inside the '{d}' directory.",
    )

    def check(w: World) -> bool:
        cwd = _cwd(w)
        return name in cwd.contents and name in cwd.contents[d].contents

    return _Draft(text, [*place.nav, _c("cp", source=name, destination=d)], check, True)


@_template("fs.move_into", _FS)
def _fs_move_into(ctx: _Ctx) -> _Draft | None:
    if not (pick := _file_and_folder(ctx)):
        return None
    place, name, d = pick
    text = _one(
        ctx.rng,
        f"Move '{name}' {place.where} into the '{d}' folder next to it.",
        f"File '{name}' {place.where} away in its '{d}' subdirectory.",
    )

    def check(w: World) -> bool:
        cwd = _cwd(w)
        return name not in cwd.contents and name in cwd.contents[d].contents

    return _Draft(text, [*place.nav, _c("mv", source=name, destination=d)], check, True)


@_template("fs.rename", _FS)
def _fs_rename(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    ext = "." + name.rpartition(".")[2]
    new = _new_name(ctx, place.dir, _STEMS, ext)
    text = _one(
        ctx.rng,
        f"Rename '{name}' {place.where} to '{new}'.",
        f"Change the name of '{name}' {place.where} to '{new}'.",
    )

    def check(w: World) -> bool:
        return name not in _cwd(w).contents and new in _cwd(w).contents

    return _Draft(text, [*place.nav, _c("mv", source=name, destination=new)], check, True)


@_template("fs.remove", _FS)
def _fs_remove(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    text = _one(
        ctx.rng,
        f"Delete '{name}' {place.where}; I no longer need it.",
        f"Remove the file '{name}' {place.where}.",
    )
    calls = [*place.nav, _c("rm", file_name=name)]
    return _Draft(text, calls, lambda w: name not in _cwd(w).contents, True)


@_template("fs.cd_ls", _FS)
def _fs_cd_ls(ctx: _Ctx) -> _Draft | None:
    here = ctx.inst(_FS)._current_dir
    if not (dirs := _visible(here, Directory)):
        return None
    d = ctx.rng.choice(dirs)
    text = _one(
        ctx.rng,
        f"Go into the '{d}' folder and list what's in it.",
        f"Open the '{d}' directory and show me its contents.",
    )
    calls = [_c("cd", folder=d), _c("ls")]
    return _Draft(text, calls, lambda w: _cwd(w) is not None and _cwd(w).name == d)


@_template("fs.ls_all", _FS)
def _fs_ls_all(ctx: _Ctx) -> _Draft | None:
    text = _one(
        ctx.rng,
        "List everything in the current directory, hidden files included.",
        "Show all items here, including the hidden ones.",
    )
    return _Draft(text, [_c("ls", a=True)])


@_template("fs.find", _FS)
def _fs_find(ctx: _Ctx) -> _Draft | None:
    here = ctx.inst(_FS)._current_dir
    names: list[str] = []

    def walk(d: Directory) -> None:
        for n, item in d.contents.items():
            names.append(n)
            if isinstance(item, Directory):
                walk(item)

    walk(here)
    stems = sorted({m for n in names for m in re.findall(r"[a-z]{4,}", n)})
    if not stems:
        return None
    part = ctx.rng.choice(stems)
    text = _one(
        ctx.rng,
        f"Find every file or folder under the current directory whose name contains '{part}'.",
        f"Search below this folder for anything with '{part}' in its name.",
    )
    return _Draft(text, [_c("find", path=".", name=part)])


@_template("fs.du", _FS)
def _fs_du(ctx: _Ctx) -> _Draft | None:
    text = _one(
        ctx.rng,
        "How much disk space does the current directory use? Human-readable, please.",
        "Report the disk usage of this folder in a readable unit.",
    )
    return _Draft(text, [_c("du", human_readable=True)])


@_template("fs.pwd", _FS)
def _fs_pwd(ctx: _Ctx) -> _Draft | None:
    text = _one(ctx.rng, "Which directory am I in right now?", "Print the working directory.")
    return _Draft(text, [_c("pwd")])


@_template("fs.up_ls", _FS)
def _fs_up_ls(ctx: _Ctx) -> _Draft | None:
    here = ctx.inst(_FS)._current_dir
    if here.parent is None:
        return None
    text = _one(
        ctx.rng,
        "Go back up one level and show me what's there.",
        "Return to the parent folder and list its contents.",
    )
    return _Draft(
        text, [_c("cd", folder=".."), _c("ls")], lambda w: _cwd(w).name == here.parent.name
    )


@_template("fs.rmdir", _FS)
def _fs_rmdir(ctx: _Ctx) -> _Draft | None:
    here = ctx.inst(_FS)._current_dir
    empty = [d for d in _visible(here, Directory) if not here.contents[d].contents]
    if not empty:
        return None
    d = ctx.rng.choice(empty)
    text = _one(ctx.rng, f"Remove the empty '{d}' folder.", f"Delete the '{d}' directory.")
    return _Draft(text, [_c("rmdir", dir_name=d)], lambda w: d not in _cwd(w).contents, True)


@_template("fs.mkdir_cd_touch", _FS)
def _fs_mkdir_cd_touch(ctx: _Ctx) -> _Draft | None:
    here = ctx.inst(_FS)._current_dir
    d = _new_name(ctx, here, _DIRS)
    name = ctx.rng.choice(_STEMS) + ctx.rng.choice(_EXTS)
    text = _one(
        ctx.rng,
        f"Make a new directory '{d}' here, go into it, and create an empty file '{name}' there.",
        f"Set up a folder '{d}' in the current directory, step inside and touch '{name}'.",
    )
    calls = [_c("mkdir", dir_name=d), _c("cd", folder=d), _c("touch", file_name=name)]
    return _Draft(text, calls, lambda w: _cwd(w).name == d and name in _cwd(w).contents, True)


# --- MathAPI (stateless) -----------------------------------------------------------------------


@_template("math.mean", _MATH)
def _math_mean(ctx: _Ctx) -> _Draft | None:
    nums = _numbers(ctx.rng)
    text = _one(
        ctx.rng,
        f"What's the average of {_listing(nums)}?",
        f"Compute the mean of these values: {_listing(nums)}.",
    )
    return _Draft(text, [_c("mean", numbers=nums)])


@_template("math.stdev", _MATH)
def _math_stdev(ctx: _Ctx) -> _Draft | None:
    nums = _numbers(ctx.rng)
    text = _one(
        ctx.rng,
        f"Work out the standard deviation of {_listing(nums)}.",
        f"How spread out are {_listing(nums)}? Give me the standard deviation.",
    )
    return _Draft(text, [_c("standard_deviation", numbers=nums)])


@_template("math.sqrt", _MATH)
def _math_sqrt(ctx: _Ctx) -> _Draft | None:
    x, p = ctx.rng.randint(2, 5000), ctx.rng.randint(3, 12)
    text = _one(
        ctx.rng,
        f"What is the square root of {x}, to {p} significant digits?",
        f"Take the square root of {x} with a precision of {p}.",
    )
    return _Draft(text, [_c("square_root", number=x, precision=p)])


@_template("math.log", _MATH)
def _math_log(ctx: _Ctx) -> _Draft | None:
    x, b, p = ctx.rng.randint(2, 100_000), ctx.rng.choice((2, 3, 5, 10)), ctx.rng.randint(4, 10)
    text = _one(
        ctx.rng,
        f"Give me the base-{b} logarithm of {x} with {p} digits of precision.",
        f"What is log base {b} of {x}? Use precision {p}.",
    )
    return _Draft(text, [_c("logarithm", value=x, base=b, precision=p)])


@_template("math.percent", _MATH)
def _math_percent(ctx: _Ctx) -> _Draft | None:
    whole = ctx.rng.randint(50, 5000)
    part = ctx.rng.randint(1, whole)
    text = _one(
        ctx.rng,
        f"What percentage of {whole} is {part}?",
        f"Express {part} as a percentage of {whole}.",
    )
    return _Draft(text, [_c("percentage", part=part, whole=whole)])


_IMPERIAL = (
    ("km", "miles", "kilometers", "miles"),
    ("miles", "km", "miles", "kilometers"),
    ("kg", "lb", "kilograms", "pounds"),
    ("lb", "kg", "pounds", "kilograms"),
    ("m", "ft", "meters", "feet"),
    ("ft", "m", "feet", "meters"),
    ("cm", "in", "cm", "inches"),
    ("in", "cm", "inches", "centimeters"),
    ("m", "yd", "meters", "yards"),
    ("celsius", "fahrenheit", "degrees Celsius", "Fahrenheit"),
    ("fahrenheit", "celsius", "degrees Fahrenheit", "Celsius"),
)


@_template("math.imperial", _MATH)
def _math_imperial(ctx: _Ctx) -> _Draft | None:
    unit_in, unit_out, said_in, said_out = ctx.rng.choice(_IMPERIAL)
    v = _number(ctx.rng)
    text = _one(
        ctx.rng,
        f"Convert {v} {said_in} to {said_out}.",
        f"How much is {v} {said_in} in {said_out}?",
    )
    return _Draft(text, [_c("imperial_si_conversion", value=v, unit_in=unit_in, unit_out=unit_out)])


@_template("math.metric", _MATH)
def _math_metric(ctx: _Ctx) -> _Draft | None:
    unit_in, unit_out = ctx.rng.sample(("km", "m", "cm", "mm", "um", "nm"), 2)
    v = _number(ctx.rng)
    text = _one(
        ctx.rng,
        f"Convert {v} {unit_in} into {unit_out} (SI units).",
        f"Express {v} {unit_in} in {unit_out}.",
    )
    return _Draft(text, [_c("si_unit_conversion", value=v, unit_in=unit_in, unit_out=unit_out)])


@_template("math.extreme", _MATH)
def _math_extreme(ctx: _Ctx) -> _Draft | None:
    nums = _numbers(ctx.rng, 4, 7)
    fn, word = ctx.rng.choice((("max_value", "largest"), ("min_value", "smallest")))
    text = _one(
        ctx.rng,
        f"Which is the {word} of {_listing(nums)}?",
        f"Find the {word} number among {_listing(nums)}.",
    )
    return _Draft(text, [_c(fn, numbers=nums)])


@_template("math.sum_round", _MATH)
def _math_sum_round(ctx: _Ctx) -> _Draft | None:
    nums = [round(ctx.rng.uniform(1, 500), 2) for _ in range(ctx.rng.randint(3, 5))]
    places = ctx.rng.randint(0, 1)
    total = ctx.peek([_c("sum_values", numbers=nums)])[1][0]["result"]
    text = _one(
        ctx.rng,
        f"Add up {_listing(nums)} and round the total to {_count(places, 'decimal place')}.",
        f"Sum {_listing(nums)}, then round the result to {_count(places, 'decimal')}.",
    )
    calls = [
        _c("sum_values", numbers=nums),
        _c("round_number", number=total, decimal_places=places),
    ]
    return _Draft(text, calls)


@_template("math.power", _MATH)
def _math_power(ctx: _Ctx) -> _Draft | None:
    b, e = ctx.rng.randint(2, 30), ctx.rng.randint(2, 9)
    text = _one(ctx.rng, f"What is {b} to the power of {e}?", f"Raise {b} to the power {e}.")
    return _Draft(text, [_c("power", base=b, exponent=e)])


@_template("fs_math.mean_words", _FS, _MATH)
def _fs_math_mean_words(ctx: _Ctx) -> _Draft | None:
    if not (pick := _two_files(ctx)):
        return None
    place, a, b = pick
    counts = [len(place.dir.contents[f].content.split()) for f in (a, b)]
    text = _one(
        ctx.rng,
        f"Count the words in '{a}' and in '{b}' {place.where}, then give me the average of "
        "the two counts.",
        f"I need the mean word count of '{a}' and '{b}' {place.where}.",
    )
    calls = [
        *place.nav,
        _c("wc", file_name=a, mode="w"),
        _c("wc", file_name=b, mode="w"),
        _c("mean", numbers=counts),
    ]
    return _Draft(text, calls)


# --- MessageAPI ----------------------------------------------------------------------------


def _msg_people(ctx: _Ctx) -> list[str]:
    me = ctx.facts[_MSG]["me"]
    return [n for n in ctx.inst(_MSG).user_map if n != me]


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


# --- TwitterAPI ----------------------------------------------------------------------------


def _tweet_text(ctx: _Ctx) -> str:
    return ctx.rng.choice(_TWEETS) + ctx.rng.choice(("!", ".", " today!", " :)"))


@_template("tw.post", _TW)
def _tw_post(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TW)
    content, tags = _tweet_text(ctx), ctx.rng.sample(_TAGS, ctx.rng.randint(1, 3))
    text = _one(
        ctx.rng,
        f"Post a tweet saying '{content}' with the tags {_listing(tags)}.",
        f"Tweet '{content}' and tag it {_listing(tags)}.",
    )
    calls = [*login, _c("post_tweet", content=content, tags=tags, mentions=[])]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tw.post_mention", _TW)
def _tw_post_mention(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TW)
    content = _tweet_text(ctx)
    people = ["@" + h for h in ctx.rng.sample(ctx.facts[_TW]["others"], ctx.rng.randint(1, 2))]
    text = _one(
        ctx.rng,
        f"Tweet '{content}' and mention {_listing(people)}.",
        f"Share '{content}' on Twitter, mentioning {_listing(people)}.",
    )
    calls = [*login, _c("post_tweet", content=content, tags=[], mentions=people)]
    return _Draft(_join(pre, text), calls, changes=True)


def _tweets_not_retweeted(ctx: _Ctx) -> list[int]:
    inst = ctx.inst(_TW)
    done = inst.retweets.get(inst.username, [])
    return [i for i, t in inst.tweets.items() if t["username"] != inst.username and i not in done]


@_template("tw.retweet_id", _TW)
def _tw_retweet_id(ctx: _Ctx) -> _Draft | None:
    if not (ids := _tweets_not_retweeted(ctx)):
        return None
    pre, login = _login(ctx, _TW)
    i = ctx.rng.choice(ids)
    text = _one(ctx.rng, f"Retweet the tweet with ID {i}.", f"Please retweet tweet number {i}.")
    return _Draft(_join(pre, text), [*login, _c("retweet", tweet_id=i)], changes=True)


@_template("tw.retweet_search", _TW)
def _tw_retweet_search(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TW)
    options = []
    for i in _tweets_not_retweeted(ctx):
        for word in re.findall(r"[A-Za-z]{5,}", inst.tweets[i]["content"]):
            hits = inst.search_tweets(word)  # a read-only method, on the live instance
            if [t["id"] for t in hits] == [i]:
                options.append((i, word))
    if not options:
        return None
    pre, login = _login(ctx, _TW)
    i, word = ctx.rng.choice(options)
    text = _one(
        ctx.rng,
        f"Find the tweet that mentions '{word}' and retweet it.",
        f"Search Twitter for '{word}' and retweet the post you find.",
    )
    calls = [*login, _c("search_tweets", keyword=word), _c("retweet", tweet_id=i)]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tw.comment", _TW)
def _tw_comment(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TW)
    if not inst.tweets:
        return None
    pre, login = _login(ctx, _TW)
    i = ctx.rng.choice(sorted(inst.tweets))
    note = ctx.rng.choice(("Great point!", "Love this.", "Congrats to the team!", "So true."))
    text = _one(
        ctx.rng, f"Comment '{note}' on tweet {i}.", f"Reply to tweet {i} with the comment '{note}'."
    )
    calls = [*login, _c("comment", tweet_id=i, comment_content=note)]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tw.follow", _TW)
def _tw_follow(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TW)
    options = [h for h in ctx.facts[_TW]["others"] if h not in inst.following_list]
    if not options:
        return None
    pre, login = _login(ctx, _TW)
    h = ctx.rng.choice(options)
    text = _one(ctx.rng, f"Follow {h} on Twitter.", f"Start following the user {h}.")
    return _Draft(_join(pre, text), [*login, _c("follow_user", username_to_follow=h)], changes=True)


@_template("tw.unfollow", _TW)
def _tw_unfollow(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TW)
    if not inst.following_list:
        return None
    pre, login = _login(ctx, _TW)
    h = ctx.rng.choice(inst.following_list)
    text = _one(ctx.rng, f"Unfollow {h}.", f"Stop following {h} on Twitter.")
    calls = [*login, _c("unfollow_user", username_to_unfollow=h)]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tw.following", _TW)
def _tw_following(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TW)
    text = _one(ctx.rng, "Who am I following on Twitter?", "List the accounts I follow.")
    return _Draft(_join(pre, text), [*login, _c("list_all_following")])


@_template("tw.stats", _TW)
def _tw_stats(ctx: _Ctx) -> _Draft | None:
    me = ctx.inst(_TW).username
    text = _one(
        ctx.rng,
        f"How many tweets, follows and retweets does my account {me} have?",
        f"Pull the Twitter stats for {me}.",
    )
    return _Draft(text, [_c("get_user_stats", username=me)])


@_template("tw.user_tweets", _TW)
def _tw_user_tweets(ctx: _Ctx) -> _Draft | None:
    authors = sorted({t["username"] for t in ctx.inst(_TW).tweets.values()})
    if not authors:
        return None
    h = ctx.rng.choice(authors)
    text = _one(ctx.rng, f"Show me everything {h} has tweeted.", f"List the tweets posted by {h}.")
    return _Draft(text, [_c("get_user_tweets", username=h)])


@_template("tw.comments", _TW)
def _tw_comments(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TW)
    ids = sorted(i for i in inst.comments if i in inst.tweets)
    if not ids:
        return None
    i = ctx.rng.choice(ids)
    text = _one(ctx.rng, f"Show me the comments on tweet {i}.", f"What replies has tweet {i} got?")
    return _Draft(text, [_c("get_tweet_comments", tweet_id=i)])


@_template("fs_tw.tweet_line", _FS, _TW)
def _fs_tw_tweet_line(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx, lambda f: bool(f.content.strip()))):
        return None
    place, name, file = pick
    first = file.content.splitlines()[0]
    if not first.strip():
        return None
    pre, login = _login(ctx, _TW)
    text = _one(
        ctx.rng,
        f"Post the first line of '{name}' {place.where} as a tweet.",
        f"Read '{name}' {place.where} and tweet its opening line.",
    )
    calls = [
        *login,
        *place.nav,
        _c("cat", file_name=name),
        _c("post_tweet", content=first, tags=[], mentions=[]),
    ]
    return _Draft(_join(pre, text), calls, changes=True)


# --- TicketAPI -------------------------------------------------------------------------------


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


# --- TradingBot ------------------------------------------------------------------------------


def _company(ctx: _Ctx) -> tuple[str, str]:
    stocks = ctx.inst(_TR).stocks
    return ctx.rng.choice([(n, s) for n, s in _COMPANIES.items() if s in stocks])


@_template("tr.price_by_name", _TR)
def _tr_price_by_name(ctx: _Ctx) -> _Draft | None:
    name, symbol = _company(ctx)
    text = _one(
        ctx.rng,
        f"What's {name} trading at right now?",
        f"Look up the current stock price of {name}.",
    )
    calls = [_c("get_symbol_by_name", name=name), _c("get_stock_info", symbol=symbol)]
    return _Draft(text, calls)


@_template("tr.stock_info", _TR)
def _tr_stock_info(ctx: _Ctx) -> _Draft | None:
    symbol = ctx.rng.choice(sorted(ctx.inst(_TR).stocks))
    text = _one(
        ctx.rng,
        f"Give me the details for {symbol}: price, volume and moving averages.",
        f"How is {symbol} doing today?",
    )
    return _Draft(text, [_c("get_stock_info", symbol=symbol)])


@_template("tr.limit_order", _TR)
def _tr_limit_order(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    inst = ctx.inst(_TR)
    symbol = ctx.rng.choice(sorted(inst.stocks))
    side = ctx.rng.choice(("Buy", "Sell"))
    n = ctx.rng.randint(1, 40)
    price = round(inst.stocks[symbol]["price"] * ctx.rng.uniform(0.95, 1.05), 2)
    text = _one(
        ctx.rng,
        f"Place an order to {side.lower()} {n} shares of {symbol} at ${price} each.",
        f"{side} {n} {symbol} shares with a limit price of ${price}.",
    )
    calls = [*login, _c("place_order", order_type=side, symbol=symbol, price=price, amount=n)]
    oid = inst.order_counter
    return _Draft(_join(pre, text), calls, lambda w: oid in w.instances[_TR].orders, True)


@_template("tr.market_buy", _TR)
def _tr_market_buy(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    name, symbol = _company(ctx)
    n = ctx.rng.randint(1, 25)
    price = ctx.inst(_TR).stocks[symbol]["price"]
    text = _one(
        ctx.rng,
        f"Buy {n} shares of {name} at the current market price.",
        f"I want {n} {name} shares at whatever they cost right now.",
    )
    calls = [
        *login,
        _c("get_symbol_by_name", name=name),
        _c("get_stock_info", symbol=symbol),
        _c("place_order", order_type="Buy", symbol=symbol, price=price, amount=n),
    ]
    return _Draft(_join(pre, text), calls, changes=True)


def _open_orders(ctx: _Ctx) -> list[int]:
    orders = ctx.inst(_TR).orders
    return sorted(i for i, o in orders.items() if o["status"] not in ("Completed", "Cancelled"))


@_template("tr.cancel", _TR)
def _tr_cancel(ctx: _Ctx) -> _Draft | None:
    if not (ids := _open_orders(ctx)):
        return None
    i = ctx.rng.choice(ids)
    text = _one(ctx.rng, f"Cancel my order {i}.", f"Please call off order {i}.")
    return _Draft(text, [_c("cancel_order", order_id=i)], changes=True)


@_template("tr.order_status", _TR)
def _tr_order_status(ctx: _Ctx) -> _Draft | None:
    i = ctx.rng.choice(sorted(ctx.inst(_TR).orders))
    text = _one(ctx.rng, f"What's the status of order {i}?", f"Show me the details of order {i}.")
    return _Draft(text, [_c("get_order_details", order_id=i)])


@_template("tr.watch_add", _TR)
def _tr_watch_add(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TR)
    options = sorted(s for s in inst.stocks if s not in inst.watch_list)
    if not options:
        return None
    s = ctx.rng.choice(options)
    text = _one(ctx.rng, f"Add {s} to my watchlist.", f"Put {s} on my watch list.")
    return _Draft(text, [_c("add_to_watchlist", stock=s)], changes=True)


@_template("tr.watch_remove", _TR)
def _tr_watch_remove(ctx: _Ctx) -> _Draft | None:
    if not (watched := ctx.inst(_TR).watch_list):
        return None
    pre, login = _login(ctx, _TR)
    s = ctx.rng.choice(watched)
    text = _one(ctx.rng, f"Take {s} off my watchlist.", f"Remove {s} from the stocks I watch.")
    calls = [*login, _c("remove_stock_from_watchlist", symbol=s)]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("tr.watchlist", _TR)
def _tr_watchlist(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    text = _one(ctx.rng, "Which stocks are on my watchlist?", "Show me my watchlist.")
    return _Draft(_join(pre, text), [*login, _c("get_watchlist")])


@_template("tr.fund", _TR)
def _tr_fund(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    amount = float(ctx.rng.randrange(100, 10_000, 50))
    text = _one(
        ctx.rng,
        f"Deposit ${amount:.2f} into my trading account.",
        f"Fund my account with ${amount:.2f}.",
    )
    return _Draft(_join(pre, text), [*login, _c("fund_account", amount=amount)], changes=True)


@_template("tr.account", _TR)
def _tr_account(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    text = _one(ctx.rng, "What's my trading account balance?", "Show me my account details.")
    return _Draft(_join(pre, text), [*login, _c("get_account_info")])


@_template("tr.tech_filter", _TR)
def _tr_tech_filter(ctx: _Ctx) -> _Draft | None:
    tech = ctx.peek([_c("get_available_stocks", sector="Technology")])[1][0]["stock_list"]
    low = float(ctx.rng.randrange(0, 400, 25))
    high = low + float(ctx.rng.randrange(100, 800, 50))
    text = _one(
        ctx.rng,
        f"Which technology stocks cost between ${low:.0f} and ${high:.0f}?",
        f"List the tech sector stocks priced from ${low:.0f} to ${high:.0f}.",
    )
    calls = [
        _c("get_available_stocks", sector="Technology"),
        _c("filter_stocks_by_price", stocks=tech, min_price=low, max_price=high),
    ]
    return _Draft(text, calls)


@_template("tr.market_status", _TR)
def _tr_market_status(ctx: _Ctx) -> _Draft | None:
    now = ctx.peek([_c("get_current_time")])[1][0]["current_time"]
    text = _one(
        ctx.rng,
        "Check the current time and update the market status to match.",
        "Is the market open? Get the time and refresh the market status.",
    )
    calls = [_c("get_current_time"), _c("update_market_status", current_time_str=now)]
    return _Draft(text, calls)


@_template("tr.withdraw", _TR)
def _tr_withdraw(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TR)
    if inst.market_status != "Open":
        return None
    pre, login = _login(ctx, _TR)
    account, balance = inst.account_info["account_id"], inst.account_info["balance"]
    amount = float(ctx.rng.randrange(50, max(100, int(balance // 2)), 50))
    text = _one(
        ctx.rng,
        f"Withdraw ${amount:.2f} from account {account}.",
        f"Take ${amount:.2f} out of my trading account {account}.",
    )
    call = _c("make_transaction", account_id=account, xact_type="withdrawal", amount=amount)
    return _Draft(_join(pre, text), [*login, call], changes=True)


@_template("tr.history", _TR)
def _tr_history(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TR)
    text = _one(ctx.rng, "List all my order IDs.", "What orders have I placed so far?")
    return _Draft(_join(pre, text), [*login, _c("get_order_history")])


@_template("tr_math.holding_value", _TR, _MATH)
def _tr_math_holding_value(ctx: _Ctx) -> _Draft | None:
    stocks = ctx.inst(_TR).stocks
    (s1, s2), (n1, n2) = (
        ctx.rng.sample(sorted(stocks), 2),
        (ctx.rng.randint(1, 60), ctx.rng.randint(1, 60)),
    )
    v1, v2 = (
        ctx.peek([_c("multiply", a=stocks[s]["price"], b=n)])[1][0]["result"]
        for s, n in ((s1, n1), (s2, n2))
    )
    text = _one(
        ctx.rng,
        f"I hold {n1} shares of {s1} and {n2} shares of {s2}. What are they worth together "
        "at current prices?",
        f"What's the total value of my holdings: {n1} {s1} shares plus {n2} {s2} shares?",
    )
    calls = [
        _c("get_stock_info", symbol=s1),
        _c("get_stock_info", symbol=s2),
        _c("multiply", a=stocks[s1]["price"], b=n1),
        _c("multiply", a=stocks[s2]["price"], b=n2),
        _c("add", a=v1, b=v2),
    ]
    return _Draft(text, calls)


@_template("tr_math.watch_average", _TR, _MATH)
def _tr_math_watch_average(ctx: _Ctx) -> _Draft | None:
    inst = ctx.inst(_TR)
    watched = [s for s in inst.watch_list if s in inst.stocks]
    if len(watched) < 2 or len(watched) != len(inst.watch_list):
        return None
    pre, login = _login(ctx, _TR)
    text = _one(
        ctx.rng,
        "What's the average current price of the stocks on my watchlist?",
        "Average the prices of everything I'm watching.",
    )
    calls = [
        *login,
        _c("get_watchlist"),
        *(_c("get_stock_info", symbol=s) for s in watched),
        _c("mean", numbers=[inst.stocks[s]["price"] for s in watched]),
    ]
    return _Draft(_join(pre, text), calls)


@_template("tr_msg.cancel_notify", _TR, _MSG)
def _tr_msg_cancel_notify(ctx: _Ctx) -> _Draft | None:
    if not (ids := _open_orders(ctx)):
        return None
    pre, login = _login(ctx, _MSG)
    i, person = ctx.rng.choice(ids), ctx.rng.choice(_msg_people(ctx))
    uid, note = ctx.inst(_MSG).user_map[person], f"Order {i} has been cancelled."
    text = _one(
        ctx.rng,
        f"Cancel order {i} and message {person} '{note}'",
        f"Call off order {i}, then tell {person} by message: '{note}'",
    )
    calls = [
        *login,
        _c("cancel_order", order_id=i),
        _c("get_user_id", user=person),
        _c("send_message", receiver_id=uid, message=note),
    ]
    return _Draft(_join(pre, text), calls, changes=True)


# --- TravelAPI -------------------------------------------------------------------------------

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


# --- VehicleControlAPI -----------------------------------------------------------------------


def _address(ctx: _Ctx) -> str:
    return f"{ctx.rng.randint(1, 999)} {ctx.rng.choice(_STREETS)}, {ctx.rng.choice(_CAR_CITIES)}"


def _unlocked(ctx: _Ctx) -> list[str]:
    return [d for d, s in ctx.inst(_VC).doorStatus.items() if s == "unlocked"]


@_template("vc.start", _VC)
def _vc_start(ctx: _Ctx) -> _Draft | None:
    if ctx.inst(_VC).engine_state != "stopped":
        return None
    doors = _unlocked(ctx)
    text = _one(
        ctx.rng,
        "Lock all the doors, press the brake pedal fully and start the engine.",
        "Get the car running: doors locked, brake fully pressed, then ignition on.",
    )
    lock = [_c("lockDoors", unlock=False, door=doors)] if doors else []
    calls = [
        *lock,
        _c("pressBrakePedal", pedalPosition=1.0),
        _c("startEngine", ignitionMode="START"),
    ]
    return _Draft(text, calls, lambda w: w.instances[_VC].engine_state == "running", True)


@_template("vc.lock", _VC)
def _vc_lock(ctx: _Ctx) -> _Draft | None:
    if not _unlocked(ctx):
        return None
    text = _one(ctx.rng, "Lock every door of the car.", "Make sure all four doors are locked.")
    calls = [_c("lockDoors", unlock=False, door=list(_DOORS))]
    return _Draft(text, calls, lambda w: w.instances[_VC].remainingUnlockedDoors == 0, True)


@_template("vc.unlock", _VC)
def _vc_unlock(ctx: _Ctx) -> _Draft | None:
    locked = [d for d, s in ctx.inst(_VC).doorStatus.items() if s == "locked"]
    if not locked:
        return None
    door = ctx.rng.choice(locked)
    said = door.replace("_", " ")
    text = _one(ctx.rng, f"Unlock the {said} door.", f"Please open the lock on the {said} door.")
    return _Draft(text, [_c("lockDoors", unlock=True, door=[door])], changes=True)


@_template("vc.headlights", _VC)
def _vc_headlights(ctx: _Ctx) -> _Draft | None:
    mode = "off" if ctx.inst(_VC).headLightStatus == "on" else "on"
    text = _one(ctx.rng, f"Turn the headlights {mode}.", f"Switch {mode} the headlights, please.")
    return _Draft(text, [_c("setHeadlights", mode=mode)], changes=True)


@_template("vc.climate", _VC)
def _vc_climate(ctx: _Ctx) -> _Draft | None:
    unit = ctx.rng.choice(("celsius", "fahrenheit"))
    temp = float(ctx.rng.randint(17, 27) if unit == "celsius" else ctx.rng.randint(62, 80))
    fan, mode = ctx.rng.randrange(10, 101, 10), ctx.rng.choice(("auto", "cool", "heat"))
    text = _one(
        ctx.rng,
        f"Set the climate control to {temp:.0f} degrees {unit}, fan speed {fan}, {mode} mode.",
        f"Make it {temp:.0f} {unit} inside with the fan at {fan} in {mode} mode.",
    )
    call = _c("adjustClimateControl", temperature=temp, unit=unit, fanSpeed=fan, mode=mode)
    return _Draft(text, [call], changes=True)


@_template("vc.fill", _VC)
def _vc_fill(ctx: _Ctx) -> _Draft | None:
    room = 50 - ctx.inst(_VC).fuelLevel
    if room < 2:
        return None
    amount = float(ctx.rng.randint(1, int(room)))
    text = _one(
        ctx.rng,
        f"Add {amount:.0f} gallons of fuel.",
        f"Fill up the tank with {amount:.0f} more gallons.",
    )
    return _Draft(text, [_c("fillFuelTank", fuelAmount=amount)], changes=True)


@_template("vc.fill_liters", _VC)
def _vc_fill_liters(ctx: _Ctx) -> _Draft | None:
    room = 50 - ctx.inst(_VC).fuelLevel
    if room < 5:
        return None
    liters = float(ctx.rng.randint(5, int(room * 3.7)))
    gallons = ctx.peek([_c("liter_to_gallon", liter=liters)])[1][0]["gallon"]
    if gallons > room:
        return None
    text = _one(
        ctx.rng,
        f"I bought {liters:.0f} liters of fuel; convert that to gallons and put it in the tank.",
        f"Pour {liters:.0f} liters into the tank (the tank takes gallons).",
    )
    calls = [_c("liter_to_gallon", liter=liters), _c("fillFuelTank", fuelAmount=gallons)]
    return _Draft(text, calls, changes=True)


@_template("vc.tires", _VC)
def _vc_tires(ctx: _Ctx) -> _Draft | None:
    text = _one(ctx.rng, "Check my tire pressure.", "Are my tires properly inflated?")
    return _Draft(text, [_c("check_tire_pressure")])


@_template("vc.tire_shop", _VC)
def _vc_tire_shop(ctx: _Ctx) -> _Draft | None:
    tires = ctx.peek([_c("check_tire_pressure")])[1][0]
    text = _one(
        ctx.rng,
        "Check the tire pressure; if it is not healthy, find the nearest tire shop and "
        "navigate there.",
        "If my tires need attention, set the navigation to the closest tire shop (check the "
        "pressure first).",
    )
    calls = [_c("check_tire_pressure")]
    if not tires["healthy_tire_pressure"]:
        shop = ctx.peek([_c("find_nearest_tire_shop")])[1][0]["shopLocation"]
        calls += [_c("find_nearest_tire_shop"), _c("set_navigation", destination=shop)]
    return _Draft(text, calls)


@_template("vc.navigate", _VC)
def _vc_navigate(ctx: _Ctx) -> _Draft | None:
    place = _address(ctx)
    text = _one(ctx.rng, f"Navigate to {place}.", f"Set the GPS destination to {place}.")
    return _Draft(text, [_c("set_navigation", destination=place)], changes=True)


@_template("vc.distance", _VC)
def _vc_distance(ctx: _Ctx) -> _Draft | None:
    a, b, _ = ctx.rng.choice(_car_distances())
    za, zb = (ctx.peek([_c("get_zipcode_based_on_city", city=c)])[1][0]["zipcode"] for c in (a, b))
    text = _one(
        ctx.rng,
        f"How far is it from {a} to {b}?",
        f"Estimate the driving distance between {a} and {b}.",
    )
    calls = [
        _c("get_zipcode_based_on_city", city=a),
        _c("get_zipcode_based_on_city", city=b),
        _c("estimate_distance", cityA=za, cityB=zb),
    ]
    return _Draft(text, calls)


@_template("vc.range", _VC)
def _vc_range(ctx: _Ctx) -> _Draft | None:
    miles = float(ctx.rng.randrange(50, 1200, 10))
    text = _one(
        ctx.rng,
        f"Can I drive {miles:.0f} miles on the fuel I have now?",
        f"Is my current fuel enough for a {miles:.0f}-mile trip?",
    )
    return _Draft(text, [_c("estimate_drive_feasibility_by_mileage", distance=miles)])


@_template("vc.parking_brake", _VC)
def _vc_parking_brake(ctx: _Ctx) -> _Draft | None:
    engaged = ctx.inst(_VC).parkingBrakeStatus == "engaged"
    mode = "release" if engaged else "engage"
    text = _one(ctx.rng, f"{mode.title()} the parking brake.", f"Please {mode} the handbrake.")
    return _Draft(text, [_c("activateParkingBrake", mode=mode)], changes=True)


@_template("vc.cruise", _VC)
def _vc_cruise(ctx: _Ctx) -> _Draft | None:
    if ctx.inst(_VC).engine_state != "running":
        return None
    speed, gap = float(ctx.rng.randrange(30, 121, 5)), float(ctx.rng.randrange(20, 100, 5))
    text = _one(
        ctx.rng,
        f"Turn on cruise control at {speed:.0f} mph, keeping {gap:.0f} meters from the car ahead.",
        f"Activate cruise control: {speed:.0f} mph with a {gap:.0f} m gap.",
    )
    call = _c("setCruiseControl", speed=speed, activate=True, distanceToNextVehicle=gap)
    return _Draft(text, [call], changes=True)


_DISPLAY = (
    ("fuel", "fuel level"),
    ("battery", "battery voltage"),
    ("doors", "door lock status"),
    ("climate", "climate settings"),
    ("headlights", "headlight status"),
    ("parkingBrake", "parking brake status"),
    ("engine", "engine state"),
)


@_template("vc.status", _VC)
def _vc_status(ctx: _Ctx) -> _Draft | None:
    option, said = ctx.rng.choice(_DISPLAY)
    text = _one(ctx.rng, f"What's the car's {said}?", f"Display the {said} of the vehicle.")
    return _Draft(text, [_c("displayCarStatus", option=option)])


@_template("vc.fuel_liters", _VC)
def _vc_fuel_liters(ctx: _Ctx) -> _Draft | None:
    fuel = ctx.inst(_VC).fuelLevel
    text = _one(
        ctx.rng,
        "How many liters of fuel are in the tank right now?",
        "Read the fuel gauge and tell me the amount in liters.",
    )
    calls = [_c("displayCarStatus", option="fuel"), _c("gallon_to_liter", gallon=fuel)]
    return _Draft(text, calls)


@_template("vc_math.tire_average", _VC, _MATH)
def _vc_math_tire_average(ctx: _Ctx) -> _Draft | None:
    car = ctx.inst(_VC)
    pressures = [
        car.frontLeftTirePressure,
        car.frontRightTirePressure,
        car.rearLeftTirePressure,
        car.rearRightTirePressure,
    ]
    text = _one(
        ctx.rng,
        "Check the four tire pressures and give me their average.",
        "What's the mean pressure across my tires?",
    )
    return _Draft(text, [_c("check_tire_pressure"), _c("mean", numbers=pressures)])


@_template("vc_tw.navigate_tweet", _VC, _TW)
def _vc_tw_navigate_tweet(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TW)
    place = _address(ctx)
    city = place.rpartition(", ")[2]
    content = f"On my way to {city}!"
    text = _one(
        ctx.rng,
        f"Navigate to {place}, then tweet '{content}'",
        f"Set the destination to {place} and post '{content}' on Twitter.",
    )
    calls = [
        _c("set_navigation", destination=place),
        *login,
        _c("post_tweet", content=content, tags=[], mentions=[]),
    ]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("vc_tk.tire_ticket", _VC, _TK)
def _vc_tk_tire_ticket(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _TK)
    p = ctx.rng.randint(2, 5)
    title, desc = "Tire pressure check", "Tire pressure reading requested after the check."
    text = _one(
        ctx.rng,
        f"Check my tire pressure, then open a ticket titled '{title}' with the description "
        f"'{desc}' at priority {p}.",
        f"After checking the tires, file a priority {p} ticket '{title}': '{desc}'",
    )
    calls = [
        _c("check_tire_pressure"),
        *login,
        _c("create_ticket", title=title, description=desc, priority=p),
    ]
    return _Draft(_join(pre, text), calls, changes=True)


@_template("vc_msg.eta", _VC, _MSG)
def _vc_msg_eta(ctx: _Ctx) -> _Draft | None:
    pre, login = _login(ctx, _MSG)
    place, person = _address(ctx), ctx.rng.choice(_msg_people(ctx))
    uid, note = ctx.inst(_MSG).user_map[person], f"Heading to {place} now."
    text = _one(
        ctx.rng,
        f"Navigate to {place} and message {person} '{note}'",
        f"Set the GPS to {place}, then send {person} the message '{note}'",
    )
    calls = [
        _c("set_navigation", destination=place),
        *login,
        _c("get_user_id", user=person),
        _c("send_message", receiver_id=uid, message=note),
    ]
    return _Draft(_join(pre, text), calls, changes=True)


TEMPLATES: Mapping[str, frozenset[str]] = {t.name: t.classes for t in _REGISTRY}
"""Every template's name (``<classes>.<goal>``) and the classes its calls use."""

# ---------------------------------------------------------------------------------------------
# Disjointness from BFCL


def normalise_query(text: str) -> str:
    """Lower case, letters and digits only, single spaces (the text the checks compare)."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class _BfclIndex:
    """BFCL's multi-turn queries and initial configs. Near-duplicates are found by prefix
    filtering: with words ordered rarest first, two word sets at Jaccard >= J share a word
    among the first ``n - ceil(J n) + 1`` of each (``n`` its size), so only the queries
    indexed under the probe's prefix words are compared."""

    def __init__(self, entries: Iterable[MultiTurnEntry]) -> None:
        queries, configs, scenarios = set(), set(), set()
        for e in entries:
            configs.add(_canonical(e.initial_config))
            for c, scenario in e.initial_config.items():
                scenarios.add((c, _canonical(scenario)))
            queries.update(normalise_query(m["content"]) for t in e.turns for m in t)
        self.queries = frozenset(queries)
        self.configs = frozenset(configs)
        self.scenarios = frozenset(scenarios)
        self.sets = [frozenset(q.split()) for q in sorted(self.queries)]
        self.df = Counter(w for words in self.sets for w in words)
        self.postings: dict[str, list[int]] = {}
        for i, words in enumerate(self.sets):
            for w in self._prefix(words):
                self.postings.setdefault(w, []).append(i)

    def _prefix(self, words: frozenset[str]) -> list[str]:
        size = len(words) - math.ceil(NEAR_DUPLICATE_JACCARD * len(words)) + 1
        return sorted(words, key=lambda w: (self.df.get(w, 0), w))[:size]

    def config_seen(self, config: Mapping[str, Any]) -> str | None:
        if _canonical(config) in self.configs:
            return "initial_config equals a BFCL entry's"
        for c, scenario in config.items():
            if (c, _canonical(scenario)) in self.scenarios:
                return f"initial_config[{c!r}] equals a BFCL entry's"
        return None

    def query_seen(self, text: str) -> str | None:
        norm = normalise_query(text)
        if norm in self.queries:
            return "equal to a BFCL query"
        words = frozenset(norm.split())
        candidates = {i for w in self._prefix(words) for i in self.postings.get(w, ())}
        for i in candidates:
            shared = len(words & self.sets[i])
            if shared / (len(words) + len(self.sets[i]) - shared) >= NEAR_DUPLICATE_JACCARD:
                return "near-duplicate of a BFCL query"
        return None


@cache
def _bfcl_index() -> _BfclIndex:
    return _BfclIndex(e for es in load_all_multi_turn().values() for e in es)


def bfcl_overlaps(entries: Iterable[MultiTurnEntry]) -> list[str]:
    """``"<id>: <why>"`` for every entry whose initial config (whole or one class's) equals a
    BFCL multi-turn entry's, or with a user turn equal to or a near-duplicate of a BFCL query
    (see :func:`normalise_query`, :data:`NEAR_DUPLICATE_JACCARD`); empty when disjoint."""
    index = _bfcl_index()
    out = []
    for e in entries:
        if why := index.config_seen(e.initial_config):
            out.append(f"{e.id}: {why}")
        for t, turn in enumerate(e.turns):
            for m in turn:
                if why := index.query_seen(m["content"]):
                    out.append(f"{e.id} turn {t}: {why}")
    return out


# ---------------------------------------------------------------------------------------------
# Synthesis


def _draw_classes(rng: Random, allowed: Sequence[str]) -> list[str]:
    stateful = [c for c in allowed if c not in STATELESS_CLASSES]
    if not stateful:
        return list(allowed)
    first = rng.choice(stateful)
    others = [c for c in allowed if c != first]
    if others and rng.random() < PAIR_FRACTION:
        return [first, rng.choice(others)]
    return [first]


def _touched(world: World, calls: Iterable[Call]) -> set[str]:
    return {spec.class_name for c in calls if (spec := world.spec(c.name)) is not None}


class _EntryWriter:
    """Builds entry after entry from one seeded generator; counts outcomes in ``report``."""

    def __init__(self, seed: int, classes: Sequence[str], turns: tuple[int, int], report: Counter):
        self.rng = Random(seed)
        self.seed = seed
        self.classes = list(classes)
        self.turns = turns
        self.report = report
        self.templates = sorted(_REGISTRY, key=lambda t: t.name)

    def entry(self, index: int) -> MultiTurnEntry | None:
        rng, report = self.rng, self.report
        involved = _draw_classes(rng, self.classes)
        config, facts = {}, {}
        for c in involved:
            if c in _SCENARIOS:
                config[c], facts[c] = _SCENARIOS[c](rng)
        if why := _bfcl_index().config_seen(config):
            report[f"rejected entry: {why}"] += 1
            return None
        ctx = _Ctx(rng, World(config, involved), facts)
        num_turns = rng.randint(*self.turns)
        texts, golds, results, used, touched = [], [], [], [], set()
        for t in range(num_turns):
            turn = self._turn(ctx, involved, used, touched, num_turns - t)
            if turn is None:
                report["rejected entry: no template fits a turn"] += 1
                return None
            name, draft, world, out = turn
            opener = rng.choice(_OPENERS) if t else ""
            texts.append(opener + draft.text)
            golds.append(draft.calls)
            results.append(out)
            used.append(name)
            touched |= _touched(world, draft.calls)
            ctx.world, ctx.told = world, ctx.told | ctx.pending
        if set(involved) - touched:
            report["rejected entry: an involved class is never called"] += 1
            return None
        entry = MultiTurnEntry(
            id=f"{SYNTH_CATEGORY}_{self.seed}_{index}",
            category=SYNTH_CATEGORY,
            turns=tuple(({"role": "user", "content": text},) for text in texts),
            initial_config=config,
            involved_classes=tuple(involved),
            functions=tuple(doc for c in involved for doc in class_function_docs(c)),
            missed_functions={},
            gold=tuple(tuple(render_call(c) for c in calls) for calls in golds),
            long_context=False,
        )
        if why := _replay_problem(entry, results):
            report[f"rejected entry: {why}"] += 1
            return None
        report.update(f"template {n}" for n in used)
        return entry

    def _turn(
        self, ctx: _Ctx, involved: list[str], used: list[str], touched: set[str], left: int
    ) -> tuple[str, _Draft, World, list[str]] | None:
        pool = [t for t in self.templates if t.classes <= set(involved) and t.name not in used]
        untouched = set(involved) - touched
        if len(untouched) >= left:  # the remaining turns must reach every class
            pool = [t for t in pool if t.classes & untouched]
        ctx.rng.shuffle(pool)
        if ctx.rng.random() < CROSS_FIRST:  # goals that join the two classes, when they fit
            pool.sort(key=lambda t: len(t.classes) < 2)
        before = _snapshot(ctx.world)
        failed = 0
        for template in pool:
            ctx.pending = set()
            draft = template.build(ctx)
            if draft is None:
                continue
            world = ctx.world.copy()
            out = world.execute(draft.calls)
            why = _draft_problem(draft, world, out, before)
            if why is None and (dup := _bfcl_index().query_seen(draft.text)):
                why = dup
            if why is None:
                return template.name, draft, world, out
            self.report[f"rejected {template.name}: {why}"] += 1
            failed += 1
            if failed >= _MAX_FAILED_DRAFTS:
                break
        return None


def _draft_problem(draft: _Draft, world: World, results: list[str], before: Any) -> str | None:
    if not draft.calls:
        return "no calls"
    for call, result in zip(draft.calls, results, strict=True):
        if why := _failure(_value(result)):
            return f"{call.name} failed ({why})"
    if draft.changes and world.state() == before:
        return "state unchanged"
    if draft.check is not None and not draft.check(world):
        return "intended state not reached"
    return None


def _replay_problem(entry: MultiTurnEntry, results: list[list[str]]) -> str | None:
    """Why the entry's gold strings do not reproduce the verified run or score valid."""
    world = World.from_entry(entry)
    for t, texts in enumerate(entry.gold):
        if world.execute_gold(texts) != results[t]:
            return f"gold of turn {t} replays differently"
    verdict = score_entry(entry, oracle_outputs(entry))
    return None if verdict.valid else f"oracle scores invalid ({verdict.error_type})"


def synthesize_multi_turn(
    n: int,
    *,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    turns: tuple[int, int] = (2, 4),
    report: Counter | None = None,
) -> list[MultiTurnEntry]:
    """``n`` verified multi-turn entries (see the module docstring), deterministic in ``seed``.

    Args:
        n: entries to return.
        seed: the only source of randomness; entry ids are ``synth_multi_turn_<seed>_<i>``.
        classes: the BFCL classes entries may involve (default all eight); ``MathAPI`` only
            joins a stateful class unless it is the only one.
        turns: the inclusive range of user turns per entry.
        report: a ``Counter`` that receives the templates used (``template <name>``) and the
            drafts and entries rejected, with the reason.

    Raises:
        ValueError: an unknown class, a bad ``turns`` range or ``n < 0``.
        RuntimeError: fewer than ``n`` entries after ``20 * n + 100`` attempts.
    """
    allowed = list(dict.fromkeys(classes if classes is not None else KNOWN_CLASSES))
    unknown = [c for c in allowed if c not in KNOWN_CLASSES]
    if unknown or not allowed:
        raise ValueError(f"classes must be a non-empty subset of {KNOWN_CLASSES}, not {classes}")
    low, high = turns
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        raise ValueError(f"turns must be (low, high) with 1 <= low <= high, not {turns}")
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    counts = report if report is not None else Counter()
    writer = _EntryWriter(seed, allowed, (low, high), counts)
    entries: list[MultiTurnEntry] = []
    for _attempt in range(20 * n + 100):
        if len(entries) == n:
            break
        entry = writer.entry(len(entries))
        if entry is not None:
            entries.append(entry)
    if len(entries) < n:
        raise RuntimeError(f"synthesized only {len(entries)} of {n} multi-turn entries")
    counts["entries"] += len(entries)
    return entries


# ---------------------------------------------------------------------------------------------
# JSON lines


def _record(entry: MultiTurnEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "category": entry.category,
        "question": [[dict(m) for m in turn] for turn in entry.turns],
        "initial_config": entry.initial_config,
        "involved_classes": list(entry.involved_classes),
        "missed_function": {str(t): list(v) for t, v in entry.missed_functions.items()},
        "ground_truth": [list(g) for g in entry.gold],
    }


def write_multi_turn(path: str | Path, entries: Iterable[MultiTurnEntry]) -> Path:
    """Write ``entries`` as JSON lines (BFCL's record plus ``category`` and ``ground_truth``),
    atomically (a temporary file renamed over ``path``)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(_record(entry), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_multi_turn(path: str | Path) -> list[MultiTurnEntry]:
    """The entries of a file written by :func:`write_multi_turn`, checked as the BFCL loader
    checks its records (category defaults to :data:`SYNTH_CATEGORY`).

    Raises:
        BfclEntryError: a malformed record or a repeated id, naming the file and line.
    """
    entries: dict[str, MultiTurnEntry] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            rid = None
            try:
                try:
                    raw = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as exc:
                    raise BfclEntryError("<record>", f"one JSON value per line ({exc})") from None
                rid = raw.get("id") if isinstance(raw, dict) else None
                category = raw.get("category", SYNTH_CATEGORY) if isinstance(raw, dict) else ""
                if not isinstance(category, str) or not category:
                    raise BfclEntryError("category", "a non-empty string")
                answers = {rid: raw.get("ground_truth")} if isinstance(rid, str) else {}
                entry = entry_from_record(raw, category, answers)
                if entry.id in entries:
                    raise BfclEntryError("id", "a unique id (repeated)")
            except BfclEntryError as exc:
                where = rid if isinstance(rid, str) else None
                raise exc.located(file=str(path), line=line_no, entry_id=where) from None
            entries[entry.id] = entry
    return list(entries.values())
