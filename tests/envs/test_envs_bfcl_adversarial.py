"""Adversarial model turns: every one is refused (or contained) with an error result, nothing
runs outside the loaded instances, and a refused call leaves the instances byte-identical."""

from __future__ import annotations

import decimal
import json
import pickle
import time
from pathlib import Path

import mpmath
import pytest

from itool_ray.calls import Call, CallParseError, parse_calls
from itool_ray.envs import ERROR_PREFIX, MAX_CALLS_PER_STEP, MAX_PRECISION, World
from tests.envs.bfcl_helpers import bfcl_execute, class_globals, clear_bfcl_instances, new_tag


@pytest.fixture
def fs_math(entries_by_id) -> World:
    """GorillaFileSystem + MathAPI (multi_turn_base_15)."""
    return World.from_entry(entries_by_id["multi_turn_base_15"])


def _snapshot(world: World) -> bytes:
    return pickle.dumps(world.instances)


def _escape_calls(target: str) -> list[str]:
    """Calls that would touch ``target`` on disk, or reach Python, if anything ran them."""
    t = repr(target)
    return [
        f"[os.system(command={t})]",
        f"[open(file={t}, mode='w')]",
        f"[eval(source=\"open({t}, 'w')\")]",
        f"[exec(source=\"open({t}, 'w')\")]",
        "[__import__(name='os')]",
        f"[subprocess.run(args=['touch', {t}])]",
        "[importlib.import_module(name='os')]",  # a name in BFCL executor's own globals
        "[json.dumps(obj=1)]",
        "[copy.deepcopy(x=1)]",
        "[globals()]",
        "[getattr(o='x', name='upper')]",
        "[setattr(obj='x', name='y', value=1)]",
        "[breakpoint()]",
        "[exit(code=0)]",
        "[kill(pid=1)]",
        "[print(value='x')]",
    ]


NAME_CALLS = [
    "[frobnicate(a=1)]",
    "[_load_scenario(scenario={}, long_context=True)]",
    "[_navigate_to_directory(path='/')]",
    "[_parse_positions(positions='1-')]",
    "[__init__()]",
    "[__class__()]",
    "[__dict__()]",
    "[__getattribute__(name='root')]",
    "[__reduce_ex__(protocol=2)]",
    "[GorillaFileSystem.ls(a=True)]",
    "[GorillaFileSystem._load_scenario(scenario={})]",
    "[self.ls(a=True)]",
    "[ls.__globals__()]",
    "[root.contents()]",
    "[itooltest_eval_multi_turn_base_15_gorillafilesystem_instance.ls()]",
    "[MathAPI(a=1)]",
    "[mpmath.mp(dps=10)]",
    "[os.system(command='true')]",
]


@pytest.mark.parametrize("text", NAME_CALLS)
def test_names_outside_the_public_documented_functions_are_refused(fs_math, text):
    before = _snapshot(fs_math)
    (call,) = parse_calls(text)
    (result,) = fs_math.execute([call])
    assert result == f"{ERROR_PREFIX}name '{call.name}' is not defined"
    assert _snapshot(fs_math) == before


def test_nothing_runs_outside_the_instances(fs_math, tmp_path):
    sentinel = tmp_path / "sentinel"
    before_globals, before = class_globals(), _snapshot(fs_math)
    for text in _escape_calls(str(sentinel)):
        results = fs_math.execute(parse_calls(text))
        assert all(r.startswith(ERROR_PREFIX + "name ") for r in results), text
    # documented functions given host paths stay inside the in-memory file system
    name = f"itool-sentinel-{tmp_path.name}"
    (refused,) = fs_math.execute(parse_calls(f"[echo(content='x', file_name={str(sentinel)!r})]"))
    (touched,) = fs_math.execute(parse_calls(f"[touch(file_name={name!r})]"))
    assert "Invalid character" in refused and touched == "None"
    assert not sentinel.exists() and list(tmp_path.iterdir()) == []
    assert not (Path.cwd() / name).exists()
    assert class_globals() == before_globals
    assert _snapshot(fs_math) != before  # the touch made an in-memory file


