"""BFCL v3 multi-turn evaluation: the decoding loop on scripted responders (gold, garbage and
poison, one that never stops calling, one whose prompts stop fitting), the rendering of tool
results, the oracle run of ``jobs/evaluate.py`` (no engine), and one run on a real engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from itool_ray.envs import (
    MAX_STEPS_PER_TURN,
    MULTI_TURN_CATEGORIES,
    NO_CALL_TEXT,
    World,
    gold_calls,
    load_multi_turn,
    score_entry,
)
from itool_ray.eval.benchmarks import expand_benchmarks, judge_multi_turn, score_multi_turn_part
from itool_ray.eval.multi_turn import (
    REVEAL_TEXT,
    TOOL_OUTPUT_HEADER,
    ChatPrompt,
    chat_messages,
    oracle_chat_responder,
    render_chat_prompt,
    renders_tool_role,
    run_multi_turn,
)
from itool_ray.eval.report import render_markdown, score_benchmarks

REPO = Path(__file__).resolve().parents[2]
PER_CATEGORY = 3


@pytest.fixture(scope="module")
def entries():
    """The first entries of every category (composite_0-2 have answerable gold)."""
    return {c: load_multi_turn(c)[:PER_CATEGORY] for c in MULTI_TURN_CATEGORIES}


@pytest.fixture(scope="module")
def flat(entries):
    return [e for es in entries.values() for e in es]


class Recorder:
    """Wraps a responder; keeps every call's prompts."""

    def __init__(self, respond) -> None:
        self.respond, self.calls = respond, []

    def __call__(self, prompts):
        self.calls.append(list(prompts))
        return self.respond(prompts)

    def prompts_of(self, entry_id: str) -> list[ChatPrompt]:
        return [p for batch in self.calls for p in batch if p.entry_id == entry_id]


# ---- the gold through the loop ---------------------------------------------------------------


def test_gold_through_the_loop_scores_100_on_every_category(flat):
    fake = Recorder(oracle_chat_responder(flat))
    runs = run_multi_turn(flat, fake)
    assert [r.entry_id for r in runs] == [e.id for e in flat]
    for entry, run in zip(flat, runs, strict=True):
        verdict = score_entry(entry, run.outputs)
        assert verdict.valid, (entry.id, verdict)
        assert run.stopped is None and len(run.outputs) == entry.num_turns
        # a turn with gold calls: the calls, then a text that ends it; else the text alone
        for turn, steps in enumerate(run.outputs):
            assert steps[-1] == NO_CALL_TEXT and len(steps) == (2 if entry.gold[turn] else 1)
    # lockstep: every round asks once for each entry still running, in one call
    assert len(fake.calls) == max(r.queries for r in runs)
    assert len(fake.calls[0]) == len(flat)
    assert sum(len(b) for b in fake.calls) == sum(r.queries for r in runs)


def test_the_conversation_carries_the_tool_results_and_the_revealed_functions(entries):
    entry = entries["multi_turn_miss_func"][0]
    fake = Recorder(oracle_chat_responder([entry]))
    (run,) = run_multi_turn([entry], fake)
    prompts = fake.prompts_of(entry.id)
    first, second = prompts[0], prompts[1]
    assert first.messages == tuple(entry.turns[0]) and (first.turn, first.step) == (0, 0)
    # step 1 of turn 0: the gold calls, then one tool message per call with its result
    calls = gold_calls(entry, 0)
    expected = World.from_entry(entry).execute(calls)
    assert second.messages[1] == {"role": "assistant", "content": run.outputs[0][0]}
    tools = second.messages[2:]
    assert [m["role"] for m in tools] == ["tool"] * len(calls)
    assert [m["content"] for m in tools] == expected
    assert tools[0]["name"].startswith(calls[0].name + "(")
    # the revealing turn: BFCL's user message, and the withheld docs in the tool list
    (reveal,) = entry.missed_functions
    at = next(p for p in prompts if p.turn == reveal and p.step == 0)
    assert at.messages[-1] == {"role": "user", "content": REVEAL_TEXT}
    before = next(p for p in prompts if p.turn == reveal - 1)
    names = {f["name"] for f in at.tools} - {f["name"] for f in before.tools}
    assert names == set(entry.missed_functions[reveal])
    assert at.tools == entry.functions_at(reveal)


# ---- model outputs that are wrong ---------------------------------------------------------

