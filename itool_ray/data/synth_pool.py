"""API pools for the synthesizer: a generated multi-domain pool, or specs derived from any
list of tools (e.g. the Seal-Tools pool).

A :class:`ToolSpec` pairs a tool (canonical ToolACE/BFCL shape) with what the query writer
needs: a clause template whose ``{param}`` slots are the required parameters (in the order a
person would say them), a phrase per optional parameter, and a value sampler per parameter.
Every rendered value occurs literally in the clause (booleans through their name words), so
the grounding rules of :mod:`itool_ray.data.verify` hold by construction.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from itool_ray.data.sample import Tool
from itool_ray.data.schema import param_words, tool_properties, tool_required

Sampler = Callable[[random.Random, dict[str, Any]], Any]


@dataclass(frozen=True)
class Slot:
    """One parameter: schema, whether required, phrase (``{v}`` or ``{subkey}`` slots for a
    dict; used for optional parameters), and a sampler ``(rng, args so far) -> value``."""

    name: str
    schema: dict[str, Any]
    required: bool
    phrase: str
    sample: Sampler

    @property
    def nested(self) -> bool:
        return self.schema.get("type") in ("array", "dict")


@dataclass(frozen=True)
class ToolSpec:
    """A tool plus how to ask for it. ``style`` ``"catalog"`` appends optional phrases with a
    space ("... in metric units"); ``"generic"`` lists them ("... with a 1, b 2")."""

    tool: Tool
    domain: str
    template: str  # clause with {param} for required parameters
    slots: tuple[Slot, ...]
    style: str = "catalog"

    @property
    def name(self) -> str:
        return self.tool["name"]

    @property
    def nested(self) -> bool:
        return any(s.nested for s in self.slots)

    def clause(self, args: dict[str, Any]) -> str:
        """The request for one call with ``args``, every value written literally."""
        by_name = {s.name: s for s in self.slots}
        text = substitute(
            self.template,
            {s.name: fill(s.phrase or "{v}", args[s.name]) for s in self.slots if s.required},
        )
        opts = [fill(by_name[k].phrase, v) for k, v in args.items() if not by_name[k].required]
        if not opts:
            return text
        if self.style == "generic":
            joiner = ", " if any(s.required for s in self.slots) else " with "
            return text + joiner + ", ".join(opts)
        return text + " " + " ".join(opts)


def say(value: Any) -> str:
    """How a value is written in the query: lists as "a, b and c", others with ``str``."""
    if isinstance(value, list):
        parts = [say(v) for v in value]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return str(value)


_FIELD = re.compile(r"\{([^{}]+)\}")


def substitute(template: str, values: dict[str, str]) -> str:
    """Replace each ``{key}`` by ``values[key]`` (keys may hold any character but braces)."""
    return _FIELD.sub(lambda m: values[m.group(1)], template)


def fill(template: str, value: Any) -> str:
    """Render a phrase: ``{v}`` gets the value, ``{key}`` a dict value's entries."""
    if isinstance(value, dict):
        return substitute(template, {str(k): say(v) for k, v in value.items()})
    return substitute(template, {"v": say(value)})


# ----------------------------------------------------------------------------- vocabularies
# fmt: off
CITIES = ["Paris", "Tokyo", "Lima", "Nairobi", "Toronto", "Sydney", "Berlin", "Mumbai",
          "Cairo", "Oslo", "Seoul", "Madrid", "Denver", "Lisbon", "Hanoi", "Austin"]
COUNTRIES = ["Canada", "Japan", "Brazil", "Kenya", "Germany", "India", "Mexico", "Norway"]
PEOPLE = ["Alice Chen", "Bob Martin", "Carla Diaz", "Deepak Rao", "Emma Stone", "Farid Khan",
          "Grace Lee", "Hugo Weber", "Ines Costa", "Jamal Wright"]
TICKERS = ["AAPL", "MSFT", "TSLA", "NVDA", "AMZN", "GOOGL", "META", "IBM"]
CURRENCIES = ["USD", "EUR", "JPY", "GBP", "CAD", "INR", "AUD", "CHF"]
AIRPORTS = ["JFK", "LHR", "CDG", "HND", "SFO", "DXB", "SIN", "FRA", "YYZ", "GRU"]
LANGUAGES = ["French", "Spanish", "German", "Japanese", "Swahili", "Italian", "Korean"]
PRODUCTS = ["wireless earbuds", "running shoes", "espresso machine", "yoga mat",
            "mechanical keyboard", "desk lamp", "hiking backpack", "air purifier"]
