"""Incremental extraction: the source walked as a keyset on its cursor columns, never with OFFSET.

Each batch is ``SELECT * FROM (source) _src WHERE (c1, c2) > (last) ORDER BY c1, c2 LIMIT n`` in its own
short READ ONLY transaction; on a table with an index on the cursor columns each batch is an index range
scan whatever its position. The first batch of a run may start at ``c1 >= watermark - lag`` instead
(rows of transactions that committed late, below the watermark, are read again; the upsert makes the
re-read harmless). A query source is user SQL: it is admitted by the safety gate (purpose READ) and runs
as the reader login.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import AdaptersMap
from psycopg.rows import tuple_row
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader

from agent19.db import rls
from agent19.db.connection import Connection, Database
from agent19.errors import InputError
from agent19.migrate.patterns import sqlnames
from agent19.migrate.patterns.sqlnames import ident
from agent19.safety import gate, readonly


class _InfinityAsText:
    """PostgreSQL's 'infinity' / '-infinity' dates and timestamps have no Python datetime: they are read as
    those strings (loaded back as is, or rejected with a reason by a datetime field) instead of failing the run."""

    def load(self, data: Any) -> Any:
        text = bytes(data)
        if text in (b"infinity", b"-infinity"):
            return text.decode()
        return super().load(data)  # type: ignore[misc]


class _Date(_InfinityAsText, DateLoader): ...
class _Timestamp(_InfinityAsText, TimestampLoader): ...
class _Timestamptz(_InfinityAsText, TimestamptzLoader): ...


def infinity_as_text(conn: Any) -> None:
    """Registers the loaders above on ``conn`` (text format)."""
    adapters: AdaptersMap = conn.adapters
    for name, loader in (("date", _Date), ("timestamp", _Timestamp), ("timestamptz", _Timestamptz)):
        adapters.register_loader(name, loader)


Q_NOT_NULL = """
SELECT a.attname AS name FROM pg_attribute a
 WHERE a.attrelid = to_regclass(%s) AND a.attname = ANY(%s) AND a.attnotnull AND NOT a.attisdropped
"""
Q_TYPES = "SELECT t.oid, format_type(t.oid, NULL) AS name FROM pg_type t WHERE t.oid = ANY(%s)"


def split_name(name: str) -> tuple[str, ...]:
    """``schema.table`` (or ``table``) as identifier parts: written raw, as the catalog spells it (``Sales
    Dept.Order Items``), or as SQL with double quotes (``"Sales Dept"."a.b"``), as every agent19 tool reads a table
    name (:func:`agent19.migrate.patterns.sqlnames.split_name`)."""
    if '"' in name:
        schema, table = sqlnames.split_name(name)
        return (table,) if schema is None else (schema, table)
    parts = tuple(p for p in name.split("."))
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise InputError(f"table name {name!r} is not schema.table", "e.g. table = \"public.orders\"")
    return parts


@dataclass
class SourceShape:
    columns: dict[str, str]
    """column → type name, in the source's order."""


_RLS_FIX = ("extract as a login with BYPASSRLS (ALTER ROLE <login> BYPASSRLS) or as the table's owner (when it has "
            "no FORCE ROW LEVEL SECURITY)")


