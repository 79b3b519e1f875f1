"""ToolACE's rule layer: checks a sample's gold against its candidate tools and its query.

Rules (each violation is one message): the gold parses; every called tool is among the
candidates; required parameters are present; no unknown parameters; values match the schema
type (and enum); and, with ``check_grounding``, every value is grounded in the user turns:

* a string (enum included) occurs literally;
* an integer / float occurs as ``str(value)``, not inside a longer number;
* a boolean is grounded when the parameter name read as words (``include_hourly`` ->
  "include hourly") occurs, case-insensitively: the phrase carries the value;
* ``None`` counts as grounded (an explicit "no value");
* a list / dict is grounded when each item / value is.

A plain-text gold (no call list) passes: the rules concern calls.
"""

from __future__ import annotations

from typing import Any

from itool_ray.calls import CallParseError, parse_calls
from itool_ray.data.sample import Sample
from itool_ray.data.schema import param_words, tool_properties, tool_required, value_matches


def query_text(sample: Sample) -> str:
    return "\n".join(m["content"] for m in sample.messages if m["role"] == "user")


def _grounded_number(text: str, value: int | float) -> bool:
    """``str(value)`` occurs with no digit (or decimal point) glued to either side."""
    s = str(value)
    i = text.find(s)
    while i >= 0:
        before = text[i - 1] if i else ""
        after = text[i + len(s) : i + len(s) + 2]
        if not (
            before.isdigit()
            or before == "."
            or after[:1].isdigit()
            or (after[:1] == "." and after[1:2].isdigit())
        ):
            return True
        i = text.find(s, i + 1)
    return False


def is_grounded(value: Any, text: str, *, param: str = "", lowered: str | None = None) -> bool:
    """Whether ``value`` (of parameter ``param``) is grounded in ``text`` (see module doc)."""
    if lowered is None:
        lowered = text.lower()
    if value is None:
        return True
    if isinstance(value, bool):
        return param_words(param) in lowered
    if isinstance(value, int | float):
        return _grounded_number(text, value)
    if isinstance(value, str):
        return value in text
    if isinstance(value, list | tuple):
        return all(is_grounded(v, text, param=param, lowered=lowered) for v in value)
    if isinstance(value, dict):
        return all(is_grounded(v, text, param=str(k), lowered=lowered) for k, v in value.items())
    return False


def verify_sample(sample: Sample, *, check_grounding: bool = True) -> list[str]:
    """The rule violations of ``sample`` (empty list = the sample passes)."""
    try:
        calls = parse_calls(sample.gold)
    except CallParseError as e:
        return [f"gold: not a valid call list ({e})"]
    if calls is None:
        return []
    if not calls:
        return ["gold: empty call list"]
    tools = {t.get("name"): t for t in sample.tools}
    text = query_text(sample)
    lowered = text.lower()
    problems = []
    for i, call in enumerate(calls):
        where = f"call {i} {call.name!r}"
        tool = tools.get(call.name)
        if tool is None:
            problems.append(f"{where}: tool not among the candidates")
            continue
        props = tool_properties(tool)
        for req in tool_required(tool):
            if req not in call.arguments:
                problems.append(f"{where}: required parameter {req!r} missing")
        for arg, value in call.arguments.items():
            if arg not in props:
                problems.append(f"{where}: unknown parameter {arg!r}")
                continue
            why = value_matches(value, props[arg])
            if why:
                problems.append(f"{where}: parameter {arg!r}: {why}")
            if check_grounding and not is_grounded(value, text, param=arg, lowered=lowered):
                problems.append(
                    f"{where}: parameter {arg!r}: value {value!r} not grounded in the query"
                )
    return problems
