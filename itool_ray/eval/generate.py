"""Held-out accuracy of a policy: render prompts, greedy decode, score.

Two ways to decode: one in-process ``VLLMPolicy`` (:func:`evaluate_sets`), or the replicas of
a ``ReplicaPool`` in parallel (:func:`evaluate_on_pool`). Both score with the same
:func:`score_sets`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from itool_ray.data import Sample, render_prompt
from itool_ray.envs.dialogue import ChatPrompt
from itool_ray.eval.scoring import (
    EvalSummary,
    Scored,
    gold_call_count,
    score_response,
    summarize,
)

Responder = Callable[[list[Sample]], Sequence[str | None]]
"""Greedy responses for samples, in order; None where the prompt does not fit the context."""

R = TypeVar("R", Sample, ChatPrompt)


def decode_budget(gold_token_counts: Iterable[int], *, floor: int = 32) -> int:
    """A decoding budget under which no right answer is cut: the longest gold (in tokens),
    plus a quarter for spelling that differs from the gold's (spaces, quotes, argument
    order), plus 8 for the end-of-turn token; at least ``floor``."""
    longest = max(gold_token_counts, default=0)
    return max(floor, math.ceil(longest * 1.25) + 8)


def request_key(sample: Sample | ChatPrompt) -> str:
    """What a greedy response depends on besides the policy: the request's tools and
    messages (a sample's id and gold, a chat prompt's entry, turn and step do not enter the
    prompt), as a SHA-256 hex digest."""
    body = json.dumps([list(sample.tools), list(sample.messages)], sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


ANSWERS_FILE = "answers.partial.jsonl"
"""In an evaluation's folder: its single-turn answers as :func:`recorded` keeps them."""
TURNS_FILE = "turns.partial.jsonl"
"""In an evaluation's folder: its multi-turn steps as :func:`recorded` keeps them."""


def read_recorded(path: str | Path) -> dict[str, str | None]:
    """The answers a :func:`recorded` file holds, by :func:`request_key` (none: no file). A
    torn last line (a stop mid-write) is ignored."""
    path = Path(path)
    known: dict[str, str | None] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                known[row["key"]] = row["text"]
            except (ValueError, KeyError, TypeError):
                continue
    return known


def recorded(respond: Callable[[list[R]], Sequence[str | None]], path: str | Path):
    """``respond`` that appends every answer to ``path`` (JSON lines ``{"key", "text"}``,
    :func:`request_key`) and answers from it the requests already there, so that a stopped
    evaluation decodes again only what it had not finished. ``respond`` is a
    :data:`Responder` (samples) or a multi-turn ``ChatResponder`` (chat prompts): a resumed
    multi-turn loop replays its recorded steps, and since the tools it executes are
    deterministic, reaches the same conversations and decodes from where it stopped.
    Greedy decoding of the same policy makes a recorded answer the one it would give again;
    the file belongs to one policy and one decoding setting (the caller's stage folder)."""
    path = Path(path)
    known = read_recorded(path)

    def run(samples: list[R]) -> list[str | None]:
        keys = [request_key(s) for s in samples]
        todo = [i for i, k in enumerate(keys) if k not in known]
        if todo:
            got = list(respond([samples[i] for i in todo]))
            if len(got) != len(todo):
                raise RuntimeError(f"responder returned {len(got)} answers for {len(todo)}")
            with path.open("a") as f:
                for i, text in zip(todo, got, strict=True):
                    known[keys[i]] = text
                    f.write(json.dumps({"key": keys[i], "text": text}) + "\n")
        return [known[k] for k in keys]

    return run


def score_sets(sets: Mapping[str, Sequence[Sample]], respond: Responder) -> list[EvalSummary]:
    """Decode every sample of every set with one ``respond`` call and score each set.

    Prompts that do not fit (``None`` responses) are counted per set as skipped, never
    truncated silently; a response that does not parse is a wrong answer.
    """
    owners = [(name, s) for name, samples in sets.items() for s in samples]
    responses = list(respond([s for _, s in owners])) if owners else []
    if len(responses) != len(owners):
        raise RuntimeError(f"responder returned {len(responses)} answers for {len(owners)}")
    scored: dict[str, list] = {name: [] for name in sets}
    skipped = dict.fromkeys(sets, 0)
    for (name, s), text in zip(owners, responses, strict=True):
        if text is None:
            skipped[name] += 1
        else:
            scored[name].append(score_one(name, s, text))
    return [summarize(name, scored[name], skipped[name]) for name in sets]


