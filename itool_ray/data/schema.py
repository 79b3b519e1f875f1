"""Tool schemas in the ToolACE / BFCL shape: conversion from source type names and value checks.

The canonical tool is ``{"name", "description", "parameters": {"type": "dict", "properties":
{param: {"type", "description", ...}}, "required": [...]}}``. Type names follow BFCL
(``string``, ``integer``, ``float``, ``boolean``, ``array``, ``dict``, ``tuple``, ``any``) plus
the JSON-schema spellings ToolACE uses (``number``, ``object``); :func:`value_matches` accepts
both.
"""

from __future__ import annotations

import re
from typing import Any

from itool_ray.data.sample import Tool

# Python-ish type names used by Seal-Tools and API-Bank -> BFCL type names.
SOURCE_TYPE_MAP: dict[str, str] = {
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "float",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "dict": "dict",
    "object": "dict",
}


def convert_type(source_type: Any) -> dict[str, Any]:
    """``"int"`` -> ``{"type": "integer"}``; ``"list(str)"`` -> array of strings; unknown -> any."""
    t = str(source_type).strip()
    m = re.fullmatch(r"(?:list|List)[\[(]\s*(\w+)\s*[\])]", t)
    if m:
        return {"type": "array", "items": {"type": SOURCE_TYPE_MAP.get(m.group(1), "any")}}
    return {"type": SOURCE_TYPE_MAP.get(t.lower(), "any")}


def make_tool(
    name: str,
    description: str,
    params: dict[str, dict[str, Any]],
    required: list[str] | tuple[str, ...] = (),
) -> Tool:
    """Build a canonical tool from ``{param: {"type": <source type>, "description": ...}}``."""
    properties: dict[str, Any] = {}
    for pname, spec in params.items():
        spec = spec if isinstance(spec, dict) else {}
        prop = convert_type(spec.get("type", "any"))
        prop["description"] = str(spec.get("description", ""))
        properties[str(pname)] = prop
    return {
        "name": name,
        "description": description,
        "parameters": {
            "type": "dict",
            "properties": properties,
            "required": [r for r in required if r in properties],
        },
    }


def tool_properties(tool: Tool) -> dict[str, Any]:
    params = tool.get("parameters") or {}
    return params.get("properties") or {}


def tool_required(tool: Tool) -> list[str]:
    params = tool.get("parameters") or {}
    return list(params.get("required") or [])


def value_matches(value: Any, schema: dict[str, Any]) -> str | None:
    """``None`` when ``value`` fits ``schema`` (type, enum, array items, dict properties),
    else a short reason. Integers are accepted for ``number``/``float``; bools never count as
    numbers."""
    t = str(schema.get("type", "any")).lower()
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        return f"{value!r} not in enum {enum!r}"
    if t in ("string", "str"):
        ok = isinstance(value, str)
    elif t in ("integer", "int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t in ("number", "float"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif t in ("boolean", "bool"):
        ok = isinstance(value, bool)
    elif t in ("array", "list", "tuple"):
        if not isinstance(value, list | tuple):
            return f"expected {t}, got {type(value).__name__}"
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                why = value_matches(item, items)
                if why:
                    return f"item {i}: {why}"
        return None
    elif t in ("dict", "object"):
        if not isinstance(value, dict):
            return f"expected {t}, got {type(value).__name__}"
        props = schema.get("properties")
        if isinstance(props, dict) and props:
            for key, sub in value.items():
                if key not in props:
                    return f"unknown key {key!r}"
                why = value_matches(sub, props[key])
                if why:
                    return f"key {key!r}: {why}"
            missing = [k for k in schema.get("required") or [] if k not in value]
            if missing:
                return f"missing required key(s) {missing}"
        return None
    else:
        return None  # "any" or a type name we do not know: accept
    return None if ok else f"expected {t}, got {type(value).__name__}"


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def param_words(name: str) -> str:
    """``"include_hourly"`` -> ``"include hourly"``; ``"postId"`` -> ``"post id"``."""
    return _CAMEL.sub(" ", name).replace("_", " ").replace("-", " ").lower().strip()