GARBAGE = [
    "",
    "Sure! Let me help you with that.",
    "[cd(folder='document'",  # never closes
    "```python\nls()\n```",
    "[ls(a=True), mkdir(dir_name=]",
    "{'name': 'ls'}",
    "\x00\ufffd[[[]]]",
]
POISON = [
    "[__import__(name='os')]",
    "[os.system(command='touch {sentinel}')]",
    "[open(file='{sentinel}', mode='w')]",
    "[_load_scenario(scenario={{}}, long_context=True)]",
    "[__class__()]",
    "[eval(source=\"open('{sentinel}', 'w')\")]",
]


def _cycling(texts):
    def respond(prompts):
        return [texts[(p.turn + p.step) % len(texts)] for p in prompts]

    return respond


def test_garbage_scores_0_without_an_error(flat):
    runs = run_multi_turn(flat, _cycling(GARBAGE))
    for entry, run in zip(flat, runs, strict=True):
        verdict = judge_multi_turn(entry, run)
        assert not verdict.correct and run.calls == 0
        assert run.queries == entry.num_turns  # every step ended its turn
        assert verdict.multi_turn["error_type"] == "multi_turn:empty_turn_model_response"
    result, _ = score_multi_turn_part("bfcl/multi_turn_base", flat, runs)
    # every entry reaches turn 2, whose text begins a call list that never closes
    assert result.correct == 0 and result.parse_errors == len(flat) and result.no_call == 0


def test_poison_is_refused_scores_0_and_runs_nothing(flat, tmp_path):
    sentinel = tmp_path / "pwned"
    poison = [t.format(sentinel=sentinel) for t in POISON]

    def respond(prompts):  # a poison call at a turn's first step, then a sentence
        return [poison[p.turn % len(poison)] if p.step == 0 else "Done." for p in prompts]

    fake = Recorder(respond)
    runs = run_multi_turn(flat, fake)
    for entry, run in zip(flat, runs, strict=True):
        assert not judge_multi_turn(entry, run).correct
        assert run.stopped is None and run.calls == entry.num_turns
        assert run.refused == run.calls  # every poison call refused
    assert not sentinel.exists()
    results = [
        m["content"] for b in fake.calls for p in b for m in p.messages if m["role"] == "tool"
    ]
    assert results and all(r.startswith("Error during execution: ") for r in results)
    assert any("name '__import__' is not defined" in r for r in results)
    assert any("name '_load_scenario' is not defined" in r for r in results)


def test_a_model_that_never_stops_calling_is_bounded_by_the_step_limit(entries):
    entry = entries["multi_turn_base"][0]
    always = Recorder(lambda prompts: ["[pwd()]"] * len(prompts))
    (run,) = run_multi_turn([entry], always)
    # BFCL's handler: force quit once a turn has executed more than MAXIMUM_STEP_LIMIT steps
    assert run.stopped == "step_limit" and run.queries == MAX_STEPS_PER_TURN + 1
    assert len(run.outputs) == 1 and run.calls == MAX_STEPS_PER_TURN + 1
    verdict = judge_multi_turn(entry, run)
    assert not verdict.correct
    assert verdict.multi_turn["error_type"] == "multi_turn:force_terminated"
    assert "step_limit" in verdict.error
    (short,) = run_multi_turn([entry], always, max_steps=2)
    assert short.queries == 3


def test_the_run_counts_call_lists_refused_and_unknown_calls(entries):
    """Each turn: one call list of a valid call, an unknown function and an unknown keyword,
    then a sentence; the run and its scored record say so."""
    from itool_ray.eval.generate import score_multi_turn_sets

    entry = entries["multi_turn_base"][0]
    mixed = '[pwd(), no_such_function(x=1), cd(no_such_argument="a")]'
    respond = lambda prompts: [mixed if p.step == 0 else "Done." for p in prompts]  # noqa: E731
    (run,) = run_multi_turn([entry], respond)
    t = entry.num_turns
    assert (run.queries, run.call_steps, run.calls) == (2 * t, t, 3 * t)
    assert (run.refused, run.unknown) == (2 * t, t)
    assert run.to_json()["refused"] == 2 * t
    (summary,) = score_multi_turn_sets({"bfcl/multi_turn_base": [entry]}, respond)
    (record,) = summary.records
    assert record["turns"] == t and record["turns_passed"] == 0
    assert (record["steps"], record["call_steps"], record["calls"]) == (2 * t, t, 3 * t)
    assert (record["refused"], record["unknown"], record["stopped"]) == (2 * t, t, None)
    (gold,) = score_multi_turn_sets(
        {"bfcl/multi_turn_base": [entry]}, oracle_chat_responder([entry])
    )
    assert gold.records[0]["turns_passed"] == t and gold.records[0]["refused"] == 0


