"""BFCL v3 multi-turn entries, read from the installed ``bfcl`` package (pure, no eval).

Files (JSON lines, one entry a line) under ``bfcl/data/``:

* ``BFCL_v3_<category>.json``: ``{"id", "question": [[{role, content}, ...] per user turn],
  "initial_config": {class: {...}}, "involved_classes": [class, ...], "path": [...],
  "missed_function": {"<turn>": [name, ...]}}`` (``missed_function`` in miss_func and
  composite only);
* ``possible_answer/BFCL_v3_<category>.json``: ``{"id", "ground_truth": [[call string, ...]
  per turn]}``; the call strings are BFCL's own gold (trusted, sometimes with positional
  arguments and, in a few composite entries, not even valid Python);
* ``multi_turn_func_doc/<file>.json``: the function docs of each class.

Withheld functions (``multi_turn_miss_func``, ``multi_turn_composite``), as BFCL's
``process_multi_turn_test_case`` and ``inference_multi_turn_*`` handle them: the docs of
``missed_function[str(t)]`` are removed from the entry's function list and appended to it at
turn ``t``, whose user message list is empty (BFCL asserts it; its handler then shows the
model the new docs instead of a user message). :meth:`MultiTurnEntry.functions_at` gives the
docs visible at a turn in that order. Neither BFCL's executor nor
:class:`itool_ray.envs.bfcl_exec.World` refuses a call to a withheld function: the model is
not shown it, that is all.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from bfcl.constant import MULTI_TURN_FUNC_DOC_FILE_MAPPING
from bfcl.eval_checker.multi_turn_eval.multi_turn_utils import CLASS_FILE_PATH_MAPPING

MULTI_TURN_CATEGORIES: tuple[str, ...] = (
    "multi_turn_base",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
    "multi_turn_long_context",
    "multi_turn_composite",
)
"""The five BFCL v3 multi-turn categories (BFCL's Multi-turn score is the unweighted mean of
the first four; ``multi_turn_composite`` is reported apart)."""

KNOWN_CLASSES: tuple[str, ...] = tuple(CLASS_FILE_PATH_MAPPING)
"""The executable classes BFCL ships (class name -> module in ``CLASS_FILE_PATH_MAPPING``)."""


class BfclEntryError(ValueError):
    """A malformed BFCL record: ``"<file>:<line> [entry <id>]: field '<f>': expected <e>"``."""

    def __init__(
        self,
        field: str,
        expected: str,
        *,
        entry_id: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.field = field
        self.expected = expected
        self.entry_id = entry_id
        self.file = file
        self.line = line
        where = file or "<bfcl>"
        if line is not None:
            where += f":{line}"
        if entry_id is not None:
            where += f" [entry {entry_id[:80]}]"
        super().__init__(f"{where}: field {field!r}: expected {expected}")

    def located(self, *, file: str, line: int, entry_id: str | None) -> BfclEntryError:
        """A copy with the file, line and (when not known yet) the entry id filled in."""
        return BfclEntryError(
            self.field, self.expected, entry_id=self.entry_id or entry_id, file=file, line=line
        )


@dataclass(frozen=True)
class MultiTurnEntry:
    """One BFCL v3 multi-turn entry with its gold answer.

    Attributes:
        id: BFCL's id (``multi_turn_base_0``).
        category: one of :data:`MULTI_TURN_CATEGORIES`.
        turns: the user turns, each a tuple of ``{"role", "content"}`` messages (empty for
            the turn at which withheld functions are revealed).
        initial_config: ``{class name: scenario}``, loaded by each class's ``_load_scenario``
            (the executor deep-copies it, as BFCL does).
        involved_classes: the classes to instantiate, in BFCL's order.
        functions: the docs of every function of the involved classes, in BFCL's order.
        missed_functions: ``{turn: names}``: functions withheld until that turn.
        gold: per turn, BFCL's gold call strings (``possible_answer``), trusted text.
        long_context: BFCL's flag, ``"long_context"`` or ``"composite"`` in the category.

    The dicts inside (messages, config, function docs, shared between entries) are plain
    JSON values, ready for ``json.dumps``: treat them as read-only.
    """

    id: str
    category: str
    turns: tuple[tuple[Mapping[str, str], ...], ...]
    initial_config: Mapping[str, Any]
    involved_classes: tuple[str, ...]
    functions: tuple[Mapping[str, Any], ...]
    missed_functions: Mapping[int, tuple[str, ...]]
    gold: tuple[tuple[str, ...], ...]
    long_context: bool

    def __hash__(self) -> int:  # the dict fields are not hashable; the id is unique
        return hash((self.category, self.id))

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    def withheld_at(self, turn: int) -> frozenset[str]:
        """Names of the functions not yet revealed at ``turn`` (0-based)."""
        return frozenset(n for t, names in self.missed_functions.items() if t > turn for n in names)

    def functions_at(self, turn: int) -> tuple[Mapping[str, Any], ...]:
        """The docs the model sees at ``turn``: the entry's functions less every withheld one,
        then the docs revealed at each turn up to ``turn``, in turn order (as BFCL appends)."""
        missed = {n for names in self.missed_functions.values() for n in names}
        by_name = {f["name"]: f for f in self.functions}
        visible = [f for f in self.functions if f["name"] not in missed]
        for t in sorted(self.missed_functions):
            if t <= turn:
                visible.extend(by_name[n] for n in self.missed_functions[t])
        return tuple(visible)


def bfcl_data_dir() -> Path:
    """``bfcl/data`` inside the installed ``bfcl`` package (the package's own files, not
    ``$BFCL_DATA_DIR``)."""
    spec = importlib.util.find_spec("bfcl")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'bfcl' package is not installed")
    for loc in spec.submodule_search_locations:
        if (Path(loc) / "data").is_dir():
            return Path(loc) / "data"
    raise FileNotFoundError("the 'bfcl' package has no data/ folder")


@cache
def class_function_docs(class_name: str) -> tuple[Mapping[str, Any], ...]:
    """The function docs of one BFCL class, from the installed package's
    ``multi_turn_func_doc/`` (they belong with its classes; cached)."""
    if class_name not in MULTI_TURN_FUNC_DOC_FILE_MAPPING:
        raise ValueError(f"unknown BFCL class {class_name!r}; known: {KNOWN_CLASSES}")
    path = bfcl_data_dir() / "multi_turn_func_doc" / MULTI_TURN_FUNC_DOC_FILE_MAPPING[class_name]
    docs = []
    for line_no, value in _json_lines(path):
        if not (isinstance(value, dict) and isinstance(value.get("name"), str)):
            raise BfclEntryError(
                "name", "a function doc with a string name", file=str(path), line=line_no
            )
        params = value.get("parameters")
        if not (isinstance(params, dict) and isinstance(params.get("properties", {}), dict)):
            raise BfclEntryError(
                "parameters", "{type, properties, required}", file=str(path), line=line_no
            )
        docs.append(value)
    return tuple(docs)


def load_multi_turn(
    category: str, *, data_dir: str | Path | None = None
) -> tuple[MultiTurnEntry, ...]:
    """All entries of one multi-turn category, with their gold answers, in file order.

    Raises:
        ValueError: ``category`` is not one of :data:`MULTI_TURN_CATEGORIES`.
        BfclEntryError: a malformed record (names the file, line, entry and field), an entry
            without a possible answer, or a possible answer without an entry.
    """
    if category not in MULTI_TURN_CATEGORIES:
        raise ValueError(
            f"unknown multi-turn category {category!r}; one of {MULTI_TURN_CATEGORIES}"
        )
    base = Path(data_dir) if data_dir is not None else bfcl_data_dir()
    path = base / f"BFCL_v3_{category}.json"
    answers = _load_answers(base / "possible_answer" / f"BFCL_v3_{category}.json")
    entries: dict[str, MultiTurnEntry] = {}
    for line_no, raw in _json_lines(path):
        rid = raw.get("id") if isinstance(raw, dict) else None
        try:
            entry = entry_from_record(raw, category, answers)
            if entry.id in entries:
                raise BfclEntryError("id", "a unique id (repeated)")
        except BfclEntryError as exc:
            raise exc.located(file=str(path), line=line_no, entry_id=_str_or_none(rid)) from None
        entries[entry.id] = entry
    unused = set(answers) - set(entries)
    if unused:
        first = sorted(unused)[0]
        raise BfclEntryError(
            "id", "an entry for every possible answer", entry_id=first, file=str(path)
        )
    return tuple(entries.values())


def load_all_multi_turn(
    *, data_dir: str | Path | None = None
) -> dict[str, tuple[MultiTurnEntry, ...]]:
    """``{category: entries}`` for every category in :data:`MULTI_TURN_CATEGORIES`."""
    return {c: load_multi_turn(c, data_dir=data_dir) for c in MULTI_TURN_CATEGORIES}


def entry_from_record(raw: Any, category: str, answers: Mapping[str, Any]) -> MultiTurnEntry:
    """Check one record and build its entry; ``answers`` maps id -> ``ground_truth``."""
    if not isinstance(raw, dict):
        raise BfclEntryError("<record>", "a JSON object")
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid:
        raise BfclEntryError("id", "a non-empty string")
    try:
        return _entry(raw, rid, category, answers)
    except BfclEntryError as exc:
        raise BfclEntryError(exc.field, exc.expected, entry_id=rid) from None


def _entry(raw: dict, rid: str, category: str, answers: Mapping[str, Any]) -> MultiTurnEntry:
    turns = _turns(raw.get("question"))
    classes = _classes(raw.get("involved_classes"))
    config = raw.get("initial_config")
    if not isinstance(config, dict):
        raise BfclEntryError("initial_config", "{class name: {scenario}}")
    for c in classes:  # other keys are ignored, as BFCL does (composite_139 has some)
        if not isinstance(config.get(c, {}), dict):
            raise BfclEntryError(f"initial_config.{c}", "a scenario object")
    functions = tuple(doc for c in classes for doc in class_function_docs(c))
    missed = _missed(raw.get("missed_function", {}), turns, {f["name"] for f in functions})
    if rid not in answers:
        raise BfclEntryError("id", "an entry in possible_answer/")
    gold = _gold(answers[rid], len(turns))
    return MultiTurnEntry(
        id=rid,
        category=category,
        turns=turns,
        initial_config=config,
        involved_classes=classes,
        functions=functions,
        missed_functions=missed,
        gold=gold,
        long_context="long_context" in category or "composite" in category,
    )


def _turns(question: Any) -> tuple[tuple[Mapping[str, str], ...], ...]:
    if not isinstance(question, list) or not question:
        raise BfclEntryError("question", "a non-empty list of turns")
    turns = []
    for t, turn in enumerate(question):
        if not isinstance(turn, list):
            raise BfclEntryError(f"question[{t}]", "a list of {role, content} messages")
        messages = []
        for m, msg in enumerate(turn):
            ok = isinstance(msg, dict) and all(
                isinstance(msg.get(k), str) for k in ("role", "content")
            )
            if not ok:
                raise BfclEntryError(f"question[{t}][{m}]", "{role: str, content: str}")
            messages.append({"role": msg["role"], "content": msg["content"]})
        turns.append(tuple(messages))
    return tuple(turns)


def _classes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise BfclEntryError("involved_classes", "a non-empty list of class names")
    for c in value:
        if c not in CLASS_FILE_PATH_MAPPING:
            raise BfclEntryError("involved_classes", f"class names from {KNOWN_CLASSES}, not {c!r}")
    if len(set(value)) != len(value):
        raise BfclEntryError("involved_classes", "distinct class names")
    return tuple(value)


def _missed(
    value: Any, turns: Sequence[Sequence[Any]], names: set[str]
) -> dict[int, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise BfclEntryError("missed_function", "{turn index: [function name, ...]}")
    out: dict[int, tuple[str, ...]] = {}
    for key, fnames in value.items():
        field = f"missed_function[{key!r}]"
        if not (isinstance(key, str) and key.isdigit() and int(key) < len(turns)):
            raise BfclEntryError(field, f"a turn index below {len(turns)}")
        if not isinstance(fnames, list) or not all(n in names for n in fnames):
            raise BfclEntryError(field, "a list of the involved classes' function names")
        if turns[int(key)]:
            raise BfclEntryError(
                f"question[{key}]", "no user message at a turn revealing functions"
            )
        out[int(key)] = tuple(fnames)
    return out


def _gold(value: Any, num_turns: int) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list) or len(value) != num_turns:
        raise BfclEntryError("ground_truth", f"a list of {num_turns} turns (one per question turn)")
    for t, turn in enumerate(value):
        if not isinstance(turn, list) or not all(isinstance(s, str) for s in turn):
            raise BfclEntryError(f"ground_truth[{t}]", "a list of call strings")
    return tuple(tuple(turn) for turn in value)


def _load_answers(path: Path) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for line_no, raw in _json_lines(path):
        rid = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(rid, str) or rid in answers:
            raise BfclEntryError(
                "id", "a unique string id", entry_id=_str_or_none(rid), file=str(path), line=line_no
            )
        answers[rid] = raw.get("ground_truth")
    return answers


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise BfclEntryError(
                    "<record>", f"one JSON value per line ({exc})", file=str(path), line=line_no
                ) from None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
