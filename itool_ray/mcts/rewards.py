"""The production outcome term O(s) of R(s) (eq. 6; R itself is composed by
``itool_ray.mcts.core.Reward``). ``CallsOutcome`` is built on ``itool_ray.calls`` (imported
lazily so the tree core never depends on it).

The simulation core scores every candidate of every expansion, ``prefix + step`` with the
prefix shared by the siblings and by the whole path above them, so ``CallsOutcome`` caches
(all bounded, all exact: the scores equal ``UncachedCallsOutcome``'s, which re-parses the whole
response and re-checks it each time):

* the sample's gold, parsed once per sample id;
* the score of each distinct ``(sample id, response, terminal)`` (LRU);
* the call scanner's state after each non-terminal response it scored, per sample: a
  response's children are that response plus one step, so a candidate costs scanning its step
  text (``CallScanner.copy`` + ``feed``), not re-parsing the path; the longest cached prefix
  is found among the lengths of the sample's cached texts;
* per distinct call text of a sample, which gold calls the call matches (``gold_row``); a
  call list is then judged by a maximum matching over its calls' rows (``credit_from_rows``,
  ``correct_from_rows``: the same figures as ``partial_credit`` and ``check_calls``).

A sample id must name one sample (one gold, one tool list) for the lifetime of the object.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import OrderedDict
from typing import Any


class UncachedCallsOutcome:
    """O(s) from the call checker, against the sample's gold (or its BFCL ground truth).

    * terminal: 1.0 if the response is correct (``check_calls``), else 0.0; a call list that
      does not parse scores 0.0.
    * before the end: partial credit (``partial_credit``) of the calls complete so far: the
      fraction of gold calls they match one-to-one, 0.0 as soon as one cannot match or the
      text can no longer become a valid call list. With a text gold (no tool fits), prose so
      far scores 1.0 and any call 0.0.

    Gold answers are parsed once per sample id and cached; every call parses and checks the
    whole response (the reference ``CallsOutcome`` is tested against).
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
            return 1.0 if c.check_calls(predicted, gold, tools).correct else 0.0
        partial = c.parse_partial(response)
        if partial.error is not None:
            return 0.0
        if partial.is_call_list is False:  # prose so far
            return 0.0 if gold else 1.0
        return float(c.partial_credit(partial.calls, gold, tools))


class _State:
    """A scanned text: the scanner after it (never fed again) and its calls' gold rows."""

    __slots__ = ("scanner", "rows")

    def __init__(self, scanner: Any, rows: tuple[tuple[bool, ...], ...]) -> None:
        self.scanner = scanner
        self.rows = rows


