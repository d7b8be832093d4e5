"""Connections (psycopg 3 + pool), the embedded server, catalog introspection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent19.db.connection import Database
    from agent19.db.redact import redact_dsn, redact_text

__all__ = ["Database", "redact_dsn", "redact_text"]


def __getattr__(name: str) -> Any:
    """``from agent19.db import Database`` loads the driver then, not when a submodule such as
    :mod:`agent19.db.models` is imported (``agent19 lint`` never needs psycopg)."""
    if name == "Database":
        from agent19.db.connection import Database

        return Database
    if name in ("redact_dsn", "redact_text"):
        from agent19.db import redact

        return getattr(redact, name)
    raise AttributeError(f"module 'agent19.db' has no attribute {name!r}")
