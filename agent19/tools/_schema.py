"""Compact JSON schemas for tools/list: what a client needs to call a tool, nothing it pays for twice.

pydantic's schemas are written for documentation: every property carries a generated ``title``
("Pg Version" for ``pg_version``), every optional value is ``anyOf [X, null]`` with ``default: null``,
and nested models carry their Python docstrings. A model client reads all of it on every
conversation. :func:`compact` keeps the types, enums and defaults that mean something and a brief text
per parameter, each said once (an enum's values or a default say the type; ``anyOf`` of plain types is one
type list; a flag's ``default: false`` goes without saying), and drops the rest, numeric bounds included;
the server still validates every call with the full model (bounds too, naming the one it refuses), so a
client sending ``null`` for an optional argument is accepted as before.

What a parameter's brief is (in this order):

* the tool's declared one (``@tool(briefs={"name": "…"})``; ``""``: its name and type say enough; a dict:
  the schema to list instead, e.g. for a parameter whose structure another tool's listing shows);
* nothing for a parameter that means the same in every tool (:data:`SHARED`): the server's instructions
  describe it once;
* else the first clause of its description (up to ``;``, ``(`` or a sentence end), at most
  :data:`PARAMETER_TEXT` characters.

The whole description stays the CLI's ``--help`` and is in the resource ``agent19://tools/{name}``.
"""

from __future__ import annotations

import json
import re
from typing import Any

_DROP_EMPTY_DEFAULTS = (None, [], {})
PARAMETER_TEXT = 70
"""Longest parameter brief in tools/list; the whole text is in agent19://tools/{name} and ``--help``."""
SHARED = {
    "detail": 'every tool: "full" returns the whole result, not a summary within the response budget',
    "pg_version": "PostgreSQL major version to assume without a database (e.g. 15); with one, the server's",
    "parameters": "values for $1, $2 ... (bound server-side as text; null is SQL NULL)",
    "acknowledge": "lint rule codes of lock warnings accepted for this statement (AGENT19_REQUIRE_LOCK_ACK)",
    "config": "agent19.toml or pyproject.toml to read (default: the nearest one)",
    "table": 'name or schema.name, raw as the catalog stores it (My Schema.Order) or as SQL ("My Schema"."Order")',
}
"""Parameters described once, in the server's instructions (:func:`shared_parameters`), not in every tool."""
_FIRST_CLAUSE = re.compile(r";\s|\s\(|(?<=[.!?])\s|: e\.g\.|, e\.g\.")
_KEYWORDS = frozenset({
    "type", "properties", "required", "items", "prefixItems", "enum", "const", "default", "description", "anyOf",
    "oneOf", "allOf", "$ref", "$defs", "pattern", "format", "additionalProperties",
})
"""JSON Schema keywords a client uses; agent19's own markers (``user_sql``, ``cli``) stay on the server. Numeric and
length bounds (``minimum``, ``maxLength``…) are the server's to check: a call out of bounds is refused with the bound
named (``max_rows: Input should be less than or equal to 10000``), and ``agent19://tools/{name}`` lists them."""


def shared_parameters() -> str:
    """The text the server's instructions carry for :data:`SHARED`."""
    return "Parameters that mean the same wherever they appear (tools/list does not repeat this):\n" + "\n".join(
        f"- {name}: {text}" for name, text in SHARED.items())


def compact(schema: dict[str, Any], briefs: dict[str, str | dict[str, Any]] | None = None,
            omit: tuple[str, ...] = ()) -> dict[str, Any]:
    """A smaller schema accepting the same calls (the model validates them on the server); ``briefs``: the
    tool's declared parameter texts (``ToolSpec.briefs``); ``omit``: parameters every tool has, which the
    server's instructions describe instead (the listing leaves ``additionalProperties`` open for them)."""
    out = _node(schema, top=True)
    for name in omit:
        out.get("properties", {}).pop(name, None)
    for name, sub in list(out.get("$defs", {}).items()):
        sub.pop("description", None)  # a model's docstring: the field that uses it is described already
        out["$defs"][name] = sub
    properties = out.get("properties", {})
    for name, prop in properties.items():
        declared = (briefs or {}).get(name)
        if isinstance(declared, dict):
            properties[name] = declared
            continue
        text = _brief_of(name, prop.pop("description", None), briefs or {})
        if text:
            prop["description"] = text
    _drop_unused_defs(out)
    return out


