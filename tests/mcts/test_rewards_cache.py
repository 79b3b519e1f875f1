"""The cached outcome reward (``CallsOutcome``) scores exactly as the uncached checker
(``UncachedCallsOutcome``: parse the whole response, check it) on real samples: every prefix
of their gold responses and of corrupted ones, and the trees and pairs of a search whose steps
are cut from those responses."""

from __future__ import annotations

import pickle
import random
import zlib
from collections.abc import Sequence
from typing import Any

import pytest

from itool_ray.calls import (
    Call,
    CallParseError,
    CallScanner,
    check_calls,
    ground_truth_from_calls,
    parse_calls,
    parse_partial,
    partial_credit,
    render_call,
    render_calls,
)
from itool_ray.calls.check import correct_from_rows, credit_from_rows, gold_row
from itool_ray.data import Sample, shared_data_root, synthesize
from itool_ray.datasets import load_named
from itool_ray.mcts import MCTSConfig, Step, search
from itool_ray.mcts.rewards import CallsOutcome, UncachedCallsOutcome
from itool_ray.mcts.search import EvalRequest, ExpandRequest

PROSE = ("I cannot help with that.", "[see above] no call", "  ", "[]")


# ----------------------------------------------------------------------------- samples
def _seal_samples() -> list[Sample]:
    if not (shared_data_root() / "seal-tools" / "dev.jsonl").exists():
        return []
    dev = load_named("seal-tools/dev")
    return dev[::70]  # 10 samples: 3 one-call, 7 with 3-6 calls


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    synth = list(synthesize(num_samples=8, seed=3).samples)
    text_gold = Sample("text-gold", synth[0].tools, synth[0].messages, "No tool fits this.")
    return [*_seal_samples(), *synth, text_gold]