def test_a_prompt_that_does_not_fit_ends_the_entry(entries):
    entry = entries["multi_turn_base"][1]
    gold = oracle_chat_responder([entry])

    def respond(prompts):  # the context is full from turn 1 on
        return [None if p.turn >= 1 else t for p, t in zip(prompts, gold(prompts), strict=True)]

    fake = Recorder(respond)
    (run,) = run_multi_turn([entry], fake)
    assert run.stopped == "context" and len(run.outputs) == entry.num_turns
    assert run.outputs[1] == (None,) and all(t == () for t in run.outputs[2:])
    assert len(fake.prompts_of(entry.id)) == 3  # turn 0: gold + text; turn 1: one try
    result, (verdict,) = score_multi_turn_part("bfcl/multi_turn_base", [entry], [run])
    assert not verdict.correct and verdict.multi_turn["turn"] == 1
    assert result.skipped == 1 and result.n == 1


def test_a_wrong_responder_is_an_error_not_a_verdict(entries):
    entry = entries["multi_turn_base"][0]
    with pytest.raises(RuntimeError, match="0 answers for 1"):
        run_multi_turn([entry], lambda prompts: [])
    with pytest.raises(TypeError, match="responder answered int"):
        run_multi_turn([entry], lambda prompts: [7])
    with pytest.raises(ValueError, match="distinct"):
        run_multi_turn([entry, entry], lambda prompts: ["x"] * len(prompts))


# ---- rendering -------------------------------------------------------------------------------


class ChatML:
    """ChatML as SmolLM2's template writes it (any role); ``refuse_tool``: a template that
    raises on a ``tool`` message."""

    def __init__(self, refuse_tool: bool = False) -> None:
        self.refuse_tool = refuse_tool

    def apply_chat_template(self, messages, *, tokenize=False, add_generation_prompt=True):
        if self.refuse_tool and any(m["role"] == "tool" for m in messages):
            raise ValueError("Conversation roles must alternate user/assistant")
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def _prompt() -> ChatPrompt:
    tools = ({"name": "ls", "description": "list", "parameters": {"type": "dict"}},)
    messages = (
        {"role": "user", "content": "list and pwd"},
        {"role": "assistant", "content": "[ls(), pwd()]"},
        {"role": "tool", "name": "ls()", "content": '{"current_directory_content": []}'},
        {"role": "tool", "name": "pwd()", "content": '{"current_working_directory": "/"}'},
    )
    return ChatPrompt(messages, tools, "e", 0, 1)


def test_tool_results_render_as_tool_turns_where_the_template_has_them():
    prompt = _prompt()
    text = render_chat_prompt(prompt, ChatML())
    assert renders_tool_role(ChatML())
    assert text.count("<|im_start|>tool\n") == 2 and '"current_working_directory": "/"' in text
    assert text.startswith("<|im_start|>system\nYou are an expert in composing functions.")
    assert '"name": "ls"' in text and text.endswith("<|im_start|>assistant\n")


def test_a_template_without_tool_role_gets_one_marked_user_turn():
    prompt, refusing = _prompt(), ChatML(refuse_tool=True)
    assert not renders_tool_role(refusing)
    messages = chat_messages(prompt, tool_role=False)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"] == (
        f'{TOOL_OUTPUT_HEADER}\nls() -> {{"current_directory_content": []}}\n'
        'pwd() -> {"current_working_directory": "/"}'
    )
    text = render_chat_prompt(prompt, refusing)
    assert "<|im_start|>tool" not in text and TOOL_OUTPUT_HEADER in text


def test_the_smollm2_template_renders_tool_turns():
    folder = Path.home() / ".cache" / "itool-ray" / "models" / "SmolLM2-135M-Instruct"
    if not (folder / "tokenizer_config.json").is_file():
        pytest.skip("SmolLM2 not converted yet (python -m itool_ray.models smollm2)")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    assert renders_tool_role(tok)
    text = render_chat_prompt(_prompt(), tok)
    assert '<|im_start|>tool\n{"current_directory_content": []}<|im_end|>' in text


# ---- the job ---------------------------------------------------------------------------------


def test_multi_turn_parts_are_in_the_bfcl_group():
    parts = expand_benchmarks({"bfcl": 2})
    assert all(parts[f"bfcl/{c}"] == 2 for c in MULTI_TURN_CATEGORIES)
    assert list(expand_benchmarks({"bfcl/multi_turn": None})) == [
        f"bfcl/{c}" for c in MULTI_TURN_CATEGORIES
    ]


