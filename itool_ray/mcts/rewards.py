"""The production outcome term O(s) of R(s) (eq. 6; R itself is composed by
``itool_ray.mcts.core.Reward``). ``CallsOutcome`` is built on ``itool_ray.calls`` (imported
lazily so the tree core never depends on it).

The simulation core scores every candidate of every expansion, ``prefix + step``, with the
prefix shared by the siblings and by the whole path above them; the same step texts come back
under many prefixes. ``CallsOutcome`` therefore caches, all bounded and all exact (its scores
equal ``UncachedCallsOutcome``'s, which parses and checks the whole response every time; the
tests compare them on every prefix of real gold and corrupted responses):

* the sample's gold, parsed once per sample id;
* the score of each distinct ``(sample id, response, terminal)`` (LRU);
* per sample, the scan state of each non-terminal response it scored (its children are that
  response plus one step): the gold rows and ends of its complete calls and where the call
  scanner stands. The longest cached prefix of a response is found among the lengths of the
  sample's cached texts, so only the step is scanned;
* a step after a prefix that stands between calls (nothing pending: before the list, after
  ``[``, after a call, after its ``,``, after ``]``) is scanned once per distinct (position,
  step text), in a canonical context (``[f(), `` for "after a comma"...), whatever the
  prefix and the sample: the call scanner's verdict there depends on nothing else
  (``CallScanner`` keeps only offsets into its own text). A prefix that ends inside a call
  keeps its own ``CallScanner``, continued by ``copy`` + ``feed``;
* per sample and distinct call text, which gold calls the call matches (``gold_row``); a call
  list is judged by a maximum matching over its calls' rows, memoised per distinct rows
  (``credit_from_rows``, ``correct_from_rows``: the figures of ``partial_credit`` and
  ``check_calls``).

A sample id must name one sample (one gold, one tool list) for the lifetime of the object.
Not thread-safe (the tree manager and the searcher call it from one thread).
"""

from __future__ import annotations

import re
from bisect import bisect_right, insort
from collections import OrderedDict
from typing import Any

from itool_ray.mcts.config import OUTCOMES, MCTSConfig


class UncachedCallsOutcome:
    """O(s) from the call checker, against the sample's gold (or its BFCL ground truth).

    * terminal: 1.0 if the response is correct (``check_calls``), else 0.0; a call list that
      does not parse scores 0.0.
    * before the end: partial credit (``partial_credit``) of the calls complete so far: the
      fraction of gold calls they match one-to-one, 0.0 as soon as one cannot match or the
      text can no longer become a valid call list. With a text gold (no tool fits), prose so
      far scores 1.0 and any call 0.0.

    Gold answers are parsed once per sample id and cached; every call parses and checks the
    whole response (the reference the cached ``CallsOutcome`` is tested against).
    """

    def __init__(self, use_tools: bool = True) -> None:
        from itool_ray import calls

        self._calls = calls
        self._use_tools = use_tools
        self._gold: dict[str, Any] = {}

    def gold(self, sample: Any) -> Any:
        """The sample's ground truth in BFCL shape; None when the gold is a text answer."""
        key = str(sample.id)
        if key not in self._gold:
            gt = sample.ground_truth
            if gt is None:
                parsed = self._calls.parse_calls(sample.gold)
                gt = None if parsed is None else self._calls.ground_truth_from_calls(parsed)
            self._gold[key] = gt
        return self._gold[key]

    def __call__(self, sample: Any, response: str, terminal: bool) -> float:
        c = self._calls
        gold = self.gold(sample)
        tools = sample.tools if self._use_tools else None
        if terminal:
            try:
                predicted = c.parse_calls(response)
            except c.CallParseError:
                return 0.0
            return self._finished(predicted, gold, tools)
        partial = c.parse_partial(response)
        if partial.error is not None:
            return 0.0
        if partial.is_call_list is False:  # prose so far
            return 0.0 if gold else 1.0
        return self._so_far(partial.calls, gold, tools)

    def _finished(self, predicted: Any, gold: Any, tools: Any) -> float:
        """O of a finished response that parses (``predicted`` None: a text answer)."""
        return 1.0 if self._calls.check_calls(predicted, gold, tools).correct else 0.0

    def _so_far(self, calls: Any, gold: Any, tools: Any) -> float:
        """O before the end, from the complete calls so far of a call list (or undecided)."""
        return float(self._calls.partial_credit(calls, gold, tools))


