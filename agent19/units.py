"""Sizes and durations written for people, the same way in every output of agent19."""

from __future__ import annotations


def human_size(n: int | None) -> str:
    """``1536`` → ``1.5 kB`` (powers of 1024, as PostgreSQL's pg_size_pretty); ``None`` → ``unknown size``."""
    if n is None:
        return "unknown size"
    size = float(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"  # pragma: no cover - the loop always returns


def human_duration(seconds: float) -> str:
    """``42`` → ``42 s``, ``300`` → ``5.0 min``, ``7200`` → ``2.0 h``."""
    if seconds < 90:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