def _mutate(value: Any, rng: random.Random) -> Any:
    """A wrong value of the same shape (or a wrong type now and then)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return str(value) if rng.random() < 0.3 else value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "x" if rng.random() < 0.7 else len(value)
    if isinstance(value, list):
        return value[:-1] if value else [1]
    if isinstance(value, dict):
        return {k: _mutate(v, rng) for k, v in value.items()}
    return None


def variants(sample: Sample, rng: random.Random) -> list[str]:
    """The gold response and corrupted versions of it: cut, wrong values, extra, missing and
    reordered calls, another tool, spacing, prose."""
    gold = sample.gold
    calls = parse_calls(gold) or []
    out = [gold, gold[: len(gold) // 2], gold[:-1], gold + " trailing"]
    if calls:
        first = calls[0]
        if first.arguments:
            arg = rng.choice(list(first.arguments))
            wrong = Call(first.name, {**first.arguments, arg: _mutate(first.arguments[arg], rng)})
            out.append(render_calls([wrong, *calls[1:]]))
            missing = Call(first.name, {k: v for k, v in first.arguments.items() if k != arg})
            out.append(render_calls([missing, *calls[1:]]))
        last = calls[-1]
        if last.arguments:
            arg = next(iter(last.arguments))
            wrong = Call(last.name, {**last.arguments, arg: _mutate(last.arguments[arg], rng)})
            out.append(render_calls([*calls[:-1], wrong]))
            out.append(render_calls([*calls[:-1], Call(last.name, {**last.arguments, "zz": 1})]))
        out.append(render_calls([*calls, calls[0]]))  # extra (duplicate) call
        out.append(render_calls(calls[1:] + calls[:1]))  # reordered
        if len(calls) > 1:
            out.append(render_calls(calls[:-1]))  # missing call
        other = [t for t in sample.tools if t.get("name") not in {c.name for c in calls}]
        if other:
            props = list((other[0].get("parameters") or {}).get("properties") or {})
            extra = Call(other[0]["name"], {p: "a" for p in props[:2]})
            out.append(render_calls([*calls, extra]))
            out.append(render_calls([extra, *calls]))
        out.append("[ " + " ,\n ".join(render_call(c) for c in calls) + " ]")  # spacing
        out.append("[" + render_call(calls[0]) + " " + render_call(calls[0]) + "]")  # no comma
        out.append(gold.replace("(", "( ", 1).replace('"', "'", 2))
    out.extend(PROSE)
    return list(dict.fromkeys(out))


def _all_texts(samples: Sequence[Sample]) -> list[tuple[Sample, str]]:
    rng = random.Random(0)
    return [(s, v) for s in samples for v in variants(s, rng)]


# ----------------------------------------------------------------------------- parts
def test_scanner_copy_continues_exactly_and_leaves_the_original():
    texts = [
        "[f(a=\"x, y)\", b=[1, {\"k\": (2, 3)}]), g(c='''q\"''')]",
        '[f(a=1), g(b="unterminated\n")]',
        '  [Market Trends API(q="a\\"b"), x.y-z(n=-1.5)]  ',
        "[f(a=1)] tail",
        "[see above]",
    ]
    for text in texts:
        whole = parse_partial(text)
        try:
            verdict: Any = parse_calls(text)
        except CallParseError as exc:
            verdict = (exc.reason, exc.position)
        for cut in range(len(text) + 1):
            head = CallScanner()
            before = head.feed(text[:cut])
            tail = head.copy()
            after = tail.feed(text[cut:])
            assert head.snapshot() == before and head.text == text[:cut]  # untouched
            assert (after.is_call_list, after.calls, after.call_ends, after.closed) == (
                whole.is_call_list,
                whole.calls,
                whole.call_ends,
                whole.closed,
            )
            assert (after.end, after.in_string) == (whole.end, whole.in_string)
            assert (after.error is None) == (whole.error is None)
            if whole.error is not None:
                assert (after.error.reason, after.error.position) == (
                    whole.error.reason,
                    whole.error.position,
                )
            try:
                got: Any = tail.finish()
            except CallParseError as exc:
                got = (exc.reason, exc.position)
            assert got == verdict


def test_row_judges_equal_the_checker(samples):
    for sample, text in _all_texts(samples):
        gold_calls = parse_calls(sample.gold)
        gold = None if gold_calls is None else ground_truth_from_calls(gold_calls)
        try:
            predicted = parse_calls(text)
        except CallParseError:
            continue
        rows = (
            None
            if predicted is None
            else [gold_row(c, gold or [], sample.tools) for c in predicted]
        )
        want = check_calls(predicted, gold, sample.tools).correct
        assert correct_from_rows(rows, gold) == want, (sample.id, text)
        for n in range(len(predicted or []) + 1):
            got = credit_from_rows((rows or [])[:n], gold)
            assert got == partial_credit((predicted or [])[:n], gold, sample.tools), (text, n)


# ----------------------------------------------------------------------------- prefixes
def _compare(cached: CallsOutcome, items) -> int:
    for sample, response, terminal, want in items:
        got = cached(sample, response, terminal)
        assert got == want and type(got) is type(want), (sample.id, response, terminal, got, want)
    return len(items)


@pytest.fixture(scope="module")
def prefixes(samples) -> list[tuple[Sample, str, bool, float]]:
    """Every prefix of every gold and corrupted response, terminal and not, with the
    uncached checker's score."""
    plain = UncachedCallsOutcome()
    return [
        (s, text[:n], terminal, plain(s, text[:n], terminal))
        for s, text in _all_texts(samples)
        for n in range(len(text) + 1)
        for terminal in (False, True)
    ]


@pytest.mark.parametrize(("max_states", "max_steps"), [(1 << 17, 1 << 14), (7, 3)])
def test_every_prefix_of_gold_and_corrupted_responses(prefixes, max_states, max_steps):
    """All prefixes in order (each continues the previous one's scanner state), then shuffled
    (other split points, revisits); a tiny ``max_states`` makes the cache evict all along."""
    assert {want for *_, want in prefixes} >= {0.0, 1.0, 0.5}
    if max_states < 100:
        ids = set(list(dict.fromkeys(str(s.id) for s, *_ in prefixes))[::3])
        prefixes = [x for x in prefixes if str(x[0].id) in ids][::2]
    cached = CallsOutcome(max_results=97, max_states=max_states, max_steps=max_steps)
    assert _compare(cached, prefixes) > 5_000
    assert cached._size == sum(e.size for e in cached._samples.values()) <= max_states
    if max_states == 1 << 17:  # in order, each character is scanned about once
        assert cached.scanned < 2 * sum(len(r) for _, r, t, _ in prefixes if t) // 100
    shuffled = list(prefixes)
    random.Random(max_states).shuffle(shuffled)
    _compare(cached, shuffled)
    assert cached.hits > 0 and len(cached._results) <= 97
    assert cached._size == sum(e.size for e in cached._samples.values()) <= max_states


def test_without_tool_schemas(samples):
    plain = UncachedCallsOutcome(use_tools=False)
    items = [
        (s, t[:n], terminal, plain(s, t[:n], terminal))
        for s, t in _all_texts(samples[::4])
        for n in range(len(t) + 1)
        for terminal in (False, True)
    ]
    _compare(CallsOutcome(use_tools=False), items)


