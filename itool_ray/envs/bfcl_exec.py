"""Safe execution of tool calls against BFCL's multi-turn classes: no ``eval``, ever.

BFCL's own ``execute_multi_turn_func_call`` prefixes instance names to the call string and
runs ``eval`` on it, so any Python in a model's output would run. Here model output is parsed
by ``itool_ray.calls.parse_calls`` (an AST walker that accepts literals only) into
:class:`~itool_ray.calls.Call` objects, and :meth:`World.execute` dispatches each one by
name to a *public function documented in the involved classes' function docs*, looked up on
the class (never ``getattr`` with a model-chosen name), with keyword arguments checked
against the doc and the method's signature first (:mod:`itool_ray.envs.bfcl_specs`).
Everything else is refused with an error string returned as that call's tool result, never
an exception:

* an unknown name (``os.system``, ``_load_scenario``, ``__class__``, ``GorillaFileSystem.ls``):
  ``Error during execution: name 'os.system' is not defined`` (Python's ``NameError`` text,
  which is what BFCL's ``eval`` returns for a name it does not map);
* arguments refused by :func:`~itool_ray.envs.bfcl_specs.check_arguments` (unexpected or
  missing keywords in Python's ``TypeError`` wording, as BFCL returns them; wrong JSON
  types; ``MathAPI`` arguments too costly to run);
* the calls of one step past ``max_calls`` (default :data:`MAX_CALLS_PER_STEP`);
* any exception raised inside the method: ``Error during execution: <str(exc)>``, BFCL's
  format.

Results are strings as BFCL records them: a ``str`` unchanged, a ``dict`` as ``json.dumps``
(``str`` when that fails), anything else ``str``. Side effects on process state are contained:
``mpmath.mp.dps`` and the ``decimal`` context (which ``MathAPI`` sets globally) and the one
module-level dict a method writes (``VehicleControlAPI``'s ``LONG_WEATHER_EXTENSION``) are
restored after each call (the result string is made before); the loaded instances are
deep-copied once after ``_load_scenario`` so they share nothing with the class modules'
globals (``TravelAPI``'s long-context credit cards are module-level dicts that BFCL's own
instances alias, and would mutate).

A world is rebuilt deterministically from its entry and the steps executed so far
(:func:`replay`); :class:`WorldCache` keeps a few recent worlds (LRU) so a search can extend a
cached prefix instead of replaying from the start.
"""

from __future__ import annotations

import ast
import copy
import decimal
import json
import sys
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

import mpmath
from bfcl.eval_checker.multi_turn_eval.multi_turn_utils import STATELESS_CLASSES

from itool_ray.calls import Call
from itool_ray.envs.bfcl_data import MultiTurnEntry
from itool_ray.envs.bfcl_specs import FunctionSpec, bfcl_class, check_arguments, class_specs

ERROR_PREFIX = "Error during execution: "
"""BFCL's prefix of a failed call's result (``f"Error during execution: {str(e)}"``)."""

MAX_CALLS_PER_STEP = 64
"""Calls executed from one call list; the rest get an error result (BFCL's gold: <= 34)."""


class GoldCallError(ValueError):
    """A gold call string that is valid Python but not a literal-only call of a function."""


def result_string(result: Any) -> str:
    """A method's return value as BFCL records it (``execute_multi_turn_func_call``)."""
    if type(result) is str:
        return result
    if type(result) is dict:
        try:
            return json.dumps(result)
        except Exception:
            return str(result)
    return str(result)


def error_result(message: str) -> str:
    return ERROR_PREFIX + message


_WRITTEN_GLOBALS: dict[str, tuple[str, ...]] = {
    # get_outside_temperature_from_google sets a key of this module-level dict and returns it
    "VehicleControlAPI": ("LONG_WEATHER_EXTENSION",),
}


@cache
def _written_globals(class_name: str) -> tuple[dict[str, Any], ...]:
    module = sys.modules[bfcl_class(class_name).__module__]
    return tuple(getattr(module, name) for name in _WRITTEN_GLOBALS.get(class_name, ()))


@contextmanager
def _contained(class_name: str) -> Iterator[None]:
    """Undo what a call of ``class_name`` writes outside its instance: ``mpmath.mp.dps``
    and the ``decimal`` context (``MathAPI``), the module-level dicts it writes."""
    dps = mpmath.mp.dps
    written = _written_globals(class_name)
    saved = [dict(d) for d in written]
    try:
        with decimal.localcontext():
            yield
    finally:
        mpmath.mp.dps = dps
        for d, before in zip(written, saved, strict=True):
            d.clear()
            d.update(before)


