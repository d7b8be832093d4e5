"""Tool results sized for a model: the verdicts, findings, numbers and SQL within a budget; the rest as resources.

An MCP client pays for every character a tool returns. By default (``detail: "summary"``) a result keeps
to :data:`RESPONSE_BUDGET` characters, text and structured content together:

* fields a result marks as artifacts (``Field(json_schema_extra={"artifact": True})``, in a dataclass the same
  in its field's metadata: a runbook's Markdown, EXPLAIN's raw JSON) are left out and offered as resources;
* what is still too long is shortened — long lists keep their first items, long strings their start —
  and ``truncated`` says what was cut and where the whole result is;
* the whole result stays readable as the resource ``agent19://results/{id}/full`` (kept in memory for the
  last :data:`KEPT_RESULTS` calls of this server) and the same call with ``detail: "full"`` returns it whole.

Nothing here knows MCP: :func:`shape` returns the pieces; ``server.py`` turns them into content and links.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json

from agent19 import records
from agent19.json_sizes import Sizes, json_size

RESPONSE_BUDGET = 8_000
"""Characters of a default result (text + structured JSON); ``detail: "full"`` lifts it."""
TEXT_SHARE = 2_500
"""Of the budget, at most this much for the text rendering (the data matters more to a model)."""
TEXT_MIN = 800
"""The text is cut to leave the data whole, but not below this; then both are shortened."""
NOTE_RESERVE = 700
"""Room kept for ``truncated`` (the links and what was cut)."""
KEPT_RESULTS = 64
KEPT_CHARACTERS = 64_000_000
"""Full results kept for reading as resources: the last KEPT_RESULTS, at most this many characters in all."""
RESULTS_URI = "agent19://results/{id}/{part}"


@dataclass
class Artifact:
    part: str
    """the result field (or ``full``, ``text``) the resource holds"""
    uri: str
    characters: int
    mime_type: str
    summary: str


@dataclass
class Shaped:
    structured: dict[str, Any]
    text: str
    artifacts: list[Artifact] = field(default_factory=list)


class ResultStore:
    """Results of recent calls, by an unguessable id (another session of an HTTP server cannot list them)."""

    def __init__(self, keep: int = KEPT_RESULTS, characters: int = KEPT_CHARACTERS) -> None:
        self._parts: OrderedDict[str, dict[str, tuple[str, str]]] = OrderedDict()
        self._keep, self._characters = keep, characters
        self._lock = threading.Lock()

    def put(self, parts: dict[str, tuple[str, str]]) -> str:
        """Keep ``{part: (mime type, text)}``; returns the id."""
        key = secrets.token_urlsafe(9)
        self.keep(key, parts)
        return key

    def keep(self, key: str, parts: dict[str, tuple[str, str]]) -> None:
        """Keep ``parts`` under ``key`` (an id made by another process's :meth:`put`: a server's worker)."""
        with self._lock:
            self._parts[key] = parts
            while len(self._parts) > self._keep or (len(self._parts) > 1 and self._size() > self._characters):
                self._parts.popitem(last=False)

    @property
    def characters(self) -> int:
        """The most characters kept in all (a result's parts beyond it are not kept: :func:`shape`)."""
        return self._characters

    def get(self, key: str, part: str) -> tuple[str, str] | None:
        with self._lock:
            return self._parts.get(key, {}).get(part)

    def _size(self) -> int:
        return sum(len(text) for parts in self._parts.values() for _, text in parts.values())


def shape(result: Any, text: str, store: ResultStore, *, full: bool = False,
          budget: int = RESPONSE_BUDGET) -> Shaped:
    """The result as a model should get it: whole with ``full``; else without its artifacts (kept as resources)
    and, when still over ``budget``, shortened."""
    data = records.dump(result)
    moved = [name for name in _artifact_fields(type(result)) if data.get(name) not in (None, "", [], {})]
    key = secrets.token_urlsafe(9)  # the id its parts are kept under, if any are (the text may point to them)
    text = said_once(text, data, {} if full else {name: RESULTS_URI.format(id=key, part=name) for name in moved})
    size = Sizes()  # asked whether the data fits first: measured whole only where it is shortened (:func:`_fit`)
    if full or (not moved and size.at_most(data, budget - len(text)) is not None):
        return Shaped(data, text)
    parts: dict[str, tuple[str, str]] = {"full": ("application/json", _indented(data))}
    for name in moved:
        value = data.pop(name)
        parts[name] = (("text/markdown", value) if isinstance(value, str)
                       else ("application/json", _indented(value)))
    if moved:
        size = Sizes()  # the data lost its artifacts; from here on nothing measured changes
    # the data whole when it fits with a shorter text (the text is a rendering of the same data); else both cut
    data_size = size.at_most(data, budget - NOTE_RESERVE - TEXT_MIN)
    text_limit = budget - data_size - NOTE_RESERVE if data_size is not None else TEXT_SHARE
    short_text = text
    if len(text) > text_limit:
        parts["text"] = ("text/plain", text)
        short_text = _cut(text, text_limit - 100)
    not_kept = _beyond_the_store(parts, store.characters)
    if parts:
        store.keep(key, parts)
    artifacts = [Artifact(part, RESULTS_URI.format(id=key, part=part), len(body), mime, _summary(part, body))
                 for part, (mime, body) in parts.items()]
    if "text" in parts:
        short_text += f"\n… (the whole text: {RESULTS_URI.format(id=key, part='text')})"
    note: dict[str, Any] = {"moved_to_resources": {a.part: a.uri for a in artifacts if a.part != "full"},
                            "shortened": [], "how": 'read the resources, or call again with detail: "full"'}
    if "full" in parts:
        note = {"whole_result": RESULTS_URI.format(id=key, part="full")} | note
    if not_kept:
        note["not_kept"] = not_kept
        note["how"] = (f"parts over the {store.characters:,} characters this server keeps are not kept: split the "
                       "input, or run it at a terminal (the agent19 command prints everything)")
    room = budget - len(short_text) - size(note)
    shaped, cut = data, []
    while room > 0 and size.at_most(shaped, room - size(cut[:6])) is None:
        shaped, cut = _fit(data, room - size(cut[:6]) - 200, size)
        if size(shaped) + size(cut[:6]) <= room:
            break
        room -= 500  # best effort: the notes themselves took more than reserved
    shaped["truncated"] = note | {"shortened": cut[:6]}
    return Shaped(shaped, short_text, artifacts)


DOCUMENT = 500
"""A string of the data this long (a pattern's SQL, schema.prisma, a runbook, a long note) that the text rendering
also holds verbatim is said once: in the data; the text names where it is (:func:`said_once`)."""
DOCUMENTS_SCANNED = 20_000_000
"""Characters of text read looking for documents, at most (each search reads the whole text: a lint of thousands of
long statements must not search a 5 MB text for each): the longest strings are looked for first, at least 4."""


def said_once(text: str, data: Any, moved: dict[str, str] | None = None) -> str:
    """``text`` with every long string of ``data`` it repeats (:data:`DOCUMENT`) replaced by where that string is:
    ``[sql: 2,345 characters, in the structured content]``, or the resource a field ``moved`` to (field → URI).

    A tool's rendering for people prints its document (the CLI must); over MCP the structured content carries it
    already, and the text content is the compact rendering: never the same thing twice."""
    found: list[tuple[str, str]] = []
    if len(text) >= DOCUMENT:
        _long_strings(data, "", found)
    searches = max(4, DOCUMENTS_SCANNED // max(len(text), 1))
    for path, value in sorted(found, key=lambda pv: -len(pv[1]))[:searches]:
        body = value.strip()
        if len(body) >= DOCUMENT and body in text:
            where = (moved or {}).get(path.split(".", 1)[0].split("[", 1)[0]) or "in the structured content"
            text = text.replace(body, f"[{path}: {len(value):,} characters, {where}]")
    return text


def _long_strings(value: Any, path: str, out: list[tuple[str, str]]) -> None:
    # a string's path is written only when it is long: most of a result's strings are short (a 50-statement plan
    # has thousands, and writing each one's path was most of this walk)
    if isinstance(value, str):
        if len(value) >= DOCUMENT:
            out.append((path, value))
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, str):
                if len(v) >= DOCUMENT:
                    out.append((f"{path}.{k}" if path else k, v))
            elif isinstance(v, _NESTED):
                _long_strings(v, f"{path}.{k}" if path else k, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, str):
                if len(v) >= DOCUMENT:
                    out.append((f"{path}[{i}]", v))
            elif isinstance(v, _NESTED):
                _long_strings(v, f"{path}[{i}]", out)


def _beyond_the_store(parts: dict[str, tuple[str, str]], characters: int) -> dict[str, int]:
    """Leave out of ``parts`` (largest first) what would not fit in a store of ``characters``; their sizes.

    A result larger than the whole store was kept all the same, and evicted by the next call of any session
    (its links dead before a model could read them) after evicting every other session's results."""
    dropped: dict[str, int] = {}
    for part in sorted(parts, key=lambda p: -len(parts[p][1])):
        if sum(len(body) for _, body in parts.values()) <= characters:
            break
        dropped[part] = len(parts.pop(part)[1])
    return dropped


def _artifact_fields(model: type) -> list[str]:
    out = []
    for name, info in records.fields(model).items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("artifact"):
            out.append(info.alias or name)
    return out


def _indented(data: Any) -> str:
    """JSON for people to read: the same text as ``json.dumps(data, ensure_ascii=False, indent=1)``, written by
    pydantic's encoder (json's indenting encoder is pure Python: 4 ms of a 50-statement plan's 30)."""
    return to_json(data, indent=1).decode()


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[:limit]
    newline = head.rfind("\n")
    return head[:newline] if newline > limit // 2 else head[: limit - 1] + "…"


def _summary(part: str, body: str) -> str:
    first = "" if part == "full" else _first_line(body)
    return f"{part}: {len(body):,} characters" + (f" — {first[:120]}" if first else "")


def _first_line(body: str, head: int = 4096) -> str:
    """The first line of ``body`` with something to say, without splitting all of a large body into lines: among
    the whole lines of its first ``head`` characters first (the last may go on beyond them), else in all of it."""
    if len(body) > head:
        for line in body[:head].splitlines()[:-1]:
            if line.strip("# {[").strip():
                return line.strip("# ").strip()
    return next((line.strip("# ").strip() for line in body.splitlines() if line.strip("# {[").strip()), "")


LONG_TEXT = 240
"""First step of shortening: every longer string (a statement's text, evidence, a notice) is cut to this."""


def _fit(data: dict[str, Any], budget: int,
         size: Callable[[Any], int] = json_size) -> tuple[dict[str, Any], list[str]]:
    """``data`` shortened to about ``budget`` characters of JSON: long texts first (every list keeps its items),
    then the largest parts (small fields, e.g. the paths written or a verdict, stay whole); what was cut."""
    texts: list[str] = []
    short = _cut_texts(data, texts)
    # named shallowest first (a document field such as `markdown` before the texts of a list's items), so a client
    # can tell whether the field it wants was cut; beyond 8, how many more
    named = sorted(texts, key=lambda t: t.count(".") + t.count("["))[:8]
    more = f" and {len(texts) - len(named)} more" if len(texts) > len(named) else ""
    cut = [f"{len(texts)} texts longer than {LONG_TEXT} characters cut: {', '.join(named)}{more}"] if texts else []
    if size(short) <= budget:
        return short, cut
    return _shorten(short, max(budget, 500), "", cut, size), cut


def _cut_texts(value: Any, cut: list[str], path: str = "") -> Any:
    if isinstance(value, str) and len(value) > LONG_TEXT:
        cut.append(path)
        return _cut(value, LONG_TEXT)
    # a value with nothing to cut (a number, a short text) is kept as it is, without a call or its path: most of
    # a result's values are such leaves (a 50-statement plan has thousands)
    # (the test inline: a call per leaf costs as much as the recursion it saves)
    # a part with nothing cut is itself, not a copy: its size is known already (Sizes) when it was measured whole
    before = len(cut)
    if isinstance(value, dict):
        short: Any = {k: _cut_texts(v, cut, f"{path}.{k}" if path else k)
                      if isinstance(v, _NESTED) or (isinstance(v, str) and len(v) > LONG_TEXT) else v
                      for k, v in value.items()}
    elif isinstance(value, list):
        short = [_cut_texts(v, cut, f"{path}[{i}]")
                 if isinstance(v, _NESTED) or (isinstance(v, str) and len(v) > LONG_TEXT) else v
                 for i, v in enumerate(value)]
    else:
        return value
    return short if len(cut) > before else value


_NESTED = (dict, list)


def _shorten(value: Any, budget: int, path: str, cut: list[str], size: Callable[[Any], int] = json_size) -> Any:
    if size(value) <= budget:
        return value
    if isinstance(value, str):
        keep = max(budget - 8, 40)
        if len(value) <= keep:
            return value  # nothing to cut (a note saying "first 40 of 16 characters" took a real cut's place)
        cut.append(f"{path}: first {keep} of {len(value)} characters")
        return _cut(value, keep)
    if isinstance(value, dict):
        shares = _share({k: size(v) + len(k) + 4 for k, v in value.items()}, budget - 2)
        return {k: _shorten(v, shares[k] - len(k) - 4, f"{path}.{k}" if path else k, cut, size)
                for k, v in value.items()}
    if isinstance(value, list):
        out, used = [], 2
        for item in value:
            item_size = size(item) + 1
            if used + item_size > budget:
                if not out:  # at least the first item, itself shortened
                    out.append(_shorten(item, budget - used, f"{path}[0]", cut, size))
                break
            out.append(item)
            used += item_size
        cut.append(f"{path}: first {len(out)} of {len(value)}")
        return out
    return value


def _share(sizes: dict[str, int], budget: int) -> dict[str, int]:
    """Split ``budget`` so that every part smaller than an equal share keeps its size and the larger ones share
    the rest equally (water-filling)."""
    shares: dict[str, int] = {}
    left, remaining = budget, sorted(sizes, key=sizes.__getitem__)
    while remaining:
        fair = left // len(remaining)
        key = remaining.pop(0)
        shares[key] = sizes[key] if sizes[key] <= fair else fair
        left -= shares[key]
    return shares


TRUNCATED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "present only in a summarised result: where the whole result is and what was left out or cut",
    "properties": {
        "whole_result": {"type": "string", "description": "resource URI of the whole result (unless not kept)"},
        "moved_to_resources": {"type": "object", "additionalProperties": {"type": "string"},
                               "description": "field → resource URI of each field left out"},
        "shortened": {"type": "array", "items": {"type": "string"}, "description": "what was cut, and where"},
        "not_kept": {"type": "object", "additionalProperties": {"type": "integer"},
                     "description": "part → characters of the parts too large for the server to keep"},
        "how": {"type": "string"},
    },
}


def documented_schema(model: type) -> dict[str, Any]:
    """The JSON schema of ``model``'s structured content as :func:`shape` returns it: artifact fields may be left
    out (they are resources then) and a summarised result carries ``truncated``."""
    schema = records.json_schema(model, mode="serialization")
    moved = set(_artifact_fields(model))
    if "required" in schema:
        schema["required"] = [name for name in schema["required"] if name not in moved]
    schema.setdefault("properties", {})["truncated"] = TRUNCATED_SCHEMA
    return schema