# Where a scan stands after a text (``_kind``). Between calls: nothing pending, the scanner's
# next verdicts depend on the position kind alone. MID: inside a name or a call's arguments.
START, OPEN, AFTER, COMMA, CLOSED, MID, PROSE, ERROR = range(8)
_BETWEEN = (START, OPEN, AFTER, COMMA, CLOSED)
_CONTEXT = {START: "", OPEN: "[", AFTER: "[f()", COMMA: "[f(), ", CLOSED: "[]"}
"""A canonical text standing at each between-calls position (the scanner's own states)."""
_SPACE = re.compile(r"\s*")  # the scanner's whitespace
_OPENED = re.compile(r"\s*\[\s*")
_SEPARATED = re.compile(r"\s*,\s*")


def _kind(view: Any, text: str) -> int:
    """Where the scan of ``text`` stands, from its ``PartialCalls`` view (module doc)."""
    if view.error is not None:
        return ERROR
    if view.is_call_list is False:
        return PROSE
    if view.closed:
        return CLOSED
    if view.is_call_list is None:  # before or in the first name
        if _SPACE.fullmatch(text):
            return START
        return OPEN if _OPENED.fullmatch(text) else MID
    ends = view.call_ends
    if ends:
        tail = text[ends[-1] :]
        if _SPACE.fullmatch(tail):
            return AFTER
        if _SEPARATED.fullmatch(tail):
            return COMMA
    return MID


class _State:
    """A scanned text: where its scan stands, whether it is a call list (``icl``, as
    ``PartialCalls.is_call_list``), its complete calls' ends and gold rows; a MID text keeps
    a scanner standing where it does, whose offsets are the text's minus ``shift`` and which
    has ``n`` complete calls."""

    __slots__ = ("kind", "icl", "ends", "rows", "scanner", "shift", "n")

    def __init__(
        self,
        kind: int,
        icl: bool | None,
        ends: tuple[int, ...],
        rows: tuple[tuple[bool, ...], ...],
        scanner: Any = None,
        shift: int = 0,
        n: int = 0,
    ) -> None:
        self.kind, self.icl, self.ends, self.rows = kind, icl, ends, rows
        self.scanner, self.shift, self.n = scanner, shift, n


_ROOT = _State(START, None, (), ())


class _Sample:
    """What ``CallsOutcome`` keeps per sample id."""

    __slots__ = ("gold", "tools", "states", "lengths", "rows")

    def __init__(self, gold: Any, tools: Any) -> None:
        self.gold = gold
        self.tools = tools
        self.states: dict[str, _State] = {"": _ROOT}  # scanned text -> state
        self.lengths: list[int] = [0]  # sorted distinct lengths of ``states``' texts
        self.rows: dict[str, tuple[bool, ...]] = {}  # call text -> gold row

    @property
    def size(self) -> int:
        return len(self.states) + len(self.rows)