def _drop_unused_defs(schema: dict[str, Any]) -> None:
    defs = schema.get("$defs")
    if not defs:
        return
    used: set[str] = set()
    pending = [{k: v for k, v in schema.items() if k != "$defs"}]
    while pending:
        text = json.dumps(pending.pop())
        for name in set(re.findall(r'"#/\$defs/([^"]+)"', text)) - used:
            used.add(name)
            pending.append(defs.get(name, {}))
    schema["$defs"] = {name: sub for name, sub in defs.items() if name in used}
    if not schema["$defs"]:
        del schema["$defs"]


def _brief_of(name: str, description: str | None, briefs: dict[str, str | dict[str, Any]]) -> str:
    declared = briefs.get(name)
    if isinstance(declared, str):
        return declared
    if name in SHARED:
        return ""
    return brief(description) if isinstance(description, str) else ""


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
        if key == "default" and value is False and node.get("type") == "boolean":
            continue  # a flag left out is off: what every caller assumes
        if key == "additionalProperties" and value is True:
            continue
        if key == "type" and ("enum" in node or "const" in node or _default_says(node)):
            continue  # the values say it, or the default does (true, 200, "public", 1.0)
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
    return _types_joined(out)


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _default_says(node: dict[str, Any]) -> bool:
    """A default of exactly the parameter's type (not 5 for a number: a model would read an integer)."""
    default = node.get("default")
    return "default" in node and default is not False and _JSON_TYPES.get(type(default)) == node.get("type")


_TYPE_KEYWORDS = {"array": {"items", "prefixItems"}, "object": {"properties", "required", "additionalProperties"},
                  "string": {"pattern", "format"}}
"""Keywords that apply to values of one type only: branches of different types can share one schema."""


def _types_joined(node: dict[str, Any]) -> dict[str, Any]:
    """``{anyOf: [{type: array, items: …}, {type: string}]}`` → ``{type: [array, string], items: …}``: the same
    values, written the short way JSON Schema has for a union of types (a parameter bound as text or number, a
    list or one name, a nullable one) — when each branch's other keywords apply to its own type only."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or "type" in node:
        return node
    types = [b.get("type") if isinstance(b, dict) else None for b in branches]
    if not all(isinstance(t, str) for t in types) or len(set(types)) != len(types):
        return node
    merged: dict[str, Any] = {}
    for branch, kind in zip(branches, types, strict=True):
        rest = {k: v for k, v in branch.items() if k != "type"}
        if set(rest) - _TYPE_KEYWORDS.get(kind, set()) or set(rest) & set(merged):
            return node
        merged |= rest
    return {("type" if k == "anyOf" else k): (types if k == "anyOf" else v) for k, v in node.items()} | merged


def _without_null_branch(node: dict[str, Any]) -> dict[str, Any]:
    """``{anyOf: [X, {type: null}], default: null}`` → ``{…X}``: omitting it is the same as null."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or "default" not in node or node["default"] is not None:
        # with a default other than null, null is a value of its own (e.g. "null: never wait"); without a default
        # (a list's items: $1 … values, where null is SQL NULL; a required argument), null cannot be left out
        return node
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) == len(branches):
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if len(kept) == 1 and isinstance(kept[0], dict) and not (set(kept[0]) & set(rest)):
        return {**kept[0], **rest}
    return {**rest, "anyOf": kept}


def brief(text: str, limit: int = PARAMETER_TEXT) -> str:
    """The first clause of ``text`` (up to ``;``, `` (``, a sentence end or an example), within ``limit``
    characters: a longer one is cut at a word and ends with an ellipsis."""
    text = " ".join(text.split())
    first = _FIRST_CLAUSE.split(text, maxsplit=1)[0].rstrip(".:, ")
    if len(first) <= limit:
        return first
    return first[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
