"""Parsing, rendering and incremental parsing of ToolACE-style call lists."""

from __future__ import annotations

import io
import math
import pickle
import tokenize

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itool_ray.calls import (
    Call,
    CallParseError,
    CallScanner,
    ParseErrorReason,
    next_call_boundary,
    parse_calls,
    parse_partial,
    render_call,
    render_calls,
    render_value,
)

# -- accepted syntax -------------------------------------------------------------------------


def test_toolace_example() -> None:
    text = '[Market Trends API(trend_type="MARKET_INDEXES", country="us")]'
    assert parse_calls(text) == [
        Call("Market Trends API", {"trend_type": "MARKET_INDEXES", "country": "us"})
    ]


def test_parallel_calls_keep_order_and_keyword_order() -> None:
    calls = parse_calls('[func(b=1, a="x"), other(c=[1, {"k": None}])]')
    assert calls == [Call("func", {"b": 1, "a": "x"}), Call("other", {"c": [1, {"k": None}]})]
    assert list(calls[0].arguments) == ["b", "a"]


@pytest.mark.parametrize(
    "name", ["Market Trends API", "math.factorial", "get-weather", "a_b.c-d e2", "_x", "météo"]
)
def test_names_with_spaces_dots_dashes(name: str) -> None:
    assert parse_calls(f"[{name}(n=5)]") == [Call(name, {"n": 5})]


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("-5", -5),
        ("+5", 5),
        ("-2.5e-3", -0.0025),
        ("0x1F", 31),
        ("1_000", 1000),
        ("True", True),
        ("False", False),
        ("None", None),
        ("true", True),  # JSON leniency
        ("false", False),
        ("null", None),
        ("(1, 'a')", (1, "a")),
        ("(1,)", (1,)),
        ("()", ()),
        ("[]", []),
        ("{}", {}),
        ("[1, [2, [3, {'k': (None, -1)}]]]", [1, [2, [3, {"k": (None, -1)}]]]),
        ("{1: 'a', 'b': [True], (1, 2): None}", {1: "a", "b": [True], (1, 2): None}),
        ("'single'", "single"),
        ('"a\\"b\\\\c\\n\\u00e9"', 'a"b\\c\né'),
        ("'''tri'ple\nline'''", "tri'ple\nline"),
        ('"con" "cat"', "concat"),
        ("r'\\d+'", "\\d+"),
        ("'a)b]c}'", "a)b]c}"),
        ("'#not a comment'", "#not a comment"),
    ],
)
def test_literal_values(literal: str, value: object) -> None:
    calls = parse_calls(f"[f(x={literal})]")
    assert calls == [Call("f", {"x": value})]


def test_whitespace_newlines_and_python_keywords_as_argument_names() -> None:
    text = '  \n [ convert(\n  from = "USD",\n  to="EUR",\n  in=1,\n) ,  g() ]\n\t'
    assert parse_calls(text) == [Call("convert", {"from": "USD", "to": "EUR", "in": 1}), Call("g")]


@pytest.mark.parametrize(
    "text",
    [
        "I cannot help with that.",
        "",
        "   \n",
        "[1, 2]",
        "[see above]",
        "[Note: the tool is not available]",
        "[I think (maybe) not]",
        '["a", "b"]',
        "[(1, 2), (3, 4)]",
        "[",
        "[see above",
        "Sure! [f(a=1)]",
    ],
)
def test_prose_is_none(text: str) -> None:
    assert parse_calls(text) is None
    assert parse_partial(text).is_call_list is not True


@pytest.mark.parametrize("text", ["[]", "  [ ]  ", "[\n]"])
def test_empty_call_list(text: str) -> None:
    assert parse_calls(text) == []


# -- rejections ------------------------------------------------------------------------------