ARGUMENT_CALLS = [
    (
        "[cd(folder='x', extra=1)]",
        "GorillaFileSystem.cd() got an unexpected keyword argument 'extra'",
    ),
    ("[cd(self='x')]", "GorillaFileSystem.cd() got an unexpected keyword argument 'self'"),
    ("[cd()]", "GorillaFileSystem.cd() missing 1 required positional argument: 'folder'"),
    (
        "[mv(source='a')]",
        "GorillaFileSystem.mv() missing 1 required positional argument: 'destination'",
    ),
    (
        "[diff()]",
        "GorillaFileSystem.diff() missing 2 required positional arguments: 'file_name1' and 'file_name2'",
    ),
    (
        "[logarithm()]",
        "MathAPI.logarithm() missing 3 required positional arguments: 'value', 'base', and 'precision'",
    ),
    ("[cd(folder=1)]", "GorillaFileSystem.cd() argument 'folder' must be 'string', not int"),
    (
        "[cd(folder=None)]",
        "GorillaFileSystem.cd() argument 'folder' must be 'string', not NoneType",
    ),
    ("[ls(a='yes')]", "GorillaFileSystem.ls() argument 'a' must be 'boolean', not str"),
    (
        "[tail(file_name='a', lines=True)]",
        "GorillaFileSystem.tail() argument 'lines' must be 'integer', not bool",
    ),
    (
        "[tail(file_name='a', lines=2.5)]",
        "GorillaFileSystem.tail() argument 'lines' must be 'integer', not float",
    ),
    (
        "[mkdir(dir_name=['a'])]",
        "GorillaFileSystem.mkdir() argument 'dir_name' must be 'string', not list",
    ),
    ("[add(a=True, b=1)]", "MathAPI.add() argument 'a' must be 'float', not bool"),
    ("[mean(numbers=(1, 2))]", "MathAPI.mean() argument 'numbers' must be 'array', not tuple"),
    (
        "[mean(numbers=[1, 'two'])]",
        "MathAPI.mean() argument 'numbers' must be 'array' of 'float', not list",
    ),
    ("[mean(numbers={'a': 1})]", "MathAPI.mean() argument 'numbers' must be 'array', not dict"),
]


@pytest.mark.parametrize(("text", "message"), ARGUMENT_CALLS)
def test_bad_arguments_are_refused_before_the_call(fs_math, text, message):
    before = _snapshot(fs_math)
    assert fs_math.execute(parse_calls(text)) == [ERROR_PREFIX + message]
    assert _snapshot(fs_math) == before


@pytest.mark.parametrize(
    "text", ["[cd(x=1)]", "[cd()]", "[diff()]", "[frobnicate(a=1)]", "[logarithm()]"]
)
def test_refusals_read_as_bfcl_reports_them(entries_by_id, fs_math, text, restore_class_globals):
    """Where BFCL's eval refuses the same (safe) call, its result text is the same."""
    tag = new_tag()
    theirs, _ = bfcl_execute(entries_by_id["multi_turn_base_15"], [text[1:-1]], tag)
    clear_bfcl_instances(tag)
    assert fs_math.execute(parse_calls(text)) == theirs


def test_odd_call_objects_are_refused(fs_math):
    before = _snapshot(fs_math)
    cyclic: list = []
    cyclic.append(cyclic)
    calls = [
        Call("cd", {1: "x"}),
        Call("mean", {"numbers": cyclic}),
        Call("cd", {"folder": cyclic}),
        "cd(folder='x')",
        None,
    ]
    results = fs_math.execute(calls)
    assert results == [
        ERROR_PREFIX + "GorillaFileSystem.cd() got an unexpected keyword argument '1'",
        ERROR_PREFIX + "MathAPI.mean() argument 'numbers' must be 'array' of 'float', not list",
        ERROR_PREFIX + "GorillaFileSystem.cd() argument 'folder' must be 'string', not list",
        ERROR_PREFIX + "name 'str' is not defined",
        ERROR_PREFIX + "name 'NoneType' is not defined",
    ]
    assert _snapshot(fs_math) == before


def test_positional_arguments_never_reach_the_world():
    for text in ["[cd('document')]", "[cd('a', folder='b')]", "[mean([1, 2])]"]:
        with pytest.raises(CallParseError) as info:
            parse_calls(text)
        assert info.value.reason == "positional_argument"


