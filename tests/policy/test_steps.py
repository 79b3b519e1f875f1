"""Step boundaries: one call (with its separator) or one sentence per step."""

from __future__ import annotations

import pytest

from itool_ray.policy.steps import find_step_end


@pytest.mark.parametrize(
    ("prefix", "text", "finished", "end", "terminal"),
    [
        # first call of a parallel list: the step keeps the comma, the list goes on
        ("", '[f(a=1), g(b="x")]', False, len("[f(a=1),"), False),
        # second call closes the list: terminal
        ("[f(a=1),", ' g(b="x")]', False, len(' g(b="x")]'), True),
        # a ")," inside a string literal is not a boundary: keep generating
        ("", '[f(q="a),b", ', False, None, False),
        ("", '[f(q="a),b"), g()]', False, len('[f(q="a),b"),'), False),
        # call complete but separator not generated yet: no boundary yet
        ("", "[f(a=1)", False, None, False),
        # ... unless the sequence ended there
        ("", "[f(a=1)", True, len("[f(a=1)"), True),
        # prose: one sentence per step
        ("", "I cannot help. The tools do not fit.", False, len("I cannot help."), False),
        ("I cannot help.", " The tools do not fit.", True, len(" The tools do not fit."), True),
        # junk after a call ends the (broken) list
        ("", "[f(a=1) oops", False, len("[f(a=1)"), True),
    ],
)
def test_find_step_end(prefix, text, finished, end, terminal):
    cut = find_step_end(prefix, text, finished)
    assert cut.end == end
    if end is not None:
        assert cut.terminal is terminal