class CallsOutcome(UncachedCallsOutcome):
    """``UncachedCallsOutcome``'s scores, cached (module docstring): off the hot path.

    Args:
        use_tools: check arguments against the tool schemas.
        max_results: scores kept, LRU over ``(sample id, response, terminal)``.
        max_states: scan states and call rows kept, over all samples (about 270 bytes
            each plus the response text: the default holds 2,048 trees of 16 terminal
            simulations, about 220,000 entries, in some 90 MB); past it the least recently
            scored samples lose theirs (their gold stays) and their next candidates are
            scanned from the start of the response.
        max_steps: step scans kept (LRU over (position kind, step text)), and as many
            matchings (per distinct rows).
    """

    def __init__(
        self,
        use_tools: bool = True,
        max_results: int = 1 << 16,
        max_states: int = 1 << 19,
        max_steps: int = 1 << 14,
    ) -> None:
        super().__init__(use_tools)
        from itool_ray.calls import check

        self._check = check  # gold_row and the *_from_rows judges
        if min(max_results, max_states, max_steps) < 1:
            raise ValueError("CallsOutcome: max_results, max_states and max_steps must be >= 1")
        self.max_results, self.max_states, self.max_steps = max_results, max_states, max_steps
        self.hits = 0  # scores answered from the LRU
        self.scanned = 0  # characters fed to a scanner
        self.clear()

    def __getstate__(self) -> dict[str, Any]:  # ship the settings, not the caches
        keep = ("_use_tools", "_gold", "max_results", "max_states", "max_steps")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(
            state["_use_tools"], state["max_results"], state["max_states"], state["max_steps"]
        )
        self._gold.update(state["_gold"])

    def clear(self) -> None:
        """Drop the cached scores, states and scans (the parsed golds stay)."""
        self._results: OrderedDict[tuple[str, str, bool], float] = OrderedDict()
        self._samples: OrderedDict[str, _Sample] = OrderedDict()
        self._size = 0  # sum of the samples' sizes
        self._steps: OrderedDict[tuple[int, str], tuple[Any, Any, int]] = OrderedDict()
        self._matchings: dict[tuple[tuple[bool, ...], ...], int] = {}
        self._contexts = {k: self._calls.CallScanner() for k in _CONTEXT}
        for k, text in _CONTEXT.items():
            self._contexts[k].feed(text)

    def __call__(self, sample: Any, response: str, terminal: bool) -> float:
        sid = str(sample.id)
        key = (sid, response, terminal)
        results = self._results
        score = results.get(key)
        if score is not None:
            results.move_to_end(key)
            self.hits += 1
            return score
        entry = self._sample(sid, sample)
        base_text, base = self._longest_prefix(entry, response)
        state = base
        if len(base_text) < len(response):
            state = self._advance(entry, base_text, base, response)
            if not terminal:
                self._keep(entry, response, state)
        score = self._judge(state, entry.gold, terminal)
        results[key] = score
        if len(results) > self.max_results:
            results.popitem(last=False)
        return score

    # -- scanning ------------------------------------------------------------------------
    def _sample(self, sid: str, sample: Any) -> _Sample:
        entry = self._samples.get(sid)
        if entry is None:
            tools = sample.tools if self._use_tools else None
            entry = self._samples[sid] = _Sample(self.gold(sample), tools)
            self._size += entry.size
        else:
            self._samples.move_to_end(sid)
        return entry

    def _longest_prefix(self, entry: _Sample, response: str) -> tuple[str, _State]:
        """The longest cached text ``response`` starts with ("" is always cached)."""
        states, lengths = entry.states, entry.lengths
        i = bisect_right(lengths, len(response))
        while i > 1:
            i -= 1
            text = response[: lengths[i]]
            state = states.get(text)
            if state is not None:
                return text, state
        return "", _ROOT

    def _advance(self, entry: _Sample, prefix: str, base: _State, response: str) -> _State:
        """The state of ``response`` = ``prefix`` (in state ``base``) + a step."""
        kind = base.kind
        if kind in (ERROR, PROSE):
            return base  # final: no text changes the verdict
        step = response[len(prefix) :]
        if kind == MID:
            scanner, shift, n = base.scanner.copy(), base.shift, base.n
            scanner.feed(step)
            self.scanned += len(step)
            view = scanner.snapshot()
            new_kind = _kind(view, scanner.text)
        else:
            context = _CONTEXT[kind]
            shift, n = len(prefix) - len(context), (1 if kind in (AFTER, COMMA) else 0)
            scan = self._steps.get((kind, step))
            if scan is None:
                scanner = self._contexts[kind].copy()
                scanner.feed(step)
                self.scanned += len(step)
                view = scanner.snapshot()
                scan = (scanner, view, _kind(view, scanner.text))
                self._steps[(kind, step)] = scan
                if len(self._steps) > self.max_steps:
                    self._steps.popitem(last=False)
            else:
                self._steps.move_to_end((kind, step))
            scanner, view, new_kind = scan
        ends, rows = base.ends, base.rows
        if len(view.call_ends) > n:
            new_ends = tuple(e + shift for e in view.call_ends[n:])
            if entry.gold:
                rows = self._rows(entry, response, ends, new_ends, view.calls[n:], rows)
            ends += new_ends
        if new_kind != MID:
            return _State(new_kind, view.is_call_list, ends, rows)
        return _State(MID, view.is_call_list, ends, rows, scanner, shift, len(view.call_ends))

    def _rows(
        self,
        entry: _Sample,
        response: str,
        ends: tuple[int, ...],
        new_ends: tuple[int, ...],
        calls: list[Any],
        rows: tuple[tuple[bool, ...], ...],
    ) -> tuple[tuple[bool, ...], ...]:
        """``rows`` + the gold rows of ``calls`` (complete calls of ``response`` ending at
        ``new_ends``, after those ending at ``ends``). A call is keyed by its text from the
        previous call's end to its own: the same text is the same call."""
        c = self._check
        start = ends[-1] if ends else 0
        out = list(rows)
        for call, end in zip(calls, new_ends, strict=True):
            text = response[start:end]
            row = entry.rows.get(text)
            if row is None:
                row = entry.rows[text] = self._row(c, call, entry)
                self._grow(entry)  # may empty entry.rows (over max_states)
            out.append(row)
            start = end
        return tuple(out)

    # -- judging -------------------------------------------------------------------------
    def _judge(self, state: _State, gold: Any, terminal: bool) -> float:
        """The score from the state: ``check_calls`` of the finished response (terminal),
        else ``partial_credit`` of its complete calls, as ``UncachedCallsOutcome``."""
        kind = state.kind
        if kind == ERROR:
            return 0.0  # a defect: parse_calls raises / parse_partial has an error
        if terminal:  # CallScanner.finish: prose or undecided -> a text answer (None)
            if state.icl is not True:
                return 0.0 if gold else 1.0
            if kind != CLOSED:
                return 0.0  # unfinished call list: parse_calls raises
            if not gold:
                return 0.0 if state.ends else 1.0
            return self._terminal_score(state.rows, gold)
        if state.icl is False:  # prose so far
            return 0.0 if gold else 1.0
        if not gold:
            return 0.0 if state.ends else 1.0
        return self._partial_score(state.rows, gold)

    # what a subclass judging by other rows changes (GradedCallsOutcome)
    def _row(self, check: Any, call: Any, entry: _Sample) -> tuple:
        return check.gold_row(call, entry.gold, entry.tools)

    def _terminal_score(self, rows: tuple, gold: Any) -> float:
        return 1.0 if self._correct(rows, gold) else 0.0

    def _partial_score(self, rows: tuple, gold: Any) -> float:
        return float(self._credit(rows, gold))

    def _matched(self, rows: tuple[tuple[bool, ...], ...], n_gold: int) -> int:
        m = self._matchings.get(rows)
        if m is None:
            m = self._check.matched_from_rows(rows, n_gold)
            if len(self._matchings) >= self.max_steps:
                self._matchings.clear()
            self._matchings[rows] = m
        return m

    def _correct(self, rows: tuple[tuple[bool, ...], ...], gold: Any) -> bool:
        return len(rows) == len(gold) == self._matched(rows, len(gold))  # correct_from_rows

    def _credit(self, rows: tuple[tuple[bool, ...], ...], gold: Any) -> float:
        if len(rows) > len(gold):  # credit_from_rows
            return 0.0
        matched = self._matched(rows, len(gold))
        return 0.0 if matched < len(rows) else matched / len(gold)

    # -- bounds --------------------------------------------------------------------------
    def _keep(self, entry: _Sample, text: str, state: _State) -> None:
        """Cache the state after ``text`` (a response whose children may be scored next)."""
        if text in entry.states:
            return
        entry.states[text] = state
        n = len(text)
        lengths = entry.lengths
        if lengths[bisect_right(lengths, n) - 1] != n:
            insort(lengths, n)
        self._grow(entry)

    def _grow(self, entry: _Sample) -> None:
        """One more state or row in ``entry``: evict whole samples, least recent first, while
        over ``max_states`` (``entry``, the sample being scored, last: it restarts empty)."""
        self._size += 1
        while self._size > self.max_states and self._samples:
            sid, victim = next(iter(self._samples.items()))
            if victim is entry:
                self._size -= entry.size - 1
                entry.states, entry.lengths, entry.rows = {"": _ROOT}, [0], {}
                return
            del self._samples[sid]
            self._size -= victim.size


