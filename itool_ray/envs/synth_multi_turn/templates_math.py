"""Templates of ``MathAPI`` (stateless), and the one joining it to the file system (registered at
import, in this order)."""

from __future__ import annotations

from itool_ray.envs.synth_multi_turn.templating import _Ctx, _Draft, _template, _two_files
from itool_ray.envs.synth_multi_turn.vocabulary import (
    _FS,
    _MATH,
    _c,
    _count,
    _listing,
    _number,
    _numbers,
    _one,
)


@_template("math.mean", _MATH)
def _math_mean(ctx: _Ctx) -> _Draft | None:
    nums = _numbers(ctx.rng)
    text = _one(
        ctx.rng,
        f"What's the average of {_listing(nums)}?",
        f"Compute the mean of these values: {_listing(nums)}.",
    )
    return _Draft(text, [_c("mean", numbers=nums)])


@_template("math.stdev", _MATH)
def _math_stdev(ctx: _Ctx) -> _Draft | None:
    nums = _numbers(ctx.rng)
    text = _one(
        ctx.rng,
        f"Work out the standard deviation of {_listing(nums)}.",
        f"How spread out are {_listing(nums)}? Give me the standard deviation.",
    )
    return _Draft(text, [_c("standard_deviation", numbers=nums)])


@_template("math.sqrt", _MATH)
def _math_sqrt(ctx: _Ctx) -> _Draft | None:
    x, p = ctx.rng.randint(2, 5000), ctx.rng.randint(3, 12)
    text = _one(
        ctx.rng,
        f"What is the square root of {x}, to {p} significant digits?",
        f"Take the square root of {x} with a precision of {p}.",
    )
    return _Draft(text, [_c("square_root", number=x, precision=p)])


@_template("math.log", _MATH)
def _math_log(ctx: _Ctx) -> _Draft | None:
    x, b, p = ctx.rng.randint(2, 100_000), ctx.rng.choice((2, 3, 5, 10)), ctx.rng.randint(4, 10)
    text = _one(
        ctx.rng,
        f"Give me the base-{b} logarithm of {x} with {p} digits of precision.",
        f"What is log base {b} of {x}? Use precision {p}.",
    )
    return _Draft(text, [_c("logarithm", value=x, base=b, precision=p)])


@_template("math.percent", _MATH)
def _math_percent(ctx: _Ctx) -> _Draft | None:
    whole = ctx.rng.randint(50, 5000)
    part = ctx.rng.randint(1, whole)
    text = _one(
        ctx.rng,
        f"What percentage of {whole} is {part}?",
        f"Express {part} as a percentage of {whole}.",
    )
    return _Draft(text, [_c("percentage", part=part, whole=whole)])


_IMPERIAL = (
    ("km", "miles", "kilometers", "miles"),
    ("miles", "km", "miles", "kilometers"),
    ("kg", "lb", "kilograms", "pounds"),
    ("lb", "kg", "pounds", "kilograms"),
    ("m", "ft", "meters", "feet"),
    ("ft", "m", "feet", "meters"),
    ("cm", "in", "cm", "inches"),
    ("in", "cm", "inches", "centimeters"),
    ("m", "yd", "meters", "yards"),
    ("celsius", "fahrenheit", "degrees Celsius", "Fahrenheit"),
    ("fahrenheit", "celsius", "degrees Fahrenheit", "Celsius"),
)


@_template("math.imperial", _MATH)
def _math_imperial(ctx: _Ctx) -> _Draft | None:
    unit_in, unit_out, said_in, said_out = ctx.rng.choice(_IMPERIAL)
    v = _number(ctx.rng)
    text = _one(
        ctx.rng,
        f"Convert {v} {said_in} to {said_out}.",
        f"How much is {v} {said_in} in {said_out}?",
    )
    return _Draft(text, [_c("imperial_si_conversion", value=v, unit_in=unit_in, unit_out=unit_out)])


@_template("math.metric", _MATH)
def _math_metric(ctx: _Ctx) -> _Draft | None:
    unit_in, unit_out = ctx.rng.sample(("km", "m", "cm", "mm", "um", "nm"), 2)
    v = _number(ctx.rng)
    text = _one(
        ctx.rng,
        f"Convert {v} {unit_in} into {unit_out} (SI units).",
        f"Express {v} {unit_in} in {unit_out}.",
    )
    return _Draft(text, [_c("si_unit_conversion", value=v, unit_in=unit_in, unit_out=unit_out)])


@_template("math.extreme", _MATH)
def _math_extreme(ctx: _Ctx) -> _Draft | None:
    nums = _numbers(ctx.rng, 4, 7)
    fn, word = ctx.rng.choice((("max_value", "largest"), ("min_value", "smallest")))
    text = _one(
        ctx.rng,
        f"Which is the {word} of {_listing(nums)}?",
        f"Find the {word} number among {_listing(nums)}.",
    )
    return _Draft(text, [_c(fn, numbers=nums)])


@_template("math.sum_round", _MATH)
def _math_sum_round(ctx: _Ctx) -> _Draft | None:
    nums = [round(ctx.rng.uniform(1, 500), 2) for _ in range(ctx.rng.randint(3, 5))]
    places = ctx.rng.randint(0, 1)
    total = ctx.peek([_c("sum_values", numbers=nums)])[1][0]["result"]
    text = _one(
        ctx.rng,
        f"Add up {_listing(nums)} and round the total to {_count(places, 'decimal place')}.",
        f"Sum {_listing(nums)}, then round the result to {_count(places, 'decimal')}.",
    )
    calls = [
        _c("sum_values", numbers=nums),
        _c("round_number", number=total, decimal_places=places),
    ]
    return _Draft(text, calls)


@_template("math.power", _MATH)
def _math_power(ctx: _Ctx) -> _Draft | None:
    b, e = ctx.rng.randint(2, 30), ctx.rng.randint(2, 9)
    text = _one(ctx.rng, f"What is {b} to the power of {e}?", f"Raise {b} to the power {e}.")
    return _Draft(text, [_c("power", base=b, exponent=e)])


@_template("fs_math.mean_words", _FS, _MATH)
def _fs_math_mean_words(ctx: _Ctx) -> _Draft | None:
    if not (pick := _two_files(ctx)):
        return None
    place, a, b = pick
    counts = [len(place.dir.contents[f].content.split()) for f in (a, b)]
    text = _one(
        ctx.rng,
        f"Count the words in '{a}' and in '{b}' {place.where}, then give me the average of "
        "the two counts.",
        f"I need the mean word count of '{a}' and '{b}' {place.where}.",
    )
    calls = [
        *place.nav,
        _c("wc", file_name=a, mode="w"),
        _c("wc", file_name=b, mode="w"),
        _c("mean", numbers=counts),
    ]
    return _Draft(text, calls)
