"""Helpers shared by the loaders (private)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from itool_ray.calls import Call, CallParseError, parse_calls, render_call, render_calls
from itool_ray.data.errors import DataError, LoadReport
from itool_ray.data.jsonio import RawRecord
from itool_ray.data.sample import Sample

CALL_SYNTAX = 'a call list like [f(a=1, b="x")] or plain text'


CONVERTIBLE = "a record this loader can convert"


def canonical_turn(text: str, *, field: str) -> tuple[str, list[Call] | None]:
    """Parse an assistant turn: a call list comes back rendered canonically with its calls,
    plain text comes back unchanged with ``None``. A malformed call list raises ``DataError``
    (location filled in by the caller)."""
    try:
        calls = parse_calls(text)
    except CallParseError as e:
        raise DataError(
            field=field, expected=CALL_SYNTAX, detail=f"{e.reason} at position {e.position}"
        ) from e
    if calls is None:
        return text, None
    return render_calls(calls), calls


def require(record: Any, key: str, kind: type | tuple[type, ...], expected: str) -> Any:
    """``record[key]`` if ``record`` is a dict holding a value of ``kind``, else ``DataError``."""
    if not isinstance(record, dict):
        raise DataError(expected="a JSON object record", detail=f"got {type(record).__name__}")
    if key not in record:
        raise DataError(field=key, expected=expected, detail="missing")
    value = record[key]
    if not isinstance(value, kind):
        raise DataError(field=key, expected=expected, detail=f"got {type(value).__name__}")
    return value


def render_gold(calls: list[Call], *, field: str) -> str:
    """``render_calls(calls)``, or a ``DataError`` naming the call, the argument and the
    reason when a call cannot be written in call syntax (a name like ``user-id``, a NaN
    value...). ``field`` is formatted with the call's index ``i`` and ``name``
    (``"calling[{i}].parameters"``); the argument's name is appended to it."""
    try:
        return render_calls(calls)
    except (ValueError, TypeError, RecursionError) as e:
        reason = e
    for i, call in enumerate(calls):
        where = field.format(i=i, name=call.name)
        try:
            render_call(Call(name=call.name))
        except ValueError as e:
            raise DataError(field=where, expected="a function name", detail=str(e)) from None
        for key, value in call.arguments.items():
            try:
                render_call(Call(name="f", arguments={key: None}))
            except ValueError as e:
                raise DataError(
                    field=f"{where}.{key}", expected="an identifier argument name", detail=str(e)
                ) from None
            try:
                render_call(Call(name="f", arguments={"a": value}))
            except (ValueError, TypeError, RecursionError) as e:
                raise DataError(
                    field=f"{where}.{key}",
                    expected="a literal value (string, number, bool, None, list, dict; no NaN)",
                    detail=str(e),
                ) from None
    raise DataError(
        field=field.format(i="*", name="*"), expected="calls in call syntax", detail=str(reason)
    )


def convert_records(
    raws: Iterable[RawRecord],
    report: LoadReport,
    file: str,
    convert: Callable[[RawRecord], list[Sample]],
    record_id: Callable[[RawRecord], str | None],
) -> Iterator[Sample]:
    """The loop every loader runs: count each record, convert it, and hand any failure of
    one record (a ``DataError``, or any other exception, which becomes one) to the report's
    policy with the record's location; a record whose sample id was already produced is a
    bad record too (``field 'id'``). ``meta["line"]`` is set on every sample read from a file.
    """
    seen: dict[str, str] = {}
    for raw in raws:
        report.records += 1
        if raw.error is not None:
            report.fail(raw.error)
            continue
        try:
            rid = record_id(raw)
        except Exception:  # an id of an odd kind: locate by position instead
            rid = f"#{raw.index}"
        where = {"file": file, "line": raw.line or None, "record_id": rid}
        try:
            samples = convert(raw)
        except Exception as e:  # skip mode skips whatever one record does
            err = DataError.from_exception(e, expected=CONVERTIBLE).located(**where)
            err.__cause__ = e
            report.fail(err)
            continue
        ids = [s.id for s in samples]
        dup = next((x for i, x in enumerate(ids) if x in seen or x in ids[:i]), None)
        if dup is not None:
            first = seen.get(dup, "this record")
            report.fail(
                DataError(
                    field="id",
                    expected="a unique sample id",
                    detail=f"sample id {dup!r} already produced by {first}",
                ).located(**where)
            )
            continue
        for s in samples:
            seen[s.id] = f"line {raw.line}" if raw.line else f"record #{raw.index}"
            if raw.line:
                s.meta["line"] = raw.line
        yield from samples