TEAMS = ["Lakers", "Arsenal", "Yankees", "Real Madrid", "Celtics", "Chiefs", "Barcelona"]
ATHLETES = ["LeBron James", "Stephen Curry", "Lionel Messi", "Serena Williams", "Luka Doncic"]
MOVIES = ["Dune", "Oppenheimer", "Inside Out", "The Matrix", "Spirited Away", "Arrival"]
ARTISTS = ["Taylor Swift", "Coldplay", "Adele", "Bad Bunny", "Billie Eilish", "Muse"]
SONGS = ["Yellow", "Hello", "Shallow", "Imagine", "Halo", "Roxanne", "Clocks", "Jolene"]
INGREDIENTS = ["chickpeas", "spinach", "tofu", "mushrooms", "salmon", "quinoa", "lentils",
               "tomatoes", "garlic", "avocado"]
DRUGS = ["ibuprofen", "warfarin", "aspirin", "metformin", "lisinopril", "amoxicillin"]
TOPICS = ["renewable energy", "space exploration", "artificial intelligence", "inflation",
          "climate policy", "public health"]
JOB_TITLES = ["data analyst", "nurse", "software engineer", "graphic designer", "accountant"]
EVENTS = ["Budget review", "Team standup", "Design sync", "Quarterly planning", "Lunch with Sam"]
PHRASES = ["Where is the train station?", "Thank you for your help", "The meeting starts at noon",
           "I would like a coffee"]
STREETS = ["221 Baker Street", "10 Downing Street", "1600 Amphitheatre Parkway", "5 Rue Cler"]
RESTAURANTS = ["Le Petit Bistro", "Sakura House", "The Green Fork", "Casa Lupita"]
UNITS = ["kilometers", "miles", "meters", "feet", "kilograms", "pounds"]
# fmt: on


def pick(vocab: Sequence[Any]) -> Sampler:
    return lambda rng, _a: rng.choice(vocab)


def pick_many(vocab: Sequence[Any], lo: int = 2, hi: int = 3) -> Sampler:
    return lambda rng, _a: rng.sample(list(vocab), rng.randint(lo, min(hi, len(vocab))))


def integer(lo: int, hi: int) -> Sampler:
    return lambda rng, _a: rng.randint(lo, hi)


def number(lo: float, hi: float, digits: int = 1) -> Sampler:
    """A float with ``digits`` decimals; with ``digits=0`` an int (a valid "number")."""
    if digits == 0:
        return lambda rng, _a: round(rng.uniform(lo, hi))
    return lambda rng, _a: round(rng.uniform(lo, hi), digits)


def date(rng: random.Random, _a: dict[str, Any]) -> str:
    return f"{rng.choice((2025, 2026))}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def clock(rng: random.Random, _a: dict[str, Any]) -> str:
    return f"{rng.randint(7, 21):02d}:{rng.choice((0, 15, 30, 45)):02d}"


def code(prefix: str) -> Sampler:
    return lambda rng, _a: f"{prefix}-{rng.randint(10000, 99999)}"


def email(rng: random.Random, _a: dict[str, Any]) -> str:
    first, last = rng.choice(PEOPLE).lower().split()
    return f"{first}.{last}@example.com"


def other_than(key: str, vocab: Sequence[Any]) -> Sampler:
    return lambda rng, a: rng.choice([v for v in vocab if v != a.get(key)])


def true(_rng: random.Random, _a: dict[str, Any]) -> bool:
    return True


# ------------------------------------------------------------------ slot constructors (DSL)
def S(name: str, desc: str, sample: Sampler, phrase: str = "", req: bool = True) -> Slot:
    return Slot(name, {"type": "string", "description": desc}, req, phrase, sample)


def I(name: str, desc: str, sample: Sampler, phrase: str = "", req: bool = True) -> Slot:  # noqa: E743
    return Slot(name, {"type": "integer", "description": desc}, req, phrase, sample)


def N(name: str, desc: str, sample: Sampler, phrase: str = "", req: bool = True) -> Slot:
    return Slot(name, {"type": "number", "description": desc}, req, phrase, sample)


def B(name: str, desc: str, phrase: str) -> Slot:
    """Optional boolean, set to True when its phrase (which holds its name words) is said."""
    assert param_words(name) in phrase.lower(), (name, phrase)
    return Slot(name, {"type": "boolean", "description": desc}, False, phrase, true)


def E(
    name: str,
    desc: str,
    choices: Sequence[str],
    phrase: str = "",
    req: bool = True,
    sample: Sampler | None = None,
) -> Slot:
    schema = {"type": "string", "enum": list(choices), "description": desc}
    return Slot(name, schema, req, phrase, sample or pick(choices))


def A(
    name: str, desc: str, sample: Sampler, phrase: str = "", req: bool = True, item: str = "string"
) -> Slot:
    schema = {"type": "array", "items": {"type": item}, "description": desc}
    return Slot(name, schema, req, phrase, sample)


