"""ToolACE-style synthetic data, offline and deterministic (the demo's default data).

ToolACE builds an API pool, has agents write dialogues around sampled tools, and keeps only
samples passing a rule layer and a model layer. Here the pool is the built-in catalogue
(:mod:`itool_ray.data.synth_catalog`) or any list of tools (e.g. the Seal-Tools pool); queries
are written from templates whose argument values occur literally in the text; the gold is
the call list in canonical syntax; the rule layer (:func:`itool_ray.data.verify.verify_sample`)
checks every sample, and failures are dropped and counted. No model layer.

Knobs (:class:`SynthConfig`): candidate tools per sample, calls per sample and the mix of
modes (``single``; ``parallel`` = one tool several times; ``multiple`` = different tools once
each; ``parallel_multiple`` = both), the fraction of samples needing a nested (list / dict)
argument, the fraction of no-tool samples (the asked capability is not among the
candidates; gold = a plain-text refusal), and how often optional parameters are used.
Same config and pool -> identical samples (one ``random.Random(seed)``, no global state).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from itool_ray.calls import Call, parse_calls, render_calls
from itool_ray.data.sample import Sample, Tool
from itool_ray.data.synth_catalog import generated_pool
from itool_ray.data.synth_pool import ToolSpec, spec_from_tool
from itool_ray.data.verify import verify_sample

MODES: tuple[str, ...] = ("single", "parallel", "multiple", "parallel_multiple")
_MIN_CALLS = {"single": 1, "parallel": 2, "multiple": 2, "parallel_multiple": 3}
_MIN_TOOLS = {"single": 1, "parallel": 1, "multiple": 2, "parallel_multiple": 2}
DEFAULT_MODE_WEIGHTS: dict[str, float] = {
    "single": 0.4,
    "parallel": 0.2,
    "multiple": 0.25,
    "parallel_multiple": 0.15,
}

_OPENERS = (
    ("", "."),
    ("Please ", "."),
    ("Could you ", "?"),
    ("I need you to ", "."),
    ("Can you ", "?"),
    ("I'd like you to ", "."),
)
_THEN = ("Also, ", "Then ", "After that, ", "In addition, ", "And ")
_REFUSALS = (
    "I'm sorry, but none of the available functions can be used to {clause}.",
    "None of the provided functions can {clause}, so I cannot make a call for this request.",
    "The available functions do not support this request: I cannot {clause} with them.",
)


@dataclass(frozen=True)
class SynthConfig:
    """Synthesizer settings, checked when built.

    Attributes:
        num_samples: samples to return (after verification).
        seed: the only source of randomness.
        min_candidates / max_candidates: candidate tools per sample (uniform in the range;
            a sample never has fewer candidates than distinct called tools).
        max_calls: most calls in one gold response.
        mode_weights: relative weight of each call mode among tool-calling samples.
        no_tool_fraction: probability that a sample needs no call.
        nested_fraction: probability that a tool-calling sample has a list / dict argument.
        optional_prob: probability of using each optional parameter.
        same_domain_distractors: probability that a distractor comes from a called tool's
            domain (harder negatives), when the pool has domains.
        verify: run the rule layer (off only to measure its cost).
        max_attempts: give up after this many attempts (default ``2 * num_samples + 100``).
    """

    num_samples: int = 1000
    seed: int = 0
    min_candidates: int = 2
    max_candidates: int = 5
    max_calls: int = 4
    mode_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MODE_WEIGHTS))
    no_tool_fraction: float = 0.1
    nested_fraction: float = 0.2
    optional_prob: float = 0.4
    same_domain_distractors: float = 0.5
    verify: bool = True
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.num_samples < 0:
            raise ValueError("num_samples must be >= 0")
        if not 1 <= self.min_candidates <= self.max_candidates:
            raise ValueError("need 1 <= min_candidates <= max_candidates")
        if self.max_calls < 1:
            raise ValueError("max_calls must be >= 1")
        for name in (
            "no_tool_fraction",
            "nested_fraction",
            "optional_prob",
            "same_domain_distractors",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        unknown = set(self.mode_weights) - set(MODES)
        if unknown:
            raise ValueError(f"unknown modes {sorted(unknown)}; known: {MODES}")
        if any(w < 0 for w in self.mode_weights.values()):
            raise ValueError("mode weights must be >= 0")
        if self.no_tool_fraction < 1 and sum(self.mode_weights.values()) <= 0:
            raise ValueError("at least one call mode needs a positive weight")
        for mode, w in self.mode_weights.items():
            if w > 0 and self.max_calls < _MIN_CALLS[mode]:
                raise ValueError(f"mode {mode!r} needs max_calls >= {_MIN_CALLS[mode]}")
            if w > 0 and self.min_candidates < _MIN_TOOLS[mode]:
                raise ValueError(f"mode {mode!r} needs min_candidates >= {_MIN_TOOLS[mode]}")

    @property
    def attempts_limit(self) -> int:
        return self.max_attempts if self.max_attempts is not None else 2 * self.num_samples + 100


@dataclass(frozen=True)
class SynthReport:
    attempted: int
    accepted: int
    dropped: int
    drop_reasons: dict[str, int]
    modes: dict[str, int]

    def summary(self) -> str:
        return (
            f"synth: {self.accepted} accepted of {self.attempted} attempted, "
            f"{self.dropped} dropped {self.drop_reasons or ''}; modes {self.modes}"
        )


@dataclass(frozen=True)
class SynthResult:
    samples: tuple[Sample, ...]
    report: SynthReport

    def __iter__(self):
        return iter(self.samples)

    def __len__(self) -> int:
        return len(self.samples)


def _rule(message: str) -> str:
    for key in (
        "not a valid call list",
        "not among the candidates",
        "required parameter",
        "unknown parameter",
        "not grounded",
        "no-tool",
    ):
        if key in message:
            return key.replace(" ", "_")
    return "type_mismatch"


class _Writer:
    """Writes one sample per call to :meth:`sample`, from one seeded generator."""

    def __init__(self, config: SynthConfig, specs: Sequence[ToolSpec]) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.specs = list(specs)
        self.nested = [s for s in self.specs if s.nested]
        self.by_domain: dict[str, list[ToolSpec]] = {}
        for s in self.specs:
            if s.domain:
                self.by_domain.setdefault(s.domain, []).append(s)
        self.modes = [m for m in MODES if config.mode_weights.get(m, 0) > 0]
        self.weights = [config.mode_weights[m] for m in self.modes]

    def _args(self, spec: ToolSpec, force_nested: bool) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for slot in spec.slots:
            if (
                slot.required
                or (force_nested and slot.nested)
                or self.rng.random() < self.cfg.optional_prob
            ):
                args[slot.name] = slot.sample(self.rng, args)
        return args

    def _distinct_args(
        self, spec: ToolSpec, taken: list[dict[str, Any]], force_nested: bool
    ) -> dict[str, Any]:
        args = self._args(spec, force_nested)
        for _ in range(8):
            if args not in taken:
                break
            args = self._args(spec, force_nested)
        return args

    def _distractors(self, chosen: list[ToolSpec], n: int, banned: set[str]) -> list[ToolSpec]:
        rng, out = self.rng, []
        taken = {s.name for s in chosen} | banned  # all names of the pool
        room = len(self.specs) - len(taken)
        while len(out) < n and room > 0:
            near = [
                s for c in chosen for s in self.by_domain.get(c.domain, []) if s.name not in taken
            ]
            if near and rng.random() < self.cfg.same_domain_distractors:
                pick = rng.choice(near)
            else:  # rejection sampling: the taken set is small next to the pool
                pick = self.specs[rng.randrange(len(self.specs))]
                while pick.name in taken:
                    pick = self.specs[rng.randrange(len(self.specs))]
            taken.add(pick.name)
            out.append(pick)
            room -= 1
        return out

    def _query(self, clauses: list[str]) -> str:
        opener, end = self.rng.choice(_OPENERS)
        parts = [opener + clauses[0] + end]
        links = self.rng.sample(_THEN, min(len(_THEN), len(clauses) - 1))
        parts += [links[i % len(links)] + c + "." for i, c in enumerate(clauses[1:])]
        return " ".join(p[0].upper() + p[1:] for p in parts)

    def _plan(self, mode: str, n_cand: int, nested: bool) -> list[ToolSpec]:
        """The called tool of each call, in call order."""
        rng, max_calls = self.rng, self.cfg.max_calls
        first = rng.choice(self.nested if nested and self.nested else self.specs)
        if mode == "single":
            return [first]
        if mode == "parallel":
            return [first] * rng.randint(2, max_calls)
        k = rng.randint(2, min(max_calls - (mode == "parallel_multiple"), n_cand))
        tools, names = [first], {first.name}
        while len(tools) < k:  # rejection sampling: k is small next to the pool
            spec = self.specs[rng.randrange(len(self.specs))]
            if spec.name not in names:
                tools.append(spec)
                names.add(spec.name)
        if mode == "multiple":
            return tools
        extra = [rng.choice(tools) for _ in range(rng.randint(1, max_calls - k))]
        return [t for t in tools for _ in range(1 + sum(e is t for e in extra))]

    def sample(self, index: int) -> Sample:
        cfg, rng = self.cfg, self.rng
        n_cand = rng.randint(cfg.min_candidates, cfg.max_candidates)
        sid = f"synth-{cfg.seed}-{index:06d}"
        if rng.random() < cfg.no_tool_fraction:
            asked = rng.choice(self.specs)
            banned = {s.name for s in self.by_domain.get(asked.domain, [])} | {asked.name}
            if len(self.specs) - len(banned) < n_cand:
                banned = {asked.name}
            cands = self._distractors([], n_cand, banned)
            clause = asked.clause(self._args(asked, False))
            return Sample(
                sid,
                tuple(s.tool for s in cands),
                ({"role": "user", "content": self._query([clause])},),
                rng.choice(_REFUSALS).format(clause=clause),
                source="synth",
                meta={"mode": "no_tool", "n_calls": 0, "asked_tool": asked.name},
            )
        mode = rng.choices(self.modes, self.weights)[0]
        nested = rng.random() < cfg.nested_fraction
        plan = self._plan(mode, n_cand, nested)
        calls: list[Call] = []
        for i, spec in enumerate(plan):
            taken = [c.arguments for c in calls if c.name == spec.name]
            calls.append(Call(spec.name, self._distinct_args(spec, taken, nested and i == 0)))
        called = list({s.name: s for s in plan}.values())
        cands = called + self._distractors(called, n_cand - len(called), set())
        rng.shuffle(cands)
        by_name = {s.name: s for s in called}
        query = self._query([by_name[c.name].clause(c.arguments) for c in calls])
        return Sample(
            sid,
            tuple(s.tool for s in cands),
            ({"role": "user", "content": query},),
            render_calls(calls),
            source="synth",
            meta={"mode": mode, "n_calls": len(calls), "nested": nested},
        )


def check_synth_sample(sample: Sample) -> list[str]:
    """The rule layer for a synthesized sample: :func:`verify_sample`, plus for a no-tool
    sample that the gold is plain text and the asked tool is not a candidate."""
    if sample.meta.get("mode") == "no_tool":
        problems = []
        if parse_calls(sample.gold) is not None:
            problems.append("no-tool sample: gold is a call list")
        if any(t.get("name") == sample.meta.get("asked_tool") for t in sample.tools):
            problems.append("no-tool sample: the asked tool is among the candidates")
        return problems
    return verify_sample(sample)


def _specs(pool: Sequence[Tool] | Sequence[ToolSpec] | None) -> list[ToolSpec]:
    if pool is None:
        return generated_pool()
    specs = [p if isinstance(p, ToolSpec) else spec_from_tool(p) for p in pool]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("the pool has duplicate tool names")
    return specs


def synthesize(
    config: SynthConfig | None = None,
    *,
    pool: Sequence[Tool] | Sequence[ToolSpec] | None = None,
    **overrides: Any,
) -> SynthResult:
    """Generate ``config.num_samples`` verified samples (``overrides`` replace config fields,
    e.g. ``synthesize(num_samples=100, seed=3)``); ``pool`` defaults to the built-in one."""
    config = config or SynthConfig()
    if overrides:
        known = {f.name for f in fields(SynthConfig)}
        bad = set(overrides) - known
        if bad:
            raise TypeError(f"unknown SynthConfig fields {sorted(bad)}")
        config = replace(config, **overrides)
    specs = _specs(pool)
    if len(specs) <= config.max_candidates:
        raise ValueError(f"the pool has {len(specs)} tools; max_candidates must be smaller")
    writer = _Writer(config, specs)
    samples: list[Sample] = []
    reasons: Counter[str] = Counter()
    attempted = 0
    while len(samples) < config.num_samples and attempted < config.attempts_limit:
        sample = writer.sample(len(samples))
        attempted += 1
        if config.verify:
            problems = check_synth_sample(sample)
            if problems:
                reasons[_rule(problems[0])] += 1
                continue
        samples.append(sample)
    modes = Counter(s.meta["mode"] for s in samples)
    report = SynthReport(
        attempted,
        len(samples),
        attempted - len(samples),
        dict(reasons),
        dict(sorted(modes.items())),
    )
    return SynthResult(tuple(samples), report)