def test_score_benchmarks_needs_a_chat_responder(entries):
    sets = {"bfcl/multi_turn_base": list(entries["multi_turn_base"])}
    with pytest.raises(ValueError, match="need a respond_chat"):
        score_benchmarks(sets, lambda samples: [])
    report, verdicts = score_benchmarks(
        sets, lambda samples: [], respond_chat=oracle_chat_responder(sets["bfcl/multi_turn_base"])
    )
    assert report.parts["bfcl/multi_turn_base"].accuracy == 1.0
    assert report.bfcl["evaluated"]["multi_turn"].accuracy == 1.0
    assert "| Multi-turn | base |" in render_markdown(report)


def test_oracle_run_of_the_job_end_to_end(tmp_path):
    """``jobs/evaluate.py model=oracle``: no engine, 100 on every category whose gold BFCL
    accepts; the composite gold that is not Python is listed with its reason."""
    out = tmp_path / "oracle"
    benchmarks = "{bfcl: 3, bfcl/multi_turn_composite: 9}"  # composite_8's gold is broken
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['evaluate.py', 'model=oracle', 'benchmarks={benchmarks}', 'out_dir={out}']\n"
        "try:\n"
        f"    runpy.run_path({str(REPO / 'jobs' / 'evaluate.py')!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "bad = [m for m in ('ray', 'vllm', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "results.md").read_text()
    assert "| 100.00 | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 |" in md  # the paper's columns
    assert "| 100.00 | 100.00 | 100.00 | 100.00 | 100.00 | 88.89 |" in md  # multi-turn table
    data = json.loads((out / "results.json").read_text())
    assert data["bfcl_summary"]["evaluated"]["multi_turn"]["accuracy"] == 1.0
    assert data["bfcl_summary"]["evaluated"]["multi_turn"]["total_count"] == 12
    for c in MULTI_TURN_CATEGORIES:
        assert data["bfcl_categories"][c]["total_count"] == (9 if "composite" in c else 3)
    assert [(r["part"], r["id"]) for r in data["rejected_gold"]] == [
        ("bfcl/multi_turn_composite", "multi_turn_composite_8")
    ]
    assert "invalid character" in data["rejected_gold"][0]["gold_defects"][0]
    assert "multi_turn_composite_8" in md
    records = [json.loads(x) for x in (out / "responses.jsonl").read_text().splitlines()]
    multi = [r for r in records if r["part"].startswith("bfcl/multi_turn")]
    assert len(multi) == 4 * 3 + 9 and all(r["multi_turn"]["outputs"] for r in multi)


# ---- a real engine ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_tiny_dir(tmp_path_factory) -> Path:
    """The tiny model with room for a multi-turn prompt (8-14k of its tokens)."""
    from itool_ray.models import TinyModelSpec, build_tiny_model

    out = tmp_path_factory.mktemp("models") / "tiny-16k"
    return build_tiny_model(out, TinyModelSpec(max_position_embeddings=16384))


@pytest.mark.vllm
def test_the_job_on_a_real_engine_gives_a_verdict_per_entry(ray_local, long_tiny_dir, tmp_path):
    from itool_ray.config import load_config
    from itool_ray.eval.job import EvaluateConfig, run_evaluate_job

    cfg = load_config(
        EvaluateConfig,
        None,
        [
            f"model={long_tiny_dir}",
            "benchmarks={bfcl/multi_turn_base: 2}",
            f"out_dir={tmp_path}",
            "max_tokens=24",
            "replicas.count=1",
            "engine.dtype=float32",
            "engine.max_model_len=16384",
            "engine.cpu_kvcache_gb=1",
        ],
    )
    result = run_evaluate_job(cfg)
    part = result["parts"]["bfcl/multi_turn_base"]
    assert part["n"] == 2 and part["skipped"] == 0
    records = [json.loads(x) for x in Path(result["files"]["responses"]).read_text().splitlines()]
    assert [r["sample_id"] for r in records] == ["multi_turn_base_0", "multi_turn_base_1"]
    for r in records:
        run = r["multi_turn"]
        assert isinstance(r["correct"], bool) and run["queries"] >= 4
        assert all(isinstance(t, str) for turn in run["outputs"] for t in turn)
    assert result["bfcl_summary"]["evaluated"]["multi_turn"]["total_count"] == 2
    # every step decoded is recorded, for a resume (its tests: test_evaluate_config.py)
    steps = sum(len(turn) for r in records for turn in r["multi_turn"]["outputs"])
    assert len((tmp_path / "turns.partial.jsonl").read_text().splitlines()) == steps
