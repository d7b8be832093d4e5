"""How many characters a call's arguments hold (strings in nested dicts and lists), for size limits."""
from __future__ import annotations

from typing import Any


def characters(value: Any) -> int:
    """The characters of every string in ``value``, keys included; other values count nothing."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(characters(k) + characters(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(characters(v) for v in value)
    return 0