R = ParseErrorReason
REJECTIONS = [
    # (text, reason, position)
    ("[f(1)]", R.POSITIONAL_ARGUMENT, 3),
    ("[f(a=1, 2)]", R.POSITIONAL_ARGUMENT, 8),
    ("[f(*xs)]", R.POSITIONAL_ARGUMENT, 3),
    ("[f(**kw)]", R.NON_LITERAL, 3),
    ("[f(a=1, a=2)]", R.DUPLICATE_KEYWORD, 8),
    ("[f(a={'k': 1, 'k': 2})]", R.DUPLICATE_KEY, 14),
    ("[f(a=x)]", R.NON_LITERAL, 5),
    ("[f(a=[1, x])]", R.NON_LITERAL, 9),
    ("[f(a=g(b=1))]", R.NON_LITERAL, 5),
    ("[f(a=1+2)]", R.NON_LITERAL, 5),
    ("[f(a=-x)]", R.NON_LITERAL, 5),
    ('[f(a=f"{x}")]', R.NON_LITERAL, 5),
    ("[f(a=lambda: 1)]", R.NON_LITERAL, 5),
    ("[f(a=os.path)]", R.NON_LITERAL, 5),
    ("[f(a={1, 2})]", R.NON_LITERAL, 5),
    ("[f(a=b'x')]", R.NON_LITERAL, 5),
    ("[f(a=1j)]", R.NON_LITERAL, 5),
    ("[f(a=...)]", R.NON_LITERAL, 5),
    ('[f(b="é", a=[1, {"é": zz}])]', R.NON_LITERAL, 22),
    ("[f(a=[1, 2)]", R.UNBALANCED_BRACKETS, 10),
    ("[f(a=1))]", R.UNBALANCED_BRACKETS, 7),
    ("[f(a=(1, 2)]", R.UNBALANCED_BRACKETS, 11),
    ("[f(a=(1, 2)", R.UNBALANCED_BRACKETS, 2),
    ("[f(a=(1, 2", R.UNBALANCED_BRACKETS, 5),
    ("[f(a=1)", R.UNBALANCED_BRACKETS, 0),
    ("[f(a=1), ", R.UNBALANCED_BRACKETS, 0),
    ('[f(a="abc)]', R.UNTERMINATED_STRING, 5),
    ("[f(a='abc\n')]", R.UNTERMINATED_STRING, 5),
    ("[f(a='''abc)]", R.UNTERMINATED_STRING, 5),
    ('[f(a=1, b=")', R.UNTERMINATED_STRING, 10),
    ("[f(a=1)] and more", R.TRAILING_TEXT, 9),
    ("[f(a=1)]]", R.TRAILING_TEXT, 8),
    ("[f(a=1) g(b=2)]", R.MISSING_COMMA, 8),
    ("[f(a=1 b=2)]", R.MISSING_COMMA, 5),
    ("[f(a=1), (b=2)]", R.EMPTY_NAME, 9),
    ("[f(a=1), 3]", R.BAD_NAME, 9),
    ("[f(a=1), g (b=2)]", R.BAD_NAME, 10),
    ("[f(a=1), g]", R.SYNTAX, 10),
    ("[f(a=1),]", R.SYNTAX, 8),
    ("[f(a=)]", R.SYNTAX, 5),
    ("[f(a=1,,b=2)]", R.SYNTAX, 7),
    ("[f(a=1 # note\n)]", R.SYNTAX, 7),
    ("[f(a='\x00')]", R.SYNTAX, 6),
]


@pytest.mark.parametrize(("text", "reason", "position"), REJECTIONS)
def test_rejections(text: str, reason: str, position: int) -> None:
    with pytest.raises(CallParseError) as info:
        parse_calls(text)
    err = info.value
    assert (err.reason, err.position) == (reason, position), str(err)
    assert isinstance(err, ValueError)
    assert f"offset {position}" in str(err)


def test_error_survives_pickle() -> None:
    with pytest.raises(CallParseError) as info:
        parse_calls("[f(a=x)]")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.reason, copy.position, str(copy)) == ("non_literal", 5, str(info.value))


# -- Call value semantics --------------------------------------------------------------------


def test_call_equality_is_by_value_and_type() -> None:
    assert Call("f", {"a": 1, "b": [1, {"k": (2,)}]}) == Call("f", {"b": [1, {"k": (2,)}], "a": 1})
    assert Call("f", {"a": 1}) != Call("f", {"a": 1.0})
    assert Call("f", {"a": 1}) != Call("f", {"a": True})
    assert Call("f", {"a": [1]}) != Call("f", {"a": (1,)})
    assert len({Call("f", {"a": [1]}), Call("f", {"a": [1]}), Call("g", {})}) == 2
    assert Call("f", {"a": {"k": [1]}}).to_bfcl() == {"f": {"a": {"k": [1]}}}


# -- rendering -------------------------------------------------------------------------------


def test_render_canonical_form() -> None:
    calls = [Call("func", {"a": 1, "b": "x"}), Call("other", {"c": [1, {"k": None}], "t": (1,)})]
    assert render_calls(calls) == '[func(a=1, b="x"), other(c=[1, {"k": None}], t=(1,))]'
    assert render_calls([]) == "[]"
    assert render_call(Call("Market Trends API", {})) == "Market Trends API()"


def test_render_escapes() -> None:
    text = render_value('q"\\\n\r\t\x01é\u2028\ud800')
    assert text == '"q\\"\\\\\\n\\r\\t\\u0001é\u2028\\ud800"'
    assert parse_calls(f"[f(s={text})]") == [Call("f", {"s": 'q"\\\n\r\t\x01é\u2028\ud800'})]


def test_render_special_floats() -> None:
    assert render_value(math.inf) == "1e999"
    assert parse_calls("[f(a=-1e999)]") == [Call("f", {"a": -math.inf})]
    with pytest.raises(ValueError, match="NaN"):
        render_value(math.nan)


@pytest.mark.parametrize(
    "call",
    [
        Call("", {}),
        Call("1abc", {}),
        Call("f ", {}),
        Call("f(x)", {}),
        Call("f", {"not valid": 1}),
        Call("f", {"a": {1, 2}}),
        Call("f", {"a": b"x"}),
    ],
)
def test_render_refuses_what_cannot_parse_back(call: Call) -> None:
    with pytest.raises((ValueError, TypeError)):
        render_call(call)


