"""Connections (psycopg 3 + pool), the embedded server, catalog introspection."""

from agent19.db.connection import Database
from agent19.db.redact import redact_dsn, redact_text

__all__ = ["Database", "redact_dsn", "redact_text"]
