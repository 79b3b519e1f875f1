"""MCTS steps from a vLLM policy: expansion cut at call / sentence boundaries, self-evaluation.

``StepEngine`` implements the search's engine protocol (``itool_ray.mcts.search.Engine``) on
top of a :class:`~itool_ray.policy.vllm_engine.VLLMPolicy`:

- **expand**: prompts are token ids (chat template of the sample + the token ids of the path
  so far), so siblings and descendants share an exact prefix and vLLM's prefix cache hits.
  Sampling stops early on cheap stop strings (``"),"``, ``")]"``, sentence ends); the step's
  real end is then decided by the incremental call parser: a stop string that fell inside a
  string literal (``f(q="a),b")``) is not a boundary, and such completions are continued in
  a follow-up batch. A step that overshot a boundary is cut back to it (tokens and text).
  A prompt that does not fit the context with ``max_tokens`` more is never sent: its state
  gets one empty terminal step (:data:`CONTEXT_FULL`).
- **evaluate**: C(s) = P("Yes") / (P("Yes") + P("No")) as the first answer token of the
  self-evaluation prompt (paper eq. 7), from the top next-token log-probs.
- **perplexity**: h = P(y | q, T) ** (-1/n) of gold responses (eq. 4).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from itool_ray.calls import parse_partial
from itool_ray.data import (
    SELF_EVAL_NO,
    SELF_EVAL_YES,
    Sample,
    end_of_turn,
    render_prompt,
    render_self_eval_prompt,
)
from itool_ray.mcts.search import EvalRequest, ExpandRequest
from itool_ray.mcts.step import Step

CALL_STOPS = ("),", ")]")
CONTEXT_FULL = "context"
"""``Step.finish_reason`` of the one empty, terminal step given to a state whose prompt plus
``max_tokens`` does not fit the engine's context (``max_model_len``): no prompt vLLM would
refuse is sent. A single-turn response ends there (a wrong answer); a multi-turn turn ends
without calls, and the later turns, whose prompts are longer still, the same."""
SENTENCE_STOPS = (". ", "! ", "? ", "\n")
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


@dataclass(frozen=True)
class StepCut:
    """Where a step ends inside the generated text (offset relative to the step start)."""

    end: int | None  # None: no boundary yet
    terminal: bool


def find_step_end(prefix: str, text: str, finished: bool) -> StepCut:
    """Decide where the step that starts after ``prefix`` ends within ``text``.

    ``finished`` says the sequence ended (end of sequence): then, without an earlier
    boundary, the whole text is the last step.
    """
    base = len(prefix)
    full = prefix + text
    p = parse_partial(full)
    if p.is_call_list:
        for end in p.call_ends:
            if end > base:
                i = end
                while i < len(full) and full[i] in " \t\r\n":
                    i += 1
                if i < len(full) and full[i] == ",":
                    return StepCut(i + 1 - base, False)
                if i < len(full) and full[i] == "]":
                    return StepCut(i + 1 - base, True)
                if i < len(full):  # junk after a call: the list is broken, stop here
                    return StepCut(end - base, True)
                return StepCut(None, False) if not finished else StepCut(len(text), True)
        if p.closed or p.error is not None:
            end = p.end - base if p.closed and p.end is not None and p.end > base else len(text)
            return StepCut(end, True)
        return StepCut(len(text), True) if finished else StepCut(None, False)
    if p.is_call_list is False:
        start = 0
        while start < len(text) and text[start].isspace():
            start += 1
        m = _SENTENCE_END.search(text, start)
        if m is not None:
            end = m.end()
            rest = text[end:]
            return StepCut(end, finished and not rest.strip())
    return StepCut(len(text), True) if finished else StepCut(None, False)


class StepEngine:
    """The search's engine protocol on one vLLM policy (module docstring)."""

    def __init__(
        self, policy, *, temperature: float = 1.0, top_p: float = 1.0, max_rounds: int = 4
    ) -> None:
        self.policy = policy
        self.tokenizer = policy.tokenizer
        self.temperature = temperature
        self.top_p = top_p
        self.max_rounds = max_rounds
        self._prompt_cache: dict[tuple, list[int]] = {}
        self._yes = self._single_token(SELF_EVAL_YES)
        self._no = self._single_token(SELF_EVAL_NO)
        self._eval_k = min(policy.config.max_logprobs, len(self.tokenizer))

    # ---- prompts ---------------------------------------------------------------------
    def _single_token(self, word: str) -> int:
        ids = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        return ids[0]

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, tree_id: str, messages, tools) -> list[int]:
        """Token ids of the chat prompt of a tree's sample (cached per tree)."""
        key = (
            tree_id,
            tuple(tuple(sorted(m.items())) for m in messages),  # a tool message's name too
            tuple(t.get("name", "") for t in tools),  # functions revealed at a later turn
        )
        ids = self._prompt_cache.get(key)
        if ids is None:
            sample = Sample(id=tree_id, tools=tuple(tools), messages=tuple(messages), gold="")
            ids = self._prompt_cache[key] = self.encode(render_prompt(sample, self.tokenizer))
        return ids

    def forget(self, tree_id: str) -> None:
        for key in [k for k in self._prompt_cache if k[0] == tree_id]:
            del self._prompt_cache[key]

    # ---- expand ----------------------------------------------------------------------
    def expand(self, requests: Sequence[ExpandRequest]) -> list[list[Step] | None]:
        prompts = []
        for r in requests:
            prefix_ids = list(r.prefix_ids) if r.prefix_ids is not None else self.encode(r.prefix)
            prompts.append(self.prompt_ids(r.tree_id, r.messages, r.tools) + prefix_ids)
        # one generate call per distinct (k, max_tokens, unit): n=k candidates per prompt;
        # "message" steps (a multi-turn environment's) run to the end of the message
        results: list[list[Step] | None] = [None] * len(requests)
        groups: dict[tuple[int, int, str], list[int]] = {}
        context = self.policy.config.max_model_len
        for i, r in enumerate(requests):
            if len(prompts[i]) + r.max_tokens > context:
                # vLLM would fail the whole batch on it (and again after every restart): the
                # state cannot go on, like an evaluation prompt that does not fit
                results[i] = [Step("", (), 0.0, terminal=True, finish_reason=CONTEXT_FULL)]
                continue
            groups.setdefault((r.k, r.max_tokens, getattr(r, "unit", "call")), []).append(i)
        for (k, max_tokens, unit), idx in groups.items():
            stops = CALL_STOPS + SENTENCE_STOPS if unit == "call" else ()
            outs = self.policy.generate(
                [prompts[i] for i in idx],
                n=k,
                max_tokens=max_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                stop=stops,
                seeds=[requests[i].seed for i in idx],
            )
            pending = []  # (request index, candidate slot, tokens, logprobs)
            for i, comps in zip(idx, outs, strict=True):
                results[i] = [None] * len(comps)  # type: ignore[list-item]
                for j, c in enumerate(comps):
                    pending.append(
                        (i, j, list(c.token_ids), list(c.logprobs), c.finish_reason, c.stop_reason)
                    )
            self._finish(requests, prompts, pending, results, stops, max_tokens, unit)
        return results

    def _finish(self, requests, prompts, pending, results, stops, max_tokens, unit="call") -> None:
        """Cut each candidate at its step boundary; continue those that have none yet.

        A step is terminal when the response ends with it (closed call list, end of
        sequence). A step that reaches ``max_tokens`` without a boundary is kept whole and is
        *not* terminal: the response goes on in the next step (the tree ends paths at its own
        ``max_depth`` / ``max_tokens``).
        """
        decode = self._decode
        for round_ in range(self.max_rounds + 1):
            more = []
            for i, j, toks, lps, finish, stop_reason in pending:
                r = requests[i]
                text = decode(toks)
                eos = finish == "stop" and stop_reason is None
                capped = finish == "length" or len(toks) >= max_tokens or round_ == self.max_rounds
                if unit == "message":  # the whole message is the step
                    cut = StepCut(len(text), True) if eos or capped else StepCut(None, False)
                else:
                    try:
                        cut = find_step_end(r.prefix, text, eos)
                    except Exception:  # any output is a (wrong) terminal step, not a crash
                        cut = StepCut(len(text), True)
                if cut.end is None and not capped:
                    more.append((i, j, toks, lps))
                    continue
                if cut.end is None:
                    n, terminal, reason = len(toks), False, "length"
                else:
                    n = self._tokens_covering(toks, cut.end)
                    terminal, reason = cut.terminal, (finish if n == len(toks) else "step")
                step_toks = toks[:n]
                results[i][j] = Step(
                    text=decode(step_toks),
                    token_ids=tuple(step_toks),
                    logprob=float(sum(lps[:n])),
                    terminal=terminal,
                    finish_reason=reason or "",
                )
            if not more:
                return
            outs = self.policy.generate(
                [prompts[i] + toks for i, _, toks, _ in more],
                n=1,
                max_tokens=[max(1, max_tokens - len(toks)) for _, _, toks, _ in more],
                temperature=self.temperature,
                top_p=self.top_p,
                stop=stops,
                seeds=[requests[i].seed + 7919 * (j + 1) + round_ for i, j, _, _ in more],
            )
            pending = [
                (
                    i,
                    j,
                    toks + list(c.token_ids),
                    lps + list(c.logprobs),
                    c.finish_reason,
                    c.stop_reason,
                )
                for (i, j, toks, lps), (c,) in zip(more, outs, strict=True)
            ]

    def _decode(self, toks: list[int]) -> str:
        """Step text: special tokens (end of turn) are kept in the ids, not in the text."""
        return self.tokenizer.decode(toks, skip_special_tokens=True)

    def _tokens_covering(self, toks: list[int], chars: int) -> int:
        """Fewest leading tokens whose decoded text reaches ``chars`` characters."""
        lo, hi = 1, len(toks)
        while lo < hi:
            mid = (lo + hi) // 2
            if len(self._decode(toks[:mid])) >= chars:
                hi = mid
            else:
                lo = mid + 1
        return hi

    # ---- evaluate --------------------------------------------------------------------
    def evaluate(self, requests: Sequence[EvalRequest]) -> list[float]:
        """Self-evaluation confidence per request (module docstring).

        Read from the top ``EngineConfig.max_logprobs`` next-token log-probs of one decode
        step (prompt log-probs are broken with LoRA in vLLM 0.32). A verdict token outside
        them gets the smallest one returned as an upper bound; when neither is there,
        C = 0.5 (no opinion), as for a prompt longer than the engine's context, which is never
        sent (vLLM would reject it and fail the whole batch).
        """
        prompts = []
        for r in requests:
            sample = Sample(id=r.tree_id, tools=tuple(r.tools), messages=tuple(r.messages), gold="")
            prompts.append(self.encode(render_self_eval_prompt(sample, self.tokenizer, r.response)))
        limit = self.policy.config.max_model_len - 1  # room for the one decoded verdict token
        fits = [len(p) <= limit for p in prompts]
        return _where_fits(fits, 0.5, lambda idx: self._confidences([prompts[i] for i in idx]))

    def _confidences(self, prompts: list[list[int]]) -> list[float]:
        out = []
        for top in self.policy.next_token_logprobs(prompts, self._eval_k):
            floor = min(top.values()) if top else 0.0
            ly, ln = top.get(self._yes), top.get(self._no)
            if ly is None and ln is None:
                out.append(0.5)
                continue
            ly, ln = (floor if ly is None else ly), (floor if ln is None else ln)
            m = max(ly, ln)
            out.append(math.exp(ly - m) / (math.exp(ly - m) + math.exp(ln - m)))
        return out

    # ---- perplexity ------------------------------------------------------------------
    def perplexity(self, samples: Sequence[Sample]) -> list[float]:
        """h of each sample's gold response under the current policy (eq. 4), batched."""
        prompts = [self.encode(render_prompt(s, self.tokenizer)) for s in samples]
        eot = end_of_turn(self.tokenizer)  # as the SFT rows and the trainer's perplexity end
        responses = [self.encode(s.gold + eot) for s in samples]
        # a sample longer than the context is not scored (vLLM would fail the batch): inf,
        # which select_hard counts as hardest
        context = self.policy.config.max_model_len
        fits = [len(p) + len(r) <= context for p, r in zip(prompts, responses, strict=True)]
        return _where_fits(
            fits,
            math.inf,
            lambda idx: self.policy.perplexity(
                [prompts[i] for i in idx], [responses[i] for i in idx]
            ),
        )


def _where_fits(fits: Sequence[bool], default: float, run) -> list[float]:
    """``run(indices)`` on the items that fit the context (one value each, in order), the
    others ``default``: a prompt vLLM would refuse is never sent (it fails the whole batch)."""
    idx = [i for i, ok in enumerate(fits) if ok]
    out = [default] * len(fits)
    for i, v in zip(idx, run(idx) if idx else [], strict=True):
        out[i] = v
    return out
