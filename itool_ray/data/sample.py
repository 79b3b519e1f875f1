"""The one canonical training/evaluation record every loader produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]
"""A chat turn: ``{"role": "user" | "assistant" | "tool" | "system", "content": str}``."""

Tool = dict[str, Any]
"""A tool in ToolACE / BFCL JSON shape: ``{"name", "description", "parameters": {"type": "dict",
"properties": {...}, "required": [...]}}``."""

GroundTruth = list[dict[str, dict[str, list[Any]]]]
"""Allowed answers in BFCL ``possible_answer`` shape: ``[{"fname": {"arg": [allowed, ...]}}]``;
``""`` among the allowed values marks an optional argument."""


@dataclass(frozen=True)
class Sample:
    """One (tools T, conversation q, gold response y) record.

    Attributes:
        id: unique id within its source (e.g. ``"toolace-17-t3"``, ``"simple_12"``).
        tools: candidate tools offered to the model.
        messages: the conversation before the target assistant turn. The system prompt
            listing the tools is rendered from ``tools``; a source's own system turns (BFCL
            live questions, API-Bank's "The current year is 2023.") may lead the tuple and are
            appended to that prompt by ``itool_ray.data.build_messages``.
        gold: the gold assistant turn as text: a ToolACE call list ``[f(a=1)]`` or plain text.
        ground_truth: allowed values per call (BFCL shape) when the source gives more than one
            acceptable answer; ``None`` means "exactly the calls in ``gold``".
        source: loader name (``toolace``, ``seal-tools``, ``api-bank``, ``bfcl``, ``synth``).
        meta: free-form extras (category, difficulty label, original line number...).
    """

    id: str
    tools: tuple[Tool, ...]
    messages: tuple[Message, ...]
    gold: str
    ground_truth: GroundTruth | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tools": list(self.tools),
            "messages": list(self.messages),
            "gold": self.gold,
            "ground_truth": self.ground_truth,
            "source": self.source,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        return cls(
            id=str(d["id"]),
            tools=tuple(d["tools"]),
            messages=tuple(d["messages"]),
            gold=d["gold"],
            ground_truth=d.get("ground_truth"),
            source=d.get("source", ""),
            meta=dict(d.get("meta") or {}),
        )
