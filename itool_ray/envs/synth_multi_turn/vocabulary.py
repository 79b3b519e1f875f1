"""The words the synthesizer draws from (no apostrophes inside values the user quotes), the
short names of BFCL's eight classes, and the small text and value helpers the scenarios and
templates share."""

from __future__ import annotations

from collections.abc import Sequence
from random import Random
from typing import Any

from itool_ray.calls import Call

# BFCL's eight classes, by short name
_FS, _MATH, _MSG, _TW = "GorillaFileSystem", "MathAPI", "MessageAPI", "TwitterAPI"
_TK, _TR, _TV, _VC = "TicketAPI", "TradingBot", "TravelAPI", "VehicleControlAPI"


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