def D(name: str, desc: str, fields: Sequence[Slot], phrase: str, req: bool = True) -> Slot:
    schema = {
        "type": "dict",
        "description": desc,
        "properties": {f.name: f.schema for f in fields},
        "required": [f.name for f in fields],
    }
    return Slot(
        name, schema, req, phrase, lambda rng, a: {f.name: f.sample(rng, a) for f in fields}
    )


def T(name: str, domain: str, desc: str, template: str, *slots: Slot) -> ToolSpec:
    tool = {
        "name": name,
        "description": desc,
        "parameters": {
            "type": "dict",
            "properties": {s.name: s.schema for s in slots},
            "required": [s.name for s in slots if s.required],
        },
    }
    return ToolSpec(tool, domain, template, tuple(slots))


# --------------------------------------------------------------- specs for any given tool
_EXAMPLES = re.compile(r"\(e\.g\.,?\s*([^)]*)\)")
_GENERIC = ["Atlas", "Orion", "Maple", "Nova", "Cedar", "Falcon", "Harbor", "Summit"]
_BY_WORD: list[tuple[str, Sampler]] = [
    ("email", email),
    ("date", date),
    ("time", clock),
    ("city", pick(CITIES)),
    ("location", pick(CITIES)),
    ("country", pick(COUNTRIES)),
    ("language", pick(LANGUAGES)),
    ("currency", pick(CURRENCIES)),
    ("name", pick(PEOPLE)),
    ("id", code("ID")),
]


def _examples(description: str) -> list[str]:
    """``"... (e.g., DNA, fingerprints)"`` -> ``["DNA", "fingerprints"]``."""
    m = _EXAMPLES.search(description)
    if not m:
        return []
    out = [x.strip().strip("'\"").strip() for x in m.group(1).split(",")]
    return [x for x in out if x and len(x) <= 40 and "{" not in x and "}" not in x]


def _sampler_for(name: str, schema: dict[str, Any]) -> Sampler:
    t = str(schema.get("type", "string")).lower()
    desc = str(schema.get("description", ""))
    if schema.get("enum"):
        return pick(list(schema["enum"]))
    if t in ("integer", "int"):
        ints = [int(x) for x in _examples(desc) if re.fullmatch(r"-?\d+", x)]
        return pick(ints) if ints else integer(1, 100)
    if t in ("number", "float"):
        return number(1, 100, 1)
    if t in ("boolean", "bool"):
        return lambda rng, _a: rng.random() < 0.5
    if t in ("array", "list", "tuple"):
        item = _sampler_for(name, schema.get("items") or {"type": "string"})
        return lambda rng, a: list(dict.fromkeys(item(rng, a) for _ in range(rng.randint(1, 3))))
    if t in ("dict", "object"):
        props = schema.get("properties") or {}
        subs = {k: _sampler_for(k, v) for k, v in props.items() if isinstance(v, dict)}
        return lambda rng, a: {k: s(rng, a) for k, s in subs.items()}
    examples = _examples(desc)
    if examples:
        return pick(examples)
    words = param_words(name).split()
    for word, sampler in _BY_WORD:
        if word in words:
            return sampler
    return pick(_GENERIC)


def _generic_phrase(name: str, schema: dict[str, Any]) -> str:
    words = param_words(name)
    t = str(schema.get("type", "string")).lower()
    if t in ("boolean", "bool"):
        return words + " set to {v}"
    if t in ("dict", "object") and schema.get("properties"):
        inner = ", ".join(f"{param_words(k)} {{{k}}}" for k in schema["properties"])
        return f"{words} ({inner})"
    return words + " {v}"


def _intent(tool: Tool) -> str:
    desc = str(tool.get("description", "")).strip().split(". ")[0].rstrip(".").strip()
    if not desc:
        return f"use {tool['name']}"
    if len(desc) > 1 and desc[1].isupper():  # an acronym: keep its case
        return desc
    return desc[0].lower() + desc[1:]


def spec_from_tool(tool: Tool, domain: str = "") -> ToolSpec:
    """A spec for any canonical tool: the clause is the first sentence of its description,
    then ``with <param words> <value>, ...`` (required parameters through the template,
    optional ones through their phrases, the same form)."""
    props = tool_properties(tool)
    required = [r for r in tool_required(tool) if r in props]
    slots = tuple(
        Slot(
            name,
            schema,
            name in required,
            _generic_phrase(name, schema),
            _sampler_for(name, schema),
        )
        for name, schema in props.items()
        if isinstance(schema, dict)
    )
    template = _intent(tool).replace("{", "(").replace("}", ")")
    if required:
        template += " with " + ", ".join("{" + r + "}" for r in required)
    return ToolSpec(tool, domain, template, slots, style="generic")