class Extractor:
    """Reads batches from a source (table or admitted query)."""

    def __init__(self, db: Database, *, table: str | None, query: str | None, cursor: list[str]):
        self.db = db
        self.cursor = cursor
        self.user_query = query is not None
        self.table: sql.Identifier | None = None
        if query is not None:
            statements = gate.admit(db, query, gate.Purpose.READ)  # the choke point for user SQL
            self.base: sql.Composable = sql.SQL(statements[0].sql.strip().rstrip(";"))  # type: ignore[arg-type]
        else:
            self.table = sql.Identifier(*split_name(table or ""))
            self.base = sql.SQL("SELECT * FROM {}").format(self.table)
            # A table name is chosen by the caller too: the read guard's catalog layer refuses credential
            # catalogs (pg_authid, pg_shadow…) and views over them or over volatile functions.
            with db.read() as conn:
                text = self.base.as_string(conn)
                found = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (self.table.as_string(conn),))
                if not found.fetchone()["ok"]:  # (said plainly: PostgreSQL's error shows the name quoted twice)
                    raise InputError(f"the source table {table} does not exist (or this login cannot see it)",
                                     "name it as schema.table, raw (Sales Dept.Order Items) or as SQL with "
                                     "double quotes (\"Sales Dept\".\"Order Items\")")
                readonly.check_catalog(conn, readonly.check_statements(gate.parse_input(text)))
                hidden = rls.hidden_relation(conn, self.table.as_string(conn))
                if hidden is not None:  # a copy of the rows a policy shows, and a watermark past the rest
                    raise InputError(f"{rls.message(hidden)}; nothing was read or written, the watermark did not "
                                     "move", _RLS_FIX)

    @contextmanager
    def _session(self) -> Iterator[Connection]:
        with gate.reader(self.db) if self.user_query else self.db.read() as conn:
            infinity_as_text(conn)
            conn.execute(rls.EVERY_ROW)  # a read a policy would filter errors (a query source's tables too)
            yield conn

    def shape(self) -> SourceShape:
        with self._session() as conn:
            try:
                cur = conn.execute(sql.SQL("SELECT * FROM ({}\n) _src LIMIT 0").format(self.base))
            except psycopg.errors.InsufficientPrivilege as exc:
                if not rls.explains(exc):
                    raise
                raise InputError(f"row-level security may hide rows the source reads from this login ({exc}): "
                                 f"{rls.HINT}; nothing was read or written, the watermark did not move",
                                 _RLS_FIX) from None
            desc = cur.description or []
            oids = [d.type_code for d in desc]
            names = {r["oid"]: r["name"] for r in conn.execute(Q_TYPES, (oids,)).fetchall()}
            columns = {d.name: names.get(d.type_code, "text") for d in desc}
            missing = [c for c in self.cursor if c not in columns]
            if missing:
                raise InputError(f"cursor column(s) {missing} are not in the source (it has {list(columns)})",
                                 "name columns of the source in source.cursor")
            self._refuse_null_cursor(conn)
        return SourceShape(columns)

    def identity(self) -> str:
        """The source as its catalog names it, ``database:schema.table`` (``database:query`` for a query)."""
        with self._session() as conn:
            if self.table is None:
                row = conn.execute("SELECT current_database() || ':query' AS name").fetchone()
            else:
                row = conn.execute("SELECT current_database() || ':' || quote_ident(n.nspname) || '.' || "
                                   "quote_ident(c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = "
                                   "c.relnamespace WHERE c.oid = to_regclass(%s)", (self.table.as_string(conn),)
                                   ).fetchone()
        return str(row["name"]) if row else "?"

    def _refuse_null_cursor(self, conn: Connection) -> None:
        """A keyset never reaches a row whose cursor is NULL (its comparison with the watermark is NULL, and NULLs
        sort last): every run would skip it without a word. A table's NOT NULL cursor columns need no look; for the
        others (every cursor column of a query) one EXISTS looks for NULLs (an index on the columns answers it)."""
        check = list(self.cursor)
        if self.table is not None:
            found = conn.execute(Q_NOT_NULL, (self.table.as_string(conn), check)).fetchall()
            check = [c for c in check if c not in {r["name"] for r in found}]
        if not check:
            return
        nulls = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in check)
        row = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM ({}\n) _src WHERE {}) AS found").format(
            self.base, nulls)).fetchone()
        if row and row["found"]:
            names = ", ".join(check)
            raise InputError(
                f"the source has rows whose cursor column ({names}) is NULL: a keyset walk never reaches them, so "
                "every run would skip them without a word; nothing was read or written",
                f"fill them and make the column NOT NULL; or extract with a source query that gives them a value "
                f"(coalesce({ident(check[0])}, ...) AS {ident(check[0])}) or leaves them out on purpose (WHERE "
                f"{ident(check[0])} IS NOT NULL)")

    def _where(self, shape: SourceShape, after: list[Any] | None, since: Any | None) -> sql.Composable:
        if since is not None:
            first = self.cursor[0]
            return sql.SQL("WHERE {} >= {}::{}").format(sql.Identifier(first), sql.Literal(since),
                                                      sql.SQL(shape.columns[first]))
        if after is None:
            return sql.SQL("")
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.cursor)
        vals = sql.SQL(", ").join(sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(shape.columns[c]))
                                  for c, v in zip(self.cursor, after, strict=True))
        return sql.SQL("WHERE ({}) > ({})").format(cols, vals)

    def batch(self, shape: SourceShape, after: list[Any] | None, limit: int,
              since: Any | None = None) -> list[dict[str, Any]]:
        """The next ``limit`` rows after the cursor tuple ``after`` (or from ``since`` on the first column)."""
        order = sql.SQL(", ").join(sql.Identifier(c) for c in self.cursor)
        query = sql.SQL("SELECT * FROM ({}\n) _src {} ORDER BY {} LIMIT {}").format(
            self.base, self._where(shape, after, since), order, sql.Literal(limit))
        with self._session() as conn:
            return conn.execute(query).fetchall()

    def copy_batch(self, shape: SourceShape, columns: list[str], after: list[Any] | None, limit: int,
                   since: Any | None, write: Callable[[bytes], None]) -> tuple[int, list[Any] | None]:
        """The fast path: the next ``limit`` rows as COPY text (``columns``) passed to ``write``, no row parsed in
        Python. Returns (rows, last cursor tuple). When the cursor columns are among ``columns`` it is one
        statement, and the last row's cursor values are read from its COPY text (then typed by the source);
        otherwise the batch's cursor values come first, then the rows up to the last of them, on one REPEATABLE
        READ snapshot."""
        order = sql.SQL(", ").join(sql.Identifier(c) for c in self.cursor)
        where = self._where(shape, after, since)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        positions = [columns.index(c) for c in self.cursor] if set(self.cursor) <= set(columns) else None
        with self._session() as conn, conn.cursor(row_factory=tuple_row) as cur:
            if positions is not None:
                rows, tail = _stream(cur, sql.SQL("COPY (SELECT {} FROM ({}\n) _src {} ORDER BY {} LIMIT {}) TO STDOUT"
                                                  ).format(cols, self.base, where, order, sql.Literal(limit)), write)
                if not rows:
                    return 0, None
                return rows, _typed(cur, shape, self.cursor, _copy_fields(tail, positions, conn.info.encoding))
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            found = cur.execute(sql.SQL("SELECT {} FROM ({}\n) _src {} ORDER BY {} LIMIT {}").format(
                order, self.base, where, order, sql.Literal(limit))).fetchall()
            if not found:
                return 0, None
            last = list(found[-1])
            upto = sql.SQL("({}) <= ({})").format(order, sql.SQL(", ").join(
                sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(shape.columns[c]))
                for c, v in zip(self.cursor, last, strict=True)))
            where = sql.SQL("{} AND {}").format(where, upto) if after is not None or since is not None \
                else sql.SQL("WHERE {}").format(upto)
            rows, _ = _stream(cur, sql.SQL("COPY (SELECT {} FROM ({}\n) _src {} ORDER BY {}) TO STDOUT").format(
                cols, self.base, where, order), write)
        return rows, last

    def remaining(self, shape: SourceShape, after: list[Any] | None, since: Any | None = None) -> int:
        """Rows still to extract (for progress and ETA)."""
        query = sql.SQL("SELECT count(*) AS n FROM ({}\n) _src {}").format(self.base, self._where(shape, after, since))
        with self._session() as conn:
            row = conn.execute(query).fetchone()
        return int(row["n"]) if row else 0

    def typed(self, shape: SourceShape, values: list[str]) -> list[Any]:
        """A stored watermark (text) as the source's values, so that cursors compare as the source does."""
        with self.db.read() as conn:
            infinity_as_text(conn)
            return _typed(conn.cursor(row_factory=tuple_row), shape, self.cursor, values)


