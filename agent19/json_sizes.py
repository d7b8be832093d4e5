"""How long a value is as compact JSON, for sizing tool results (:mod:`agent19.responses`) without writing the
same JSON again for each part of it."""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any


def json_size(data: Any) -> int:
    """Characters of ``data`` as compact JSON: ``len(json.dumps(data, ensure_ascii=False, separators=(",", ":")))``."""
    return len(_COMPACT.encode(data))


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""``json.dumps(…, ensure_ascii=False, separators=(",", ":"))``'s encoder, made once (not for each value measured)."""


def _keys_size(value: dict[Any, Any]) -> int:
    """Characters of ``value``'s keys as JSON: written together, one call for all (escapes are per character; each
    key has its two quotes), the way a result's dicts have them (str keys); another key (a number) one by one."""
    try:
        return len(encode_basestring("".join(value))) + 2 * len(value) - 2 if value else 0
    except TypeError:
        return sum(len(encode_basestring(k)) if type(k) is str else json_size({k: 0}) - 4 for k in value)


class Sizes:
    """:func:`json_size` that remembers what it measured, for one shaping, where nothing measured changes afterwards.

    Shortening measures the same objects again and again (the whole data before and after each step, every
    part once for its parent's shares and once more when shortened itself): a 50-statement plan's summary
    encoded 390,000 characters of JSON to measure 120,000. So a dict or list is measured from its items, each
    nested one remembered on the way: the parts shortening asks for next are known already, and so is every
    part it left as it was. Each object measured is held, so that its id is not reused by another while this
    lives. A value of any other type than JSON's own is measured by encoding it."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[Any, int]] = {}

    def __call__(self, value: Any) -> int:
        known = self._known.get(id(value))
        if known is not None:
            return known[1]
        if isinstance(value, (dict, list)):
            return self._nested(value)
        n = json_size(value)
        self._known[id(value)] = (value, n)
        return n

    def _nested(self, value: dict[Any, Any] | list[Any]) -> int:
        """The length of ``value`` as :func:`json_size` writes it, from its items' (and keys') lengths."""
        known = self._known
        n = 2 + 2 * len(value) - 1 if value else 2  # brackets, a comma between items and a colon after each key
        if isinstance(value, dict):
            n += _keys_size(value)
            items: Any = value.values()
        else:
            n -= len(value)  # a list's items have no colon
            items = value
        for v in items:
            kind = type(v)
            if kind is str:
                n += len(encode_basestring(v))
            elif kind is dict or kind is list:
                seen = known.get(id(v))
                n += seen[1] if seen is not None else self._nested(v)
            elif v is None or v is True:
                n += 4
            elif v is False:
                n += 5
            elif kind is int:
                n += len(int.__repr__(v))
            else:  # a float (NaN, Infinity), a subclass, a tuple, a type JSON refuses: as the encoder has it
                n += json_size(v)
        known[id(value)] = (value, n)
        return n

    def at_most(self, value: Any, limit: int) -> int | None:
        """``self(value)`` when it is at most ``limit``, else None, having measured no more of ``value`` than the
        first items that add up past ``limit`` (a summary asks whether a large result fits a budget: "no" is known
        long before the whole is measured). What it measured whole is remembered, as :meth:`__call__` does."""
        known = self._known.get(id(value))
        if known is not None:
            return known[1] if known[1] <= limit else None
        if not isinstance(value, (dict, list)):
            n = self(value)
            return n if n <= limit else None
        n = 2 + 2 * len(value) - 1 if value else 2
        if isinstance(value, dict):
            n += _keys_size(value)
            items: Any = value.values()
        else:
            n -= len(value)
            items = value
        for v in items:
            if n > limit:
                return None
            part = self.at_most(v, limit - n)
            if part is None:
                return None
            n += part
        if n > limit:
            return None
        self._known[id(value)] = (value, n)
        return n
