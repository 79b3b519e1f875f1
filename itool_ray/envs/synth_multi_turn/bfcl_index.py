"""Disjointness from BFCL: its multi-turn queries and initial configs indexed once
(:class:`_BfclIndex`), and the overlaps of synthesized entries with them."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from itool_ray.envs.bfcl_data import MultiTurnEntry, load_all_multi_turn

NEAR_DUPLICATE_JACCARD = 0.75
"""Word-set Jaccard similarity at or above which a user turn counts as a BFCL near-duplicate."""


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