class _Sample:
    """What ``CallsOutcome`` keeps per sample id."""

    __slots__ = ("gold", "tools", "states", "lengths", "rows")

    def __init__(self, gold: Any, tools: Any, root: _State) -> None:
        self.gold = gold
        self.tools = tools
        self.states: dict[str, _State] = {"": root}  # scanned text -> state
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
        max_states: scanner states and call rows kept, over all samples; past it the least
            recently scored samples lose theirs (their gold stays).
    """

    def __init__(
        self, use_tools: bool = True, max_results: int = 1 << 16, max_states: int = 1 << 16
    ) -> None:
        super().__init__(use_tools)
        from itool_ray.calls import check

        self._check = check  # gold_row and the *_from_rows judges
        if max_results < 1 or max_states < 1:
            raise ValueError("CallsOutcome: max_results and max_states must be >= 1")
        self.max_results = max_results
        self.max_states = max_states
        self._results: OrderedDict[tuple[str, str, bool], float] = OrderedDict()
        self._samples: OrderedDict[str, _Sample] = OrderedDict()
        self._size = 0  # sum of the samples' sizes
        self.hits = 0  # scores answered from the LRU
        self.scanned = 0  # characters scanned (steps, plus whole texts on a prefix miss)

    def __getstate__(self) -> dict[str, Any]:  # ship the settings, not the caches
        state = self.__dict__.copy()
        del state["_calls"], state["_check"]
        state["_results"], state["_samples"], state["_size"] = OrderedDict(), OrderedDict(), 0
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from itool_ray import calls
        from itool_ray.calls import check

        self.__dict__.update(state)
        self._calls, self._check = calls, check

    def clear(self) -> None:
        """Drop the cached scores and states (the parsed golds stay)."""
        self._results.clear()
        self._samples.clear()
        self._size = 0

    def __call__(self, sample: Any, response: str, terminal: bool) -> float:
        sid = str(sample.id)
        key = (sid, response, terminal)
        results = self._results
        score = results.get(key)
        if score is not None:
            results.move_to_end(key)
            self.hits += 1
            return score
        score = self._score(sid, sample, response, terminal)
        results[key] = score
        if len(results) > self.max_results:
            results.popitem(last=False)
        return score

    # -- scoring ---------------------------------------------------------------------------
    def _sample(self, sid: str, sample: Any) -> _Sample:
        entry = self._samples.get(sid)
        if entry is None:
            tools = sample.tools if self._use_tools else None
            entry = _Sample(self.gold(sample), tools, _State(self._calls.CallScanner(), ()))
            self._samples[sid] = entry
            self._size += entry.size
        else:
            self._samples.move_to_end(sid)
        return entry

    def _score(self, sid: str, sample: Any, response: str, terminal: bool) -> float:
        c = self._check
        entry = self._sample(sid, sample)
        base_text, base = self._longest_prefix(entry, response)
        if len(base_text) == len(response):
            scanner = base.scanner  # read only below
        else:
            scanner = base.scanner.copy()
            scanner.feed(response[len(base_text) :])
            self.scanned += len(response) - len(base_text)
        gold = entry.gold
        if terminal:
            try:
                predicted = scanner.finish()
            except self._calls.CallParseError:
                return 0.0
            if predicted is None:  # prose: a text answer
                return 1.0 if c.correct_from_rows(None, gold) else 0.0
            if not gold:
                return 1.0 if not predicted else 0.0
            partial = scanner.snapshot()  # closed: the same calls, with their ends
            rows = self._rows(entry, base.rows, response, partial.call_ends, predicted)
            return 1.0 if c.correct_from_rows(rows, gold) else 0.0
        partial = scanner.snapshot()
        if partial.error is not None or partial.is_call_list is False or not gold:
            score = self._plain(partial, gold)
            if scanner is not base.scanner:
                self._keep(entry, response, _State(scanner, base.rows))
            return score
        rows = self._rows(entry, base.rows, response, partial.call_ends, partial.calls)
        if scanner is not base.scanner:
            self._keep(entry, response, _State(scanner, rows))
        return float(c.credit_from_rows(rows, gold))

    @staticmethod
    def _plain(partial: Any, gold: Any) -> float:
        """The score of a partial text that needs no rows: an error, prose or a text gold."""
        if partial.error is not None:
            return 0.0
        if partial.is_call_list is False:  # prose so far
            return 0.0 if gold else 1.0
        return 0.0 if partial.calls else 1.0  # text gold: any call scores 0

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
        return "", states[""]

    def _rows(
        self,
        entry: _Sample,
        known: tuple[tuple[bool, ...], ...],
        response: str,
        ends: list[int],
        calls: list[Any],
    ) -> tuple[tuple[bool, ...], ...]:
        """Gold rows of ``calls`` (complete calls of ``response``, ending at ``ends``); the
        first ``len(known)`` are the prefix's. A call is keyed by its text from the previous
        call's end to its own: the same text is the same call."""
        n = len(known)
        if n == len(calls):
            return known
        c, gold, tools = self._check, entry.gold, entry.tools
        rows = list(known)
        start = ends[n - 1] if n else 0
        for call, end in zip(calls[n:], ends[n:], strict=True):
            text = response[start:end]
            row = entry.rows.get(text)
            if row is None:
                row = entry.rows[text] = c.gold_row(call, gold, tools)
                self._grow(entry)  # may empty entry.rows (over max_states)
            rows.append(row)
            start = end
        return tuple(rows)

    def _keep(self, entry: _Sample, text: str, state: _State) -> None:
        """Cache the state after ``text`` (a response whose children may be scored next)."""
        if text in entry.states:
            return
        entry.states[text] = state
        n = len(text)
        lengths = entry.lengths
        i = bisect_right(lengths, n)
        if lengths[i - 1] != n:
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
                root = entry.states[""]
                entry.states, entry.lengths, entry.rows = {"": root}, [0], {}
                return
            del self._samples[sid]
            self._size -= victim.size
