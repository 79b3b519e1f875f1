"""The callable functions of BFCL's multi-turn classes and the checks on their arguments.

A :class:`FunctionSpec` joins a function's doc (``multi_turn_func_doc/``) and its Python
signature; :func:`check_arguments` says why a keyword dict cannot be passed to it, in
Python's own ``TypeError`` wording where Python would refuse the call (which is what BFCL's
``eval`` returns), and in the same style for what only the doc refuses:

* an unexpected keyword (not documented, or not in the signature), a missing required one;
* a value of the wrong JSON type for the doc (``string``, ``integer``, ``float``,
  ``boolean``, ``array`` with its ``items``, ``dict``; ``None`` only where the Python
  default is ``None``); BFCL has no such check, and every BFCL gold call passes it;
* ``MathAPI`` arguments that would run for minutes or exhaust memory (a precision or a
  rounding beyond :data:`MAX_PRECISION` digits, an integer power beyond
  :data:`MAX_POWER_DIGITS` digits).
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from bfcl.eval_checker.multi_turn_eval.multi_turn_utils import CLASS_FILE_PATH_MAPPING

from itool_ray.envs.bfcl_data import class_function_docs

MAX_PRECISION = 1_000
"""Largest ``precision`` / ``decimal_places`` accepted by ``MathAPI`` (digits; the gold uses
<= 10; a logarithm at 1,000 digits takes milliseconds, at 10,000 about half a second)."""

MAX_POWER_DIGITS = 100_000
"""Largest integer ``MathAPI.power`` result accepted, in decimal digits."""

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "float": (int, float),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "dict": (dict,),
    "object": (dict,),
}

_ALSO_STRING: frozenset[tuple[str, str]] = frozenset(
    {
        # Documented as integers, but BFCL's own data passes strings: TicketAPI scenarios
        # use ids like "ticket_001" (base_173 closes one), composite_8's gold comments on
        # tweet_id='0'. Accepting a string keeps every gold call executable, as in BFCL.
        ("TicketAPI", "ticket_id"),
        ("TwitterAPI", "tweet_id"),
    }
)


@dataclass(frozen=True)
class FunctionSpec:
    """A callable function of a BFCL class, from its doc and its Python signature.

    Attributes:
        name: the function name (the doc's ``name``).
        class_name: the class it belongs to.
        function: the plain function on the class, called as ``function(instance, **kw)``.
        keywords: the keywords accepted (documented and in the signature), signature order.
        required: the keywords that must be given (doc ``required`` or no default).
        positional: the signature's parameter order (maps a trusted gold's positional args).
        schemas: the doc's property schema per keyword.
        nullable: keywords whose Python default is ``None`` (``None`` is accepted for them).
    """

    name: str
    class_name: str
    function: Callable[..., Any]
    keywords: tuple[str, ...]
    required: tuple[str, ...]
    positional: tuple[str, ...]
    schemas: Mapping[str, Mapping[str, Any]]
    nullable: frozenset[str]

    @property
    def qualname(self) -> str:
        return f"{self.class_name}.{self.name}"


def bfcl_class(class_name: str) -> type:
    """The BFCL class ``class_name`` (``CLASS_FILE_PATH_MAPPING``)."""
    if class_name not in CLASS_FILE_PATH_MAPPING:
        raise ValueError(f"unknown BFCL class {class_name!r}")
    return getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[class_name]), class_name)


@cache
def class_specs(class_name: str) -> Mapping[str, FunctionSpec]:
    """``{name: FunctionSpec}`` for every documented function of one class (cached).

    Raises:
        ValueError: a doc names something that is not a public plain function of the class.
    """
    cls = bfcl_class(class_name)
    specs = {}
    for doc in class_function_docs(class_name):
        name = doc["name"]
        function = inspect.getattr_static(cls, name, None)
        if name.startswith("_") or not inspect.isfunction(function):
            raise ValueError(f"{class_name} doc {name!r} is not a public function of the class")
        specs[name] = _spec(class_name, function, doc)
    return specs


def _spec(class_name: str, function: Callable[..., Any], doc: Mapping[str, Any]) -> FunctionSpec:
    params = list(inspect.signature(function).parameters.values())[1:]  # without self
    for p in params:
        if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            raise ValueError(f"{class_name}.{doc['name']}: parameter {p.name!r} is {p.kind}")
    props = doc["parameters"].get("properties", {})
    doc_required = set(doc["parameters"].get("required", ()))
    keywords = tuple(p.name for p in params if p.name in props)
    required = tuple(
        p.name for p in params if p.default is inspect.Parameter.empty or p.name in doc_required
    )
    schemas = {k: _with_overrides(class_name, k, props[k]) for k in keywords}
    return FunctionSpec(
        name=doc["name"],
        class_name=class_name,
        function=function,
        keywords=keywords,
        required=required,
        positional=tuple(p.name for p in params),
        schemas=schemas,
        nullable=frozenset(p.name for p in params if p.default is None),
    )


def _with_overrides(class_name: str, key: str, schema: Mapping[str, Any]) -> Mapping[str, Any]:
    if (class_name, key) in _ALSO_STRING:
        return {**schema, "type": [schema.get("type"), "string"]}
    return schema


def check_arguments(spec: FunctionSpec, arguments: Mapping[str, Any]) -> str | None:
    """Why ``arguments`` cannot be passed to ``spec`` (Python's wording), or None."""
    for key in arguments:
        if key not in spec.schemas:
            return f"{spec.qualname}() got an unexpected keyword argument '{key}'"
    missing = [k for k in spec.required if k not in arguments]
    if missing:
        return _missing_message(spec.qualname, missing)
    for key, value in arguments.items():
        if value is None and key in spec.nullable:
            continue
        expected = _type_mismatch(value, spec.schemas[key])
        if expected is not None:
            got = type(value).__name__
            return f"{spec.qualname}() argument '{key}' must be {expected}, not {got}"
    return _guard(spec, arguments)


def _missing_message(qualname: str, missing: Sequence[str]) -> str:
    names = [f"'{m}'" for m in missing]
    if len(names) == 1:
        listed = names[0]
    elif len(names) == 2:
        listed = f"{names[0]} and {names[1]}"
    else:
        listed = ", ".join(names[:-1]) + f", and {names[-1]}"
    plural = "argument" if len(names) == 1 else "arguments"
    return f"{qualname}() missing {len(names)} required positional {plural}: {listed}"


def _type_mismatch(value: Any, schema: Mapping[str, Any]) -> str | None:
    """The doc type ``value`` fails to be (e.g. ``"string"``), or None when it matches."""
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds if isinstance(kinds, list) else []
    if not kinds or any(k not in _JSON_TYPES for k in kinds):
        return None  # "any" or an undocumented type: no check
    allowed = tuple(t for k in kinds for t in _JSON_TYPES[k])
    is_bool = isinstance(value, bool)
    if not isinstance(value, allowed) or (is_bool and bool not in allowed):
        return " or ".join(repr(k) for k in kinds)
    kind = next(k for k in kinds if isinstance(value, _JSON_TYPES[k]))
    items = schema.get("items")
    if kind == "array" and isinstance(items, Mapping):
        for item in value:
            inner = _type_mismatch(item, items)
            if inner is not None:
                return f"'array' of {inner}"
    return None


def _guard(spec: FunctionSpec, arguments: Mapping[str, Any]) -> str | None:
    """Refuse ``MathAPI`` arguments that would run for minutes or exhaust memory."""
    if spec.class_name != "MathAPI":
        return None
    for key in ("precision", "decimal_places"):
        value = arguments.get(key)
        if isinstance(value, int) and abs(value) > MAX_PRECISION:
            return f"{spec.qualname}() argument '{key}' is beyond {MAX_PRECISION} digits"
    if spec.name == "power" and _power_digits(arguments) > MAX_POWER_DIGITS:
        return f"{spec.qualname}() result would exceed {MAX_POWER_DIGITS} digits"
    return None


def _power_digits(arguments: Mapping[str, Any]) -> float:
    """Decimal digits of ``base ** exponent`` when both are integers (Python computes it
    exactly, however long it takes), else 0 (a float power overflows at once)."""
    base, exponent = arguments.get("base"), arguments.get("exponent")
    if not (_int(base) and _int(exponent)) or exponent <= 0 or abs(base) <= 1:
        return 0.0
    if exponent > 4 * MAX_POWER_DIGITS:  # |base| >= 2: over 0.3 digits per unit of exponent
        return math.inf
    return exponent * math.log10(abs(base))


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
