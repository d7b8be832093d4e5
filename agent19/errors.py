"""Errors that agent19 shows to its users.

Each error says what went wrong and what to do about it. Adapters (CLI, MCP) print
``str(error)``; nothing in these messages may contain a secret (see :mod:`agent19.db.redact`).
"""

from __future__ import annotations


class Agent19Error(Exception):
    """Base class: a message for the user and an optional hint on what to do next."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} - {hint}")


class ConfigError(Agent19Error):
    """A setting has an unusable value; the message names the setting."""


class DatabaseUnavailable(Agent19Error):
    """The server cannot be reached (or was lost); the next call tries again."""


class ModeError(Agent19Error):
    """The operation needs a stronger access mode than the one agent19 runs in."""


class InputError(Agent19Error):
    """The user's input (SQL, file, arguments) cannot be used as given."""

    file: str | None = None
    line: int | None = None
    """Where in the user's SQL, when known: a lint stopped by the error names it (``agent19 lint``'s ``error``)."""

    def locate(self, file: str | None, line: int) -> None:
        """Name the statement the error is about (``file:line: `` or ``line N: `` before the message), unless it
        names one already."""
        if self.line is not None:
            return
        self.file, self.line = file, line
        self.message = f"{where(file, line)}: {self.message}"
        self.args = (self.message if not self.hint else f"{self.message} - {self.hint}",)


def where(file: str | None, line: int) -> str:
    """A statement's place as agent19's messages name it: ``m.sql:2``, or ``line 2`` in SQL text."""
    return f"{file}:{line}" if file else f"line {line}"


class StatementNote(str):
    """A note (``BaseException.add_note``) on an unexpected error, naming the statement it stopped at: printed
    under its traceback, and read (:attr:`file`, :attr:`line`) by a report that says where it stopped."""

    file: str | None
    line: int

    def __new__(cls, file: str | None, line: int) -> StatementNote:
        note = super().__new__(cls, f"agent19: stopped at the statement at {where(file, line)}")
        note.file, note.line = file, line
        return note

    @staticmethod
    def of(exc: BaseException) -> StatementNote | None:
        """The note on ``exc``, if any."""
        return next((n for n in getattr(exc, "__notes__", ()) if isinstance(n, StatementNote)), None)


def postgres_error_text(exc: BaseException) -> str:
    """A PostgreSQL error as the user sees it, with what to do when the error alone does not say."""
    text = str(exc).strip()
    if getattr(exc, "sqlstate", None) == "55P03":  # lock_not_available: lock_timeout expired
        return (f"{text}: another session holds a lock on a table this command reads (e.g. an ALTER TABLE or "
                "LOCK TABLE in an open transaction) - `agent19 health` names it (blocked_sessions, "
                "idle_in_transaction); retry when it has finished, or raise --lock-timeout")
    return text
