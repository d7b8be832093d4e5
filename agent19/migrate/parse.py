"""Split SQL into statements with pglast (libpg_query: PostgreSQL's own grammar).

Each :class:`Statement` keeps its exact text, the file and 1-based line where it starts, and its
JSON parse tree, so every later stage (classification, lint, dry-run, safety checks) reports
positions a user can jump to.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pglast.parser import ParseError
from pydantic import BaseModel, Field

from agent19.errors import InputError
from agent19.sqltree import parse_json

_LEADING = re.compile(rb"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)


class SqlParseError(InputError):
    """The SQL does not parse; says where (file, line, column) and the parser's message."""

    def __init__(self, message: str, file: str | None, line: int, column: int) -> None:
        where = f"{file}:" if file else "line "
        super().__init__(
            f"{where}{line}:{column}: syntax error: {message}",
            "fix the statement there; agent19 parses with PostgreSQL's own grammar",
        )
        self.file, self.line, self.column, self.parser_message = file, line, column, message


class Statement(BaseModel):
    index: int = Field(description="0-based position in its file or text")
    file: str | None = None
    line: int = Field(description="1-based line where the statement starts")
    sql: str = Field(description="the statement's text, without the trailing semicolon")
    node: str = Field(description="top-level parse node, e.g. AlterTableStmt")
    tree: dict[str, Any] = Field(description="the statement's JSON parse tree (pglast)", repr=False)

    @property
    def fields(self) -> dict[str, Any]:
        """The top-level node's fields: ``tree[node]``."""
        return self.tree.get(self.node, {})


def release_trees(statements: list[Statement]) -> None:
    """Drop the statements' parse trees one statement at a time. Freed all at once (when a large file's
    statements go out of scope), millions of objects are released in one step that holds the interpreter for
    seconds: another session of the HTTP server waits that long for any answer."""
    for st in statements:
        st.tree = {}


def parse_sql(text: str, file: str | None = None) -> list[Statement]:
    """All statements of ``text``; empty text (or only comments) gives ``[]``.

    Raises :class:`SqlParseError` naming the line and the parser's message.
    """
    data = text.encode("utf-8")
    try:
        stmts = parse_json(text)
    except ParseError as exc:
        # pglast reports (message, 0-based character offset of the offending token)
        offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        prefix = text[:offset]
        line = prefix.count("\n") + 1
        column = offset - (prefix.rfind("\n") + 1) + 1
        message = str(exc.args[0]) if exc.args else str(exc)
        raise SqlParseError(message, file, line, column) from None
    out: list[Statement] = []
    counted, line = 0, 1  # newlines counted up to byte `counted`: statements come in order, so this stays linear
    for i, raw in enumerate(stmts):
        start = raw.get("stmt_location", 0)
        length = raw.get("stmt_len", 0) or len(data) - start
        chunk = data[start : start + length]
        skip = _LEADING.match(chunk)
        lead = skip.end() if skip else 0
        body = chunk[lead:].rstrip().rstrip(b";").rstrip()
        stmt = raw.get("stmt", {})
        node = next(iter(stmt), "")
        line += data.count(b"\n", counted, start + lead)
        counted = start + lead
        out.append(
            Statement(
                index=i,
                file=file,
                line=line,
                sql=body.decode("utf-8"),
                node=node,
                tree=stmt,
            )
        )
    return out


def read_sql_file(path: Path) -> str:
    """A migration file's text; non-UTF-8 bytes are an :class:`InputError` naming the position."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            "save the file as UTF-8; PostgreSQL migrations are read as UTF-8",
        ) from None


def parse_file(path: Path) -> list[Statement]:
    return parse_sql(read_sql_file(path), str(path))