GRADED_SCALE = 0.5
"""``mcts.outcome=graded``: the most a response that is not correct can score (a correct one
scores 1.0), so no near miss ties with a right answer."""


class UncachedGradedCallsOutcome(UncachedCallsOutcome):
    """O(s) with graded credit (``mcts.outcome=graded``), an extension of the paper's O for a
    policy that rarely reaches a correct terminal: with the exact O nearly every sibling then
    scores 0 and the pairs are ranked by self-evaluation alone.

    * terminal: 1.0 if correct (as the exact O); a wrong call list scores ``scale`` times its
      ``graded_credit`` (right function, right arguments, no missing or extra call); a text
      answer where calls are expected, or a call list that does not parse, 0.0.
    * before the end: ``scale`` times the ``graded_credit`` of the calls complete so far
      against the whole gold (a call still being written is not judged yet); 0.0 as soon as
      the text can no longer become a valid call list. With a text gold, prose so far scores
      1.0 and any call 0.0, as the exact O.

    Every call parses and checks the whole response: the reference ``GradedCallsOutcome``
    (the same scores, cached) is tested against.
    """

    def __init__(self, use_tools: bool = True, scale: float = GRADED_SCALE) -> None:
        super().__init__(use_tools)
        self.scale = _graded_scale(scale)

    def _finished(self, predicted: Any, gold: Any, tools: Any) -> float:
        credit = self._calls.graded_credit(predicted, gold, tools)
        return 1.0 if credit == 1.0 else self.scale * credit

    def _so_far(self, calls: Any, gold: Any, tools: Any) -> float:
        if not gold:
            return 0.0 if calls else 1.0
        return self.scale * self._calls.graded_credit(calls, gold, tools)


