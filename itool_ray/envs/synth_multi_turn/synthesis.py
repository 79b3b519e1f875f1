"""Synthesis: entries written one after another from one seeded generator
(:class:`_EntryWriter`), each turn's draft verified by executing it and each entry replayed and
scored (:func:`synthesize_multi_turn`); and the entries kept as JSON lines
(:func:`write_multi_turn`, :func:`read_multi_turn`).

The templates are drawn from :data:`~itool_ray.envs.synth_multi_turn.templating._REGISTRY`,
which the package's ``__init__`` fills by importing every ``templates_*`` module."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from random import Random
from typing import Any

from bfcl.eval_checker.multi_turn_eval.multi_turn_utils import STATELESS_CLASSES

from itool_ray.calls import Call, render_call
from itool_ray.envs.bfcl_data import (
    KNOWN_CLASSES,
    BfclEntryError,
    MultiTurnEntry,
    class_function_docs,
    entry_from_record,
)
from itool_ray.envs.bfcl_exec import World
from itool_ray.envs.bfcl_score import oracle_outputs, score_entry
from itool_ray.envs.synth_multi_turn.bfcl_index import _bfcl_index
from itool_ray.envs.synth_multi_turn.scenarios import _SCENARIOS
from itool_ray.envs.synth_multi_turn.templating import (
    _REGISTRY,
    _Ctx,
    _Draft,
    _failure,
    _snapshot,
    _value,
)
from itool_ray.envs.synth_multi_turn.vocabulary import _OPENERS

SYNTH_CATEGORY = "synth_multi_turn"
"""The category (and id prefix) of synthesized entries."""


PAIR_FRACTION = 0.5
"""Probability that an entry involves a second class."""

CROSS_FIRST = 0.5
"""Probability that a turn of a two-class entry first tries the templates using both."""


_MAX_FAILED_DRAFTS = 10  # verified drafts that failed before a turn gives up


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