_names = st.from_regex(r"[A-Za-zé_][A-Za-z0-9_.\- é]{0,15}", fullmatch=True).filter(
    lambda s: not s.endswith(" ")
)
_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
_dict_keys = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(_dict_keys, inner, max_size=4)
    ),
    max_leaves=12,
)
_calls = st.lists(st.builds(Call, _names, st.dictionaries(_keys, _values, max_size=4)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(_calls)
def test_round_trip(calls: list[Call]) -> None:
    text = render_calls(calls)
    assert parse_calls(text) == calls
    assert parse_calls(f"  {text}\n") == calls


@settings(max_examples=150, deadline=None)
@given(_calls, st.data())
def test_incremental_feeding_matches_whole_text(calls: list[Call], data: st.DataObject) -> None:
    text = render_calls(calls)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    scanner = CallScanner()
    previous = 0
    for cut in [*cuts, len(text)]:
        view = scanner.feed(text[previous:cut])
        previous = cut
        assert view == parse_partial(text[:cut])
        assert view.calls == calls[: len(view.calls)]
    assert view.closed and view.calls == calls and view.end == len(text)
    assert scanner.finish() == calls


# -- partial parsing -------------------------------------------------------------------------

PARTIAL_TEXT = (
    '[get_weather(city="Paris (FR)", note="a]b\\"c)"), '
    "Market Trends API(x=[1, {'k': (2, -3.5)}], flag=True, q='it\\'s [x]')]"
)


def _string_spans(text: str) -> list[tuple[int, int]]:
    """(opening quote, after closing quote) of every string literal, by Python's tokenizer."""
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return [(t.start[1], t.end[1]) for t in tokens if t.type == tokenize.STRING]


def test_every_prefix_of_a_known_response() -> None:
    text = PARTIAL_TEXT
    first_end = text.index('"), Market') + 2
    ends = [first_end, len(text) - 1]
    final = parse_calls(text)
    assert final == [
        Call("get_weather", {"city": "Paris (FR)", "note": 'a]b"c)'}),
        Call("Market Trends API", {"x": [1, {"k": (2, -3.5)}], "flag": True, "q": "it's [x]"}),
    ]
    spans = _string_spans(text)
    assert len(spans) == 4
    first_paren = text.index("(")
    scanner = CallScanner()
    for k in range(len(text) + 1):
        view = parse_partial(text[:k])
        assert view == (scanner.feed(text[k - 1 : k]) if k else scanner.snapshot())
        assert view.error is None
        assert view.is_call_list is (None if k <= first_paren else True)
        assert view.call_ends == [e for e in ends if e <= k]
        assert view.calls == final[: len(view.call_ends)]
        assert view.closed is (k == len(text))
        assert view.end == (len(text) if k == len(text) else None)
        assert view.in_string is any(s < k < e for s, e in spans), k


def test_in_string_with_empty_and_triple_quotes() -> None:
    text = "[f(a='', b='''x'y''')]"
    inside = [k for k in range(len(text) + 1) if parse_partial(text[:k]).in_string]
    # `''` at the very end (k=13) reads as an empty string; see PartialCalls.
    assert inside == [6, 12, 14, 15, 16, 17, 18, 19]
    assert parse_calls(text) == [Call("f", {"a": "", "b": "x'y"})]


def test_partial_prose_and_undecided() -> None:
    assert parse_partial("").is_call_list is None
    assert parse_partial("  [").is_call_list is None
    assert parse_partial("[Market Trends").is_call_list is None
    assert parse_partial("[Market Trends API(").is_call_list is True
    prose = parse_partial("[see above] it is")
    assert prose.is_call_list is False and prose.done and prose.error is None
    assert parse_partial("Hello").is_call_list is False


def test_partial_error_appears_once_and_stays() -> None:
    text = "[f(a=1), g(b=x), h()]"
    bad_call_end = text.index("x)") + 1
    for k in range(len(text) + 1):
        view = parse_partial(text[:k])
        if k <= bad_call_end:
            assert view.error is None
        else:
            assert view.error is not None and view.error.position == text.index("x")
            assert view.calls == [Call("f", {"a": 1})] and view.done


def test_partial_bracket_error_is_immediate() -> None:
    view = parse_partial("[f(a=[1, 2)")
    assert view.error is not None and view.error.reason == "unbalanced_brackets"


def test_next_call_boundary_skips_stop_strings_inside_strings() -> None:
    text = '[f(q="a)b"), g(x=1)]'
    assert next_call_boundary('[f(q="a)') is None  # the `)` is inside the string
    assert next_call_boundary('[f(q="a)b")') == 11
    assert next_call_boundary(text) == 11
    assert next_call_boundary(text, start=11) == 19
    assert next_call_boundary(text, start=19) is None
    assert next_call_boundary(text, start=19, include_close=True) == 20
    assert next_call_boundary("I cannot help (sorry)") is None
