"""Compact JSON schemas for tools/list: what a client needs to call a tool, nothing it pays for twice.

pydantic's schemas are written for documentation: every property carries a generated ``title``
("Pg Version" for ``pg_version``), every optional value is ``anyOf [X, null]`` with ``default: null``,
and nested models carry their Python docstrings. A model client reads all of it on every
conversation. :func:`compact` keeps the types, constraints, enums, defaults that mean something and
the field descriptions, and drops the rest; the server still validates every call with the full
model, so a client sending ``null`` for an optional argument is accepted as before.
"""

from __future__ import annotations

import re
from typing import Any

_DROP_EMPTY_DEFAULTS = (None, [], {})
PARAMETER_TEXT = 160
"""Longest parameter description in tools/list; the whole text is in agent19://tools/{name} and ``--help``."""
_CLAUSE_END = re.compile(r"(?<=[.;])\s+")
_KEYWORDS = frozenset({
    "type", "properties", "required", "items", "prefixItems", "enum", "const", "default", "description", "anyOf",
    "oneOf", "allOf", "$ref", "$defs", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
    "maxLength", "minItems", "maxItems", "pattern", "format", "additionalProperties",
})
"""JSON Schema keywords a client uses; agent19's own markers (``user_sql``, ``cli``) stay on the server."""


def compact(schema: dict[str, Any]) -> dict[str, Any]:
    """A smaller schema accepting the same calls (the model validates them on the server)."""
    out = _node(schema, top=True)
    for name, sub in list(out.get("$defs", {}).items()):
        sub.pop("description", None)  # a model's docstring: the field that uses it is described already
        out["$defs"][name] = sub
    return out


def _node(node: Any, top: bool = False) -> Any:
    if isinstance(node, list):
        return [_node(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = _without_null_branch(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEYWORDS:
            continue
        if key == "default" and any(value == empty and type(value) is type(empty) for empty in _DROP_EMPTY_DEFAULTS):
            continue
        if key == "additionalProperties" and value is True:
            continue
        if key == "description" and (top or not isinstance(value, str)):
            if not top:
                out[key] = value
            continue
        if key == "description":
            out[key] = brief(value)
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: _node(sub) for name, sub in value.items()}
        else:
            out[key] = _node(value)
    return out


def _without_null_branch(node: dict[str, Any]) -> dict[str, Any]:
    """``{anyOf: [X, {type: null}], default: null}`` → ``{…X}``: omitting it is the same as null."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or node.get("default") is not None:
        return node  # with a default other than null, null is a value of its own (e.g. "null: never wait")
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) == len(branches):
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if len(kept) == 1 and isinstance(kept[0], dict) and not (set(kept[0]) & set(rest)):
        return {**kept[0], **rest}
    return {**rest, "anyOf": kept}


def brief(text: str, limit: int = PARAMETER_TEXT) -> str:
    """``text`` cut to whole clauses (ending in ``.`` or ``;``) within ``limit`` characters; a first clause
    longer than that is cut at a word and ends with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    kept = ""
    for clause in _CLAUSE_END.split(text):
        candidate = f"{kept} {clause}".strip()
        if len(candidate) > limit:
            break
        kept = candidate
    if len(kept) >= limit // 2:
        return kept.rstrip(";")
    return text[: limit - 1].rsplit(" ", 1)[0] + "…"