def test_ten_thousand_calls_in_one_step(fs_math):
    text = "[" + ", ".join(f"mkdir(dir_name='d{i}')" for i in range(10_000)) + "]"
    calls = parse_calls(text)
    start = time.perf_counter()
    results = fs_math.execute(calls)
    assert time.perf_counter() - start < 10
    assert len(results) == 10_000
    assert all("Error" not in r for r in results[:MAX_CALLS_PER_STEP])
    refused = results[MAX_CALLS_PER_STEP:]
    assert set(refused) == {
        f"{ERROR_PREFIX}too many calls in one step: only the first {MAX_CALLS_PER_STEP} are executed"
    }
    (listing,) = fs_math.execute(parse_calls("[ls()]"))
    made = [n for n in _listing(listing) if n.startswith("d") and n[1:].isdigit()]
    assert sorted(made, key=lambda n: int(n[1:])) == [f"d{i}" for i in range(MAX_CALLS_PER_STEP)]


def test_the_bound_is_a_parameter(fs_math):
    calls = parse_calls("[pwd(), pwd()]")
    assert [
        r.startswith(ERROR_PREFIX + "too many") for r in fs_math.execute(calls, max_calls=1)
    ] == [
        False,
        True,
    ]
    assert all(r.startswith(ERROR_PREFIX) for r in fs_math.execute(calls, max_calls=0))
    with pytest.raises(ValueError, match="max_calls"):
        fs_math.execute(calls, max_calls=-1)


def _listing(result: str) -> list[str]:
    return json.loads(result)["current_directory_content"]


def test_deeply_nested_poison_values(fs_math):
    before = _snapshot(fs_math)
    deep = "[" * 150 + "1" + "]" * 150
    for text in [
        f"[mean(numbers={deep})]",
        f"[echo(content={deep})]",
        "[cd(folder={'a': " + "{'a': " * 150 + "1" + "}" * 151 + ")]",
    ]:
        (result,) = fs_math.execute(parse_calls(text))
        assert result.startswith(ERROR_PREFIX) and "must be" in result
    for text in [
        "[mean(numbers=" + "[" * 100_000 + "]" * 100_000 + ")]",
        "[cd(folder=" + "-" * 10_000 + "1)]",
        "[tail(file_name='a', lines=" + "9" * 5000 + ")]",
    ]:
        with pytest.raises(CallParseError):
            parse_calls(text)
    assert _snapshot(fs_math) == before


def test_costly_math_is_refused_and_global_precision_is_restored(fs_math):
    dps, prec = mpmath.mp.dps, decimal.getcontext().prec
    refused = [
        f"[logarithm(value=10, base=2, precision={MAX_PRECISION + 1})]",
        "[logarithm(value=10, base=2, precision=1000000000)]",
        "[square_root(number=2, precision=1000000000)]",
        "[round_number(number=5, decimal_places=-1000000000)]",
        "[power(base=10, exponent=1000000000)]",
        f"[power(base=2, exponent={10**900})]",
    ]
    start = time.perf_counter()
    for text in refused:
        (result,) = fs_math.execute(parse_calls(text))
        assert result.startswith(ERROR_PREFIX + "MathAPI."), result
    # allowed but failing fast inside the method: an error result, no exception
    for text in [f"[power(base=2.0, exponent={10**900})]", "[power(base=10.0, exponent=1e308)]"]:
        (result,) = fs_math.execute(parse_calls(text))
        assert result.startswith(ERROR_PREFIX), result
    assert time.perf_counter() - start < 5
    (log,) = fs_math.execute(parse_calls("[logarithm(value=10, base=2, precision=50)]"))
    (root,) = fs_math.execute(parse_calls("[square_root(number=2, precision=60)]"))
    assert "3.32192809488736234787031942948939017586483139302458" in log
    assert "1.414213562373095048801688724209698078569671875376948073" in root
    assert (mpmath.mp.dps, decimal.getcontext().prec) == (dps, prec)


def test_an_exception_inside_a_method_is_a_result(entries_by_id):
    world = World.from_entry(entries_by_id["multi_turn_base_15"])
    # MathAPI.mean divides by len(numbers): an empty list raises inside BFCL's code
    (result,) = world.execute(parse_calls("[mean(numbers=[])]"))
    tag = new_tag()
    theirs, _ = bfcl_execute(entries_by_id["multi_turn_base_15"], ["mean(numbers=[])"], tag)
    clear_bfcl_instances(tag)
    assert [result] == theirs