def load_instances(
    initial_config: Mapping[str, Any], involved_classes: Sequence[str], *, long_context: bool
) -> dict[str, Any]:
    """Fresh instances of the involved classes, loaded as BFCL loads them, then deep-copied
    so that they share no object with the class modules' globals."""
    instances = {}
    for class_name in involved_classes:
        instance = bfcl_class(class_name)()
        if class_name not in STATELESS_CLASSES:
            scenario = copy.deepcopy(initial_config.get(class_name, {}))
            instance._load_scenario(scenario, long_context=long_context)
        instances[class_name] = instance
    return copy.deepcopy(instances)


class World:
    """The loaded instances of one entry and the steps executed on them.

    Build with :meth:`from_entry` (or the constructor), run model calls with :meth:`execute`
    and trusted gold strings with :meth:`execute_gold`. :attr:`instances` is what BFCL's
    ``state_checker`` compares.
    """

    def __init__(
        self,
        initial_config: Mapping[str, Any],
        involved_classes: Sequence[str],
        *,
        long_context: bool = False,
    ) -> None:
        self._instances = load_instances(
            initial_config, involved_classes, long_context=long_context
        )
        self._specs: dict[str, FunctionSpec] = {}
        for class_name in involved_classes:  # a later class wins a name, as in BFCL's map
            self._specs.update(class_specs(class_name))
        self._steps: list[tuple[Call, ...]] = []

    @classmethod
    def from_entry(cls, entry: MultiTurnEntry) -> World:
        return cls(entry.initial_config, entry.involved_classes, long_context=entry.long_context)

    @property
    def instances(self) -> dict[str, Any]:
        """``{class name: live instance}`` (a new dict; do not mutate the instances)."""
        return dict(self._instances)

    @property
    def steps(self) -> tuple[tuple[Call, ...], ...]:
        """The call lists executed so far, in order (what :func:`replay` takes)."""
        return tuple(self._steps)

    @property
    def function_names(self) -> frozenset[str]:
        return frozenset(self._specs)

    def spec(self, name: str) -> FunctionSpec | None:
        return self._specs.get(name)

    def state(self) -> dict[str, dict[str, Any]]:
        """The public attributes of each instance (BFCL's state check compares these)."""
        return {
            c: {k: v for k, v in vars(i).items() if not k.startswith("_")}
            for c, i in self._instances.items()
        }

    def copy(self) -> World:
        """An independent copy: instances (random generators included) deep-copied, the
        read-only function specs and the executed calls shared."""
        return copy.deepcopy(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> World:
        twin = object.__new__(World)
        twin._instances = copy.deepcopy(self._instances, memo)
        twin._specs = self._specs
        twin._steps = list(self._steps)
        return twin

    def execute(self, calls: Sequence[Call], *, max_calls: int = MAX_CALLS_PER_STEP) -> list[str]:
        """Run one call list in order; one result string per call, never an exception.

        Only the first ``max_calls`` calls run; each later one gets an error result.
        """
        if not isinstance(max_calls, int) or max_calls < 0:
            raise ValueError(f"max_calls must be an int >= 0, not {max_calls!r}")
        calls = tuple(calls)
        results = [self._run(c) for c in calls[:max_calls]]
        refused = error_result(
            f"too many calls in one step: only the first {max_calls} are executed"
        )
        results.extend(refused for _ in calls[max_calls:])
        self._steps.append(calls)
        return results

    def execute_gold(self, texts: Sequence[str]) -> list[str]:
        """Run BFCL gold call strings (trusted text, positional arguments allowed) as one
        step. A string that is not valid Python gets the result BFCL's ``eval`` gives it
        (``Error during execution: <SyntaxError>``) and runs nothing.

        Raises:
            GoldCallError: a string that parses but is not a literal-only call.
        """
        results, calls = [], []
        for text in texts:
            try:
                call = parse_gold_call(text, self._specs)
            except SyntaxError as exc:
                results.append(error_result(str(exc)))
                continue
            calls.append(call)
            results.append(self._run(call))
        self._steps.append(tuple(calls))
        return results

    def _run(self, call: Call) -> str:
        spec = self._specs.get(call.name) if isinstance(call, Call) else None
        if spec is None:
            name = call.name if isinstance(call, Call) else type(call).__name__
            return error_result(f"name '{name}' is not defined")
        if not isinstance(call.arguments, dict):
            return error_result(f"{spec.qualname}() arguments must be a dict of keywords")
        instance = self._instances[spec.class_name]
        try:
            problem = check_arguments(spec, call.arguments)
            if problem is not None:
                return error_result(problem)
            kwargs = copy.deepcopy(call.arguments)  # the method may keep and mutate them
            with _contained(spec.class_name):
                return result_string(spec.function(instance, **kwargs))
        except Exception as exc:
            return error_result(_exception_text(exc))


def _exception_text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return type(exc).__name__


def parse_gold_call(text: str, specs: Mapping[str, FunctionSpec]) -> Call:
    """One BFCL gold call string as a :class:`Call`, positional arguments named by the
    method's signature (``sort('a.txt')`` -> ``sort(file_name='a.txt')``). Trusted text:
    parsed with ``ast`` and ``ast.literal_eval``, never evaluated.

    Raises:
        SyntaxError: not valid Python (the text BFCL's ``eval`` would report).
        GoldCallError: not a call of a plain name with literal arguments, or positional
            arguments that do not fit the signature.
    """
    node = ast.parse(text, filename="<string>", mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise GoldCallError(f"gold {text[:80]!r} is not a call of a function name")
    name = node.func.id
    try:
        arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        positional = [ast.literal_eval(a) for a in node.args]
    except (ValueError, TypeError, SyntaxError, RecursionError) as exc:
        raise GoldCallError(f"gold {text[:80]!r} has a non-literal argument ({exc})") from None
    if None in arguments:
        raise GoldCallError(f"gold {text[:80]!r} unpacks **kwargs")
    if positional:
        order = specs[name].positional if name in specs else ()
        if len(positional) > len(order) or any(k in arguments for k in order[: len(positional)]):
            raise GoldCallError(f"gold {text[:80]!r}: positional arguments do not fit {name}")
        arguments = dict(zip(order, positional, strict=False)) | arguments
    return Call(name, arguments)


def gold_calls(entry: MultiTurnEntry, turn: int) -> list[Call]:
    """The gold calls of one turn as :class:`Call` objects (keyword form).

    Raises:
        SyntaxError, GoldCallError: as :func:`parse_gold_call`, naming the entry and turn.
    """
    specs: dict[str, FunctionSpec] = {}
    for class_name in entry.involved_classes:
        specs.update(class_specs(class_name))
    calls = []
    for i, text in enumerate(entry.gold[turn]):
        try:
            calls.append(parse_gold_call(text, specs))
        except (SyntaxError, GoldCallError) as exc:
            raise type(exc)(f"{entry.id} turn {turn} gold call {i}: {exc}") from None
    return calls


class WorldCache:
    """A small LRU of worlds keyed by (entry id, executed steps), for :func:`replay`.

    Worlds go in and come out as copies, so a cached world is never changed by its user.
    One cache serves one ``max_calls`` (the key is the steps, not the bound they ran with).
    """

    def __init__(self, max_worlds: int = 16) -> None:
        if max_worlds < 1:
            raise ValueError(f"max_worlds must be >= 1, not {max_worlds}")
        self.max_worlds = max_worlds
        self._worlds: OrderedDict[tuple[str, tuple[tuple[Call, ...], ...]], World] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._worlds)

    def put(self, entry_id: str, world: World) -> None:
        key = (entry_id, world.steps)
        self._worlds[key] = world.copy()
        self._worlds.move_to_end(key)
        while len(self._worlds) > self.max_worlds:
            self._worlds.popitem(last=False)

    def longest_prefix(
        self, entry_id: str, steps: tuple[tuple[Call, ...], ...]
    ) -> tuple[World, int] | None:
        """A copy of the cached world with the longest prefix of ``steps``, and its length."""
        for n in range(len(steps), -1, -1):
            world = self._worlds.get((entry_id, steps[:n]))
            if world is not None:
                self.hits += 1
                self._worlds.move_to_end((entry_id, steps[:n]))
                return world.copy(), n
        self.misses += 1
        return None


def replay(
    entry: MultiTurnEntry,
    steps: Sequence[Sequence[Call]],
    *,
    cache: WorldCache | None = None,
    max_calls: int = MAX_CALLS_PER_STEP,
) -> World:
    """The world after executing ``steps`` (call lists, one :meth:`World.execute` each, with
    ``max_calls``) from the entry's initial config: deterministic, so a search node's state
    is its path (give the ``max_calls`` the steps first ran with).

    With ``cache``, the longest cached prefix is copied and extended, and the initial and
    final worlds are stored.
    """
    steps = tuple(tuple(s) for s in steps)
    found = cache.longest_prefix(entry.id, steps) if cache is not None else None
    if found is None:
        world, done = World.from_entry(entry), 0
        if cache is not None:
            cache.put(entry.id, world)
    else:
        world, done = found
    for step in steps[done:]:
        world.execute(step, max_calls=max_calls)
    if cache is not None and done < len(steps):
        cache.put(entry.id, world)
    return world