def score_multi_turn_sets(sets: Mapping[str, Sequence[Any]], respond: Any) -> list[EvalSummary]:
    """Decode every multi-turn entry of every set (``MultiTurnEntry``) in one lockstep loop
    (:func:`~itool_ray.eval.multi_turn.run_multi_turn`, ``respond`` a ``ChatResponder``) and
    judge each with BFCL's multi-turn checker (``judge_multi_turn``). A record's
    ``gold_calls`` is the entry's gold calls over all its turns; a prompt that does not fit
    the context makes its entry wrong, never skipped."""
    from itool_ray.eval.benchmarks import judge_multi_turn
    from itool_ray.eval.multi_turn import run_multi_turn

    entries = [e for items in sets.values() for e in items]
    runs = {r.entry_id: r for r in run_multi_turn(entries, respond)} if entries else {}
    out = []
    for name, items in sets.items():
        scored = []
        for e in items:
            run = runs[e.id]
            v = judge_multi_turn(e, run)
            calls = sum(len(turn) for turn in e.gold)
            scored.append(
                Scored(
                    e.id,
                    v.response or "",
                    v.correct,
                    v.partial,
                    v.parse_error,
                    calls,
                    detail=play_detail(e, run, v.partial),
                )
            )
        out.append(summarize(name, scored))
    return out


def play_detail(entry: Any, run: Any, partial: float) -> dict[str, Any]:
    """How a multi-turn entry was played (a ``MultiTurnRun``), for its record: the turns it
    has and passed before the first failure, the messages asked for, those that were a call
    list, the calls executed, those refused (unknown function, arguments its doc refuses,
    an exception) and of them those naming no function, and why it stopped early if it did."""
    return {
        "turns": entry.num_turns,
        "turns_passed": round(partial * entry.num_turns),
        "steps": run.queries,
        "call_steps": run.call_steps,
        "calls": run.calls,
        "refused": run.refused,
        "unknown": run.unknown,
        "stopped": run.stopped,
    }


def score_one(set_name: str, sample: Sample, response: str) -> Scored:
    """A BFCL set (``bfcl/<category>``) is judged by BFCL's official AST checker (as the
    benchmark does), any other set by the project's BFCL-compatible checker."""
    if set_name.startswith("bfcl/"):
        from itool_ray.eval.benchmarks import judge

        v = judge(set_name, sample, response)
        return Scored(
            sample.id, response, v.correct, v.partial, v.parse_error, gold_call_count(sample)
        )
    return score_response(sample, response)


def policy_responder(policy, *, max_tokens: int = 192) -> Responder:
    """Greedy responses of ``policy`` (a ``VLLMPolicy`` or anything with its ``generate``,
    ``tokenizer`` and ``config``), all samples in one engine batch."""
    tok = policy.tokenizer
    limit = policy.config.max_model_len - max_tokens

    def respond(samples: list[Sample]) -> list[str | None]:
        ids = [tok(render_prompt(s, tok), add_special_tokens=False)["input_ids"] for s in samples]
        keep = [i for i, p in enumerate(ids) if len(p) <= limit]
        outs = policy.generate([ids[i] for i in keep], n=1, max_tokens=max_tokens, temperature=0.0)
        texts: list[str | None] = [None] * len(samples)
        for i, (completion,) in zip(keep, outs, strict=True):
            texts[i] = completion.text
        return texts

    return respond


def pool_responder(
    pool, *, max_tokens: int = 192, retries: int = 3, restart_wait_s: float = 600.0
) -> Responder:
    """Greedy responses from a ``ReplicaPool``: the samples split over its healthy replicas
    (``PolicyReplica.respond``), all decoding in parallel at the pool's current version.

    A replica that fails (its engine died, its process was killed) is marked down and its
    share is decoded again, by the other replicas or by the restarted one (Ray restarts the
    actor; the pool brings it back to the current version), up to ``retries`` times.
    """

    def respond(samples: list[Sample]) -> list[str | None]:
        from itool_ray.rollout.scatter import scatter

        return scatter(
            pool, "respond", samples, max_tokens, retries=retries, restart_wait_s=restart_wait_s
        )

    return respond


def evaluate_sets(
    policy, sets: Mapping[str, Sequence[Sample]], *, max_tokens: int = 192
) -> list[EvalSummary]:
    """Greedy responses of ``policy`` (see :func:`policy_responder`) for every sample of every
    set, in one engine batch, scored by :func:`score_sets`."""
    return score_sets(sets, policy_responder(policy, max_tokens=max_tokens))


def evaluate_on_pool(
    pool, sets: Mapping[str, Sequence[Sample]], *, max_tokens: int = 192
) -> list[EvalSummary]:
    """Like :func:`evaluate_sets`, decoded on the pool's replicas (:func:`pool_responder`)."""
    return score_sets(sets, pool_responder(pool, max_tokens=max_tokens))
