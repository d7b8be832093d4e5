"""The labelled corpus: labels observed on the server, and classify() agreeing with every one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from agent19.db.catalog import snapshot
from agent19.db.models import SchemaSnapshot
from agent19.db.observe import held_locks, observe
from agent19.migrate.classify import BLOCKING, classify
from agent19.migrate.model import Operation
from agent19.migrate.parse import parse_sql
from tests.corpus.classify_corpus import CORPUS

SCHEMA = (Path(__file__).parent / "corpus" / "observed_schema.sql").read_text()


@pytest.fixture(scope="module")
def corpus_db(pg_any: Any) -> Iterator[tuple[str, SchemaSnapshot]]:
    name = f"c_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_any.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_any.dsn_for(name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            catalog = snapshot(conn)
        yield dsn, catalog
    finally:
        with psycopg.connect(pg_any.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def labels_of(op: Operation) -> tuple[bool, bool]:
    """What classify() says about pre-existing tables: (blocks writes, rewrites)."""
    existing = [t for t in op.locks if not op.new_table]
    return any(op.locks[t] in BLOCKING for t in existing), op.rewrite and not op.new_table


def test_the_corpus_is_large_enough_and_mixed() -> None:
    assert len(CORPUS) >= 50
    assert sum(1 for _, blocks, rewrites in CORPUS if not blocks and not rewrites) >= 10
    assert sum(1 for _, _, rewrites in CORPUS if rewrites) >= 10


def test_the_labels_are_what_the_server_shows(corpus_db: tuple[str, SchemaSnapshot]) -> None:
    dsn, catalog = corpus_db
    existing = {t.qualified_name for t in catalog.tables} | {"public.mv"}
    wrong = []
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()
        for sql, blocks, rewrites in CORPUS:
            statements = parse_sql(sql)
            try:
                oids = dict(conn.execute("SELECT c.oid, n.nspname || '.' || c.relname FROM pg_class c JOIN "
                                         "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                                         ).fetchall())
                for earlier in statements[:-1]:
                    conn.execute(earlier.sql)
                before = {(lock.relation, lock.mode) for lock in held_locks(conn)}
                obs = observe(conn, statements[-1].sql)
                # a renamed relation shows under its new name: name it as before the statement
                now = dict(conn.execute("SELECT c.oid, n.nspname || '.' || c.relname FROM pg_class c JOIN "
                                        "pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(%s)",
                                        (list(oids),)).fetchall())
            finally:
                conn.rollback()
            renamed = {now[oid]: name for oid, name in oids.items() if oid in now}
            new = [(renamed.get(lock.relation, lock.relation), lock.mode) for lock in obs.locks
                   if (lock.relation, lock.mode) not in before]
            seen_blocks = any(mode in BLOCKING for rel, mode in new if rel in existing)
            seen_rewrites = any(rel in existing for rel in obs.rewritten)
            if (seen_blocks, seen_rewrites) != (blocks, rewrites):
                wrong.append(f"{sql!r}: labelled {(blocks, rewrites)}, server shows {(seen_blocks, seen_rewrites)}")
    assert not wrong, "\n".join(wrong)


def test_classify_with_a_catalog_agrees_with_every_label(corpus_db: tuple[str, SchemaSnapshot]) -> None:
    _, catalog = corpus_db
    wrong = []
    for sql, blocks, rewrites in CORPUS:
        op = classify(parse_sql(sql), catalog=catalog, session_timezone_utc=True)[-1]
        if labels_of(op) != (blocks, rewrites):
            wrong.append(f"{sql!r}: labelled {(blocks, rewrites)}, classify says {labels_of(op)} ({op.form})")
    assert not wrong, "\n".join(wrong)


def test_classify_without_a_catalog_misses_nothing() -> None:
    """With no database, every statement that blocks or rewrites is still flagged (it may over-warn,
    and then says what it assumed)."""
    missed, over = [], []
    for sql, blocks, rewrites in CORPUS:
        op = classify(parse_sql(sql), pg_version=150000)[-1]
        got = labels_of(op)
        if (blocks and not got[0]) or (rewrites and not got[1]):
            missed.append(f"{sql!r}: labelled {(blocks, rewrites)}, classify says {got} ({op.form})")
        if got[1] and not rewrites:
            over.append(op)
    assert not missed, "\n".join(missed)
    for op in over:
        assert any("unknown" in note or "assumed" in note for note in op.notes), (op.sql, op.notes)