def test_the_samples_are_real(samples):
    if shared_data_root().joinpath("seal-tools", "dev.jsonl").exists():
        assert sum(str(s.id).startswith("dev-difficult") for s in samples) >= 5
    assert sum(len(parse_calls(s.gold) or []) >= 3 for s in samples) >= 5


def test_pickle_ships_settings_not_caches(samples):
    cached = CallsOutcome(max_results=5, max_states=9)
    cached(samples[0], samples[0].gold, True)
    again = pickle.loads(pickle.dumps(cached))
    assert (again.max_results, again.max_states, again._use_tools) == (5, 9, True)
    assert not again._results and not again._samples
    assert again(samples[0], samples[0].gold, True) == 1.0
    with pytest.raises(ValueError):
        CallsOutcome(max_states=0)


# ----------------------------------------------------------------------------- a search
def _steps_of(text: str) -> list[str]:
    """A response cut into steps the way a policy emits them: one call with its separator
    per step (``[f(a=1), ``, ``g(b=2)]``); an unparsable text in chunks of 9 characters."""
    partial = parse_partial(text)
    cuts = []
    for end in partial.call_ends:
        j = end
        while j < len(text) and text[j] in ", \n":
            j += 1
        if j < len(text):
            cuts.append(j)
    if partial.error is not None or partial.is_call_list is not True:
        cuts = list(range(9, len(text), 9))
    bounds = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


class VariantEngine:
    """A deterministic policy over real samples: at a prefix, the next steps of those gold and
    corrupted responses that start with it (real call texts, unlike ``FakeEngine``'s)."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        rng = random.Random(4)
        self.paths = {str(s.id): [_steps_of(v) for v in variants(s, rng)] for s in samples}

    def expand(self, requests: Sequence[ExpandRequest]) -> list[list[Step] | None]:
        out: list[list[Step] | None] = []
        for r in requests:
            cands = []
            for steps in self.paths[r.tree_id]:
                done = ""
                for i, s in enumerate(steps):
                    if done == r.prefix:
                        ids = tuple(ord(ch) for ch in s)
                        lp = -(zlib.crc32(s.encode()) % 97) / 50.0 - 0.01
                        cands.append(Step(s, ids, lp, i == len(steps) - 1, "step"))
                        break
                    done += s
                    if not r.prefix.startswith(done):
                        break
            if not cands:
                cands = [Step(" done.", (1,), -1.0, True, "stop")]
            rot = r.seed % len(cands)
            out.append((cands[rot:] + cands[:rot])[: r.k])
        return out

    def evaluate(self, requests: Sequence[EvalRequest]) -> list[float]:
        return [zlib.crc32(r.response.encode()) % 1001 / 1000.0 for r in requests]


class Recording:
    def __init__(self, outcome) -> None:
        self.outcome = outcome
        self.calls: list[tuple[Any, str, bool]] = []

    def __call__(self, sample, response, terminal):
        self.calls.append((sample, response, terminal))
        return self.outcome(sample, response, terminal)


def test_search_trees_and_pairs_equal_the_uncached_checker(samples):
    cfg = MCTSConfig(k=4, simulations=24, max_depth=8, seed=7)
    engine = VariantEngine(samples)
    cached = Recording(CallsOutcome())
    fast = search(samples, engine, cfg, reward_fn=cached)
    slow = search(samples, engine, cfg, reward_fn=UncachedCallsOutcome())
    assert fast.pairs == slow.pairs and len(fast.pairs) > 2 * len(samples)
    for a, b in zip(fast.trees, slow.trees, strict=True):
        assert a.to_dict() == b.to_dict()
    assert len(cached.calls) > 10 * len(samples)
    assert {o for p in fast.pairs for o in (p.chosen_o, p.rejected_o)} >= {0.0, 1.0}
    plain = UncachedCallsOutcome()
    _compare(CallsOutcome(), [(*c, plain(*c)) for c in cached.calls])


def test_gold_parsed_once_per_sample(samples, monkeypatch):
    import itool_ray.calls as calls

    parsed = []
    real = calls.parse_calls
    monkeypatch.setattr(calls, "parse_calls", lambda text: parsed.append(text) or real(text))
    cached = CallsOutcome(max_states=5)  # evicts the scan states, keeps the golds
    for _ in range(3):
        for s, text in _all_texts(samples[:4]):
            cached(s, text, True)
            cached(s, text[: len(text) // 2], False)
    assert parsed == [s.gold for s in samples[:4]]
