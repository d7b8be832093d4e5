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
from agent19.migrate.classification.classify import BLOCKING, classify
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


def labels_of(op: Operation) -> tuple[bool, bool, bool]:
    """What classify() says about pre-existing tables: (blocks writes, rewrites, scans under a blocking lock).

    A rewrite reads every row too, so the scan label of a rewriting statement is compared only when
    classify() does not say it rewrites.
    """
    existing = [t for t in op.locks if not op.new_table]
    blocks = any(op.locks[t] in BLOCKING for t in existing)
    return blocks, op.rewrite and not op.new_table, (op.scan or op.rewrite) and blocks


def agrees(got: tuple[bool, bool, bool], label: tuple[bool, bool, bool]) -> bool:
    return got[:2] == label[:2] and (got[2] == label[2] or (got[1] and label[1]))


# rows read per relation in this transaction (the scan oracle)
Q_READ = "SELECT relid, seq_tup_read + COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
Q_ROWS = ("SELECT c.oid, n.nspname || '.' || c.relname, c.relkind::text, GREATEST(c.reltuples, 0)::bigint FROM "
          "pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN "
          "('r', 'm', 'p')")


def blocks_its_users(mode: str, relkind: str | None) -> bool:
    """A lock that makes the relation's users wait: writers of a table; readers of a materialized view."""
    return mode == "AccessExclusiveLock" if relkind == "m" else mode in BLOCKING


def test_the_corpus_is_large_enough_and_mixed() -> None:
    assert len(CORPUS) >= 50
    assert sum(1 for _, blocks, rewrites, _ in CORPUS if not blocks and not rewrites) >= 10
    assert sum(1 for _, _, rewrites, _ in CORPUS if rewrites) >= 10
    assert sum(1 for _, _, rewrites, scans in CORPUS if scans and not rewrites) >= 10


def test_the_labels_are_what_the_server_shows(corpus_db: tuple[str, SchemaSnapshot]) -> None:
    dsn, catalog = corpus_db
    existing = {t.qualified_name for t in catalog.tables} | {"public.mv"}
    wrong = []
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()
        for sql, blocks, rewrites, scans in CORPUS:
            statements = parse_sql(sql)
            try:
                oids = dict(conn.execute("SELECT c.oid, n.nspname || '.' || c.relname FROM pg_class c JOIN "
                                         "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                                         ).fetchall())
                for earlier in statements[:-1]:
                    conn.execute(earlier.sql)
                before = {(lock.relation, lock.mode) for lock in held_locks(conn)}
                sizes = {oid: (name, kind, rows) for oid, name, kind, rows in conn.execute(Q_ROWS).fetchall()}
                read_before = dict(conn.execute(Q_READ).fetchall())
                obs = observe(conn, statements[-1].sql)
                read = {oid: n - read_before.get(oid, 0) for oid, n in conn.execute(Q_READ).fetchall()}
                # a renamed relation shows under its new name: name it as before the statement
                now = dict(conn.execute("SELECT c.oid, n.nspname || '.' || c.relname FROM pg_class c JOIN "
                                        "pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(%s)",
                                        (list(oids),)).fetchall())
            finally:
                conn.rollback()
            # a renamed relation shows under its new name, a dropped one as its oid: name them as before
            renamed = {now[oid]: name for oid, name in oids.items() if oid in now}
            renamed |= {str(oid): name for oid, name in oids.items()}
            fresh = [lock for lock in obs.locks if (lock.relation, lock.mode) not in before]
            new = [(renamed.get(lock.relation, lock.relation), lock.mode) for lock in fresh]
            seen_blocks = any(mode in BLOCKING for rel, mode in new if rel in existing)
            seen_rewrites = any(rel in existing for rel in obs.rewritten)
            blocking = {renamed.get(lock.relation, lock.relation) for lock in fresh
                        if blocks_its_users(lock.mode, lock.relkind)}
            seen_scans = any(read.get(oid, 0) >= max(rows, 1) and name in blocking
                             for oid, (name, _, rows) in sizes.items() if name in existing)
            seen = (seen_blocks, seen_rewrites, seen_scans)
            if seen != (blocks, rewrites, scans):
                wrong.append(f"{sql!r}: labelled {(blocks, rewrites, scans)}, server shows {seen}")
    assert not wrong, "\n".join(wrong)


def test_classify_with_a_catalog_agrees_with_every_label(corpus_db: tuple[str, SchemaSnapshot]) -> None:
    _, catalog = corpus_db
    wrong = []
    for sql, *label in CORPUS:
        op = classify(parse_sql(sql), catalog=catalog, session_timezone_utc=True)[-1]
        if not agrees(labels_of(op), tuple(label)):  # type: ignore[arg-type]
            wrong.append(f"{sql!r}: labelled {tuple(label)}, classify says {labels_of(op)} ({op.form})")
    assert not wrong, "\n".join(wrong)


def test_classify_without_a_catalog_misses_nothing() -> None:
    """With no database, every statement that blocks or rewrites is still flagged (it may over-warn,
    and then says what it assumed)."""
    missed, over = [], []
    for sql, blocks, rewrites, scans in CORPUS:
        op = classify(parse_sql(sql), pg_version=150000)[-1]
        got = labels_of(op)
        if (blocks and not got[0]) or (rewrites and not got[1]) or (scans and not got[2]):
            missed.append(f"{sql!r}: labelled {(blocks, rewrites, scans)}, classify says {got} ({op.form})")
        if got[1] and not rewrites:
            over.append(op)
    assert not missed, "\n".join(missed)
    for op in over:
        assert any("unknown" in note or "assumed" in note for note in op.notes), (op.sql, op.notes)
