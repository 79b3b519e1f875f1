"""The production outcome term O(s) of R(s) (eq. 6; R itself is composed by
``itool_ray.mcts.core.Reward``). ``CallsOutcome`` is built on ``itool_ray.calls`` (imported
lazily so the tree core never depends on it).
"""

from __future__ import annotations

from typing import Any


class CallsOutcome:
    """O(s) from the call checker, against the sample's gold (or its BFCL ground truth).

    * terminal: 1.0 if the response is correct (``check_calls``), else 0.0; a call list that
      does not parse scores 0.0.
    * before the end: partial credit (``partial_credit``) of the calls complete so far: the
      fraction of gold calls they match one-to-one, 0.0 as soon as one cannot match or the
      text can no longer become a valid call list. With a text gold (no tool fits), prose so
      far scores 1.0 and any call 0.0.

    Gold answers are parsed once per sample id and cached.
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