def _graded_scale(scale: float) -> float:
    if not 0.0 <= scale < 1.0:
        raise ValueError(f"GradedCallsOutcome: scale must be in [0, 1), got {scale!r}")
    return float(scale)


class GradedCallsOutcome(CallsOutcome):
    """``UncachedGradedCallsOutcome``'s scores with ``CallsOutcome``'s caches: a call's row
    holds its ``call_similarity`` to each gold call (1.0 where ``gold_row`` is True), so the
    exact verdict and the graded credit both come from the cached rows."""

    def __init__(self, use_tools: bool = True, scale: float = GRADED_SCALE, **caches: int):
        super().__init__(use_tools, **caches)
        self.scale = _graded_scale(scale)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "scale": self.scale}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(
            state["_use_tools"],
            state["scale"],
            max_results=state["max_results"],
            max_states=state["max_states"],
            max_steps=state["max_steps"],
        )
        self._gold.update(state["_gold"])

    def _row(self, check: Any, call: Any, entry: _Sample) -> tuple:
        return check.similarity_row(call, entry.gold, entry.tools)

    def _terminal_score(self, rows: tuple, gold: Any) -> float:
        credit = self._check.graded_from_rows(rows, len(gold))
        return 1.0 if credit == 1.0 else self.scale * credit

    def _partial_score(self, rows: tuple, gold: Any) -> float:
        return self.scale * self._check.graded_from_rows(rows, len(gold))


def calls_outcome(config: MCTSConfig, use_tools: bool = True) -> CallsOutcome:
    """The single-turn O that ``config.outcome`` names (:func:`calls_outcome_named`)."""
    return calls_outcome_named(config.outcome, use_tools)


def calls_outcome_named(outcome: str, use_tools: bool = True) -> CallsOutcome:
    """The single-turn O named ``outcome`` (``mcts.outcome``): ``exact``, the paper's
    (``CallsOutcome``), or ``graded`` (``GradedCallsOutcome``)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    if outcome == "graded":
        return GradedCallsOutcome(use_tools=use_tools)
    return CallsOutcome(use_tools=use_tools)