def _typed(cur: Any, shape: SourceShape, cursor: list[str], values: list[str]) -> list[Any]:
    casts = sql.SQL(", ").join(sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(shape.columns[c]))
                               for c, v in zip(cursor, values, strict=True))
    row = cur.execute(sql.SQL("SELECT {}").format(casts)).fetchone()
    assert row is not None
    return list(row)


def _stream(cur: Any, query: sql.Composable, write: Callable[[bytes], None]) -> tuple[int, bytes]:
    """Runs a ``COPY … TO STDOUT`` passing its data to ``write`` in blocks; returns (rows, the last row)."""
    rows, pending, tail = 0, [], memoryview(b"")
    with cur.copy(query) as copy:
        for chunk in copy:  # libpq hands out one row per chunk
            pending.append(chunk)
            if len(pending) >= 512:
                write(b"".join(pending))
                rows, pending, tail = rows + len(pending), [], pending[-1]
        if pending:
            write(b"".join(pending))
            rows, tail = rows + len(pending), pending[-1]
    return rows, bytes(tail)


_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_ESCAPED = re.compile(rb"\\(.)", re.S)


def _copy_fields(line: bytes, positions: list[int], encoding: str) -> list[str]:
    """Fields of one row of COPY text output, unescaped (COPY writes a backslash before itself and writes \\b \\f
    \\n \\r \\t \\v for those control characters; a tab inside a value is never a separator)."""
    fields = line.rstrip(b"\n").split(b"\t")
    out = []
    for i in positions:
        if fields[i] == b"\\N":
            raise InputError("a cursor column of the source is NULL in a row", "cursor columns must be NOT NULL")
        out.append(_ESCAPED.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), fields[i]).decode(encoding))
    return out


class Prefetch:
    """Reads the next batch on a worker thread while the current one loads (the source's work overlaps the
    destination's). ``get`` returns the prefetched batch when it was asked for the same position, else reads
    it now; a prefetch that fails raises from ``get`` (and is retried like any read)."""

    def __init__(self, fetch: Callable[[list[Any] | None, Any | None], Any]):
        self.fetch = fetch
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent19-etl-prefetch")
        self.key: str | None = None
        self.future: Future[Any] | None = None

    def get(self, after: list[Any] | None, since: Any | None) -> Any:
        future, self.future = self.future, None
        if future is not None and self.key == repr((after, since)):
            return future.result()
        return self.fetch(after, since)

    def ahead(self, after: list[Any] | None, since: Any | None) -> None:
        self.key = repr((after, since))
        self.future = self.pool.submit(self.fetch, after, since)

    def close(self) -> None:
        self.future = None
        self.pool.shutdown(wait=True, cancel_futures=True)
