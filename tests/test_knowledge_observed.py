"""Every row of the knowledge table, observed on a real server (PostgreSQL 15 and 16).

Each row's example runs against the populated schema of tests/corpus/observed_schema.sql inside
a transaction that is rolled back; the lock modes ``classify()`` predicts for each relation and
its rewrite flag must equal what pg_locks and pg_class.relfilenode show. Statements that cannot
run in a transaction block must raise ActiveSqlTransaction inside one, and their lock is read
from a second session while they wait behind a conflicting lock.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from agent19.db.catalog import snapshot
from agent19.db.locks import LOCK_RANK
from agent19.db.models import SchemaSnapshot
from agent19.db.observe import Observation, observe
from agent19.migrate.classification.classify import classify
from agent19.migrate.classification.knowledge import Behaviour, forms, lookup
from agent19.migrate.classification.knowledge_table import KNOWLEDGE
from agent19.migrate.model import Operation
from agent19.migrate.parse import parse_sql

SCHEMA = (Path(__file__).parent / "corpus" / "observed_schema.sql").read_text()

# What to undo after a statement that had to run outside a transaction (it committed).
CLEANUP = {
    "create_index.concurrently": "DROP INDEX t_note_idx",
    "drop_index.concurrently": "CREATE INDEX t_n_idx ON t (n)",
    "alter_table.detach_partition.concurrently": "ALTER TABLE pt ATTACH PARTITION pt_1 FOR VALUES FROM (0) TO (1000)",
}
# Rows the test servers (15, 16) cannot show: other versions, or forms with no fixed example.
UNOBSERVABLE = {
    "alter_table.alter_column_type.unknown", "alter_table.other", "do_block", "unknown",
    "drop_foreign_table",  # needs a foreign-data wrapper, which the embedded server (16) lacks
    "call",  # runs a procedure's code, as do_block does
    "call.commits",  # needs its procedure created first and cannot run in a transaction: a dry run compares its
    # lock (tests/test_change_list_patterns.py runs one)
}


@dataclass
class Populated:
    dsn: str
    major: int
    catalog: SchemaSnapshot


def _create(server: Any) -> str:
    name = f"k_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = server.dsn_for(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return name


@pytest.fixture(scope="module")
def populated(pg_any: Any) -> Iterator[Populated]:
    """The populated schema, built once per server for this module."""
    name = _create(pg_any)
    dsn = pg_any.dsn_for(name)
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        catalog = snapshot(conn)
    try:
        yield Populated(dsn=dsn, major=catalog.major_version, catalog=catalog)
    finally:
        with psycopg.connect(pg_any.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def predict(row: Behaviour, populated: Populated) -> Operation:
    ops = classify(parse_sql(row.example), catalog=populated.catalog, pg_version=populated.major,
                   session_timezone_utc=row.example_timezone == "UTC")
    assert len(ops) == 1, row.example
    op = ops[0]
    assert op.form == row.form, f"{row.example!r} classified as {op.form}, its row is {row.form}"
    return op


def observed_modes(obs: Observation, oids: dict[str, str]) -> dict[str, str]:
    """Strongest observed mode per relation (dropped relations named through their oid)."""
    out: dict[str, str] = {}
    for lock in obs.locks:
        rel = oids.get(lock.relation, lock.relation)
        if rel not in out or LOCK_RANK[lock.mode] > LOCK_RANK[out[rel]]:
            out[rel] = lock.mode
    return out


def relation_oids(conn: psycopg.Connection[Any], names: list[str]) -> dict[str, str]:
    rows = conn.execute("SELECT r::regclass::oid::text, r FROM unnest(%s::text[]) r WHERE to_regclass(r) IS NOT NULL",
                        (names,)).fetchall()
    return {oid: name for oid, name in rows}


def current_names(conn: psycopg.Connection[Any], oids: dict[str, str]) -> dict[str, str]:
    """Also map a relation's name after the statement (a rename) to its name before it."""
    rows = conn.execute("SELECT c.oid::text, n.nspname || '.' || c.relname FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid::text = ANY(%s)",
                        (list(oids),)).fetchall()
    return {**oids, **{now: oids[oid] for oid, now in rows}}


def compare(op: Operation, obs: Observation, oids: dict[str, str], rewritable: list[str]) -> list[str]:
    seen = observed_modes(obs, oids)
    problems = [f"{rel}: predicted {mode}, observed {seen.get(rel)}" for rel, mode in op.locks.items()
                if seen.get(rel) != mode]
    unexpected = {rel: mode for rel, mode in seen.items() if rel not in op.locks and mode != "AccessShareLock"
                  and not rel.startswith("pg_toast") and rel in rewritable}
    problems += [f"{rel}: observed {mode}, not predicted" for rel, mode in unexpected.items()]
    rewritten = any(rel in obs.rewritten for rel in op.tables if rel in rewritable)
    if rewritten != op.rewrite:
        problems.append(f"rewrite predicted {op.rewrite}, observed {obs.rewritten}")
    return problems


IN_TX = [r for r in KNOWLEDGE if r.example and r.in_transaction and r.example_error is None]


def test_the_table_has_at_least_50_observed_forms() -> None:
    observed = {r.form for r in KNOWLEDGE if r.example}
    assert len(observed) >= 50
    assert set(forms()) - observed <= UNOBSERVABLE | {
        r.form for r in KNOWLEDGE if r.versions[1] < 15 or r.versions[0] > 16}


def test_every_in_transaction_row_matches_the_server(populated: Populated) -> None:
    user_tables = [t.qualified_name for t in populated.catalog.tables] + [
        "public.mv", "public.tv", "public.newt", "public.t2", "public.mv2", "public.s", "public.s2"]
    problems: dict[str, list[str]] = {}
    checked = 0
    with psycopg.connect(populated.dsn) as conn:
        for row in IN_TX:
            if not row.versions[0] <= populated.major <= row.versions[1]:
                continue
            op = classify(parse_sql(row.example), catalog=populated.catalog, pg_version=populated.major,
                          session_timezone_utc=row.example_timezone == "UTC")[0]
            if op.form != row.form:
                problems[f"{row.form}: {row.example}"] = [f"classified as {op.form}"]
                continue
            assert op.in_transaction and lookup(row.form, populated.major) == row
            conn.execute(f"SET LOCAL TIME ZONE '{row.example_timezone}'")
            oids = relation_oids(conn, list(op.locks) + user_tables)
            try:
                obs = observe(conn, row.example)
                oids = current_names(conn, oids)
            finally:
                conn.rollback()
            if found := compare(op, obs, oids, user_tables):
                problems[f"{row.form}: {row.example}"] = found
            checked += 1
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())
    assert checked >= 50


@pytest.mark.parametrize("row", [r for r in KNOWLEDGE if r.example_error], ids=lambda r: r.form)
def test_rows_that_fail_on_a_populated_table_do_fail(populated: Populated, row: Behaviour) -> None:
    op = predict(row, populated)
    error = getattr(psycopg.errors, row.example_error or "")
    with psycopg.connect(populated.dsn) as conn, pytest.raises(error):
        conn.execute(row.example)
    assert op.scan or op.rewrite


NO_TX = [r for r in KNOWLEDGE if r.example and not r.in_transaction]


@pytest.mark.parametrize("row", NO_TX, ids=lambda r: r.form)
def test_statements_that_refuse_a_transaction_block(populated: Populated, row: Behaviour) -> None:
    op = predict(row, populated)
    assert not op.in_transaction
    with psycopg.connect(populated.dsn) as conn:
        with pytest.raises(psycopg.errors.ActiveSqlTransaction):
            conn.execute("SELECT 1")
            conn.execute(row.example)
        conn.rollback()
    if not op.locks:
        return
    target = op.tables[0]
    mode, rewritten = watch_from_second_session(populated.dsn, row.example, target)
    try:
        assert mode == op.locks[target], f"{row.example}: waited for {mode} on {target}"
        assert rewritten == op.rewrite
    finally:
        if row.form in CLEANUP:
            with psycopg.connect(populated.dsn, autocommit=True) as conn:
                conn.execute(CLEANUP[row.form])


def watch_from_second_session(dsn: str, sql: str, target: str) -> tuple[str | None, bool]:
    """Run ``sql`` (autocommit) while another session holds EXCLUSIVE on ``target``; read the
    lock mode it waits for from pg_locks, then release it and report whether ``target`` got a new file."""
    errors: list[BaseException] = []
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn, autocommit=True) as runner:
        pid = runner.info.backend_pid
        node_before = holder.execute("SELECT relfilenode FROM pg_class WHERE oid = %s::regclass", (target,)).fetchone()
        holder.execute(f"LOCK TABLE {target} IN EXCLUSIVE MODE")  # lets AccessShareLock through

        def run() -> None:
            try:
                runner.execute(sql)
            except BaseException as exc:  # noqa: BLE001 - reported to the test below
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        mode = None
        deadline = time.monotonic() + 10
        while mode is None and time.monotonic() < deadline:
            row = holder.execute(
                "SELECT mode FROM pg_locks WHERE pid = %s AND NOT granted AND locktype = 'relation' "
                "AND relation = %s::regclass", (pid, target)).fetchone()
            mode = row[0] if row else None
            if mode is None:
                time.sleep(0.02)
        holder.rollback()
        thread.join(30)
        assert not errors, errors
        node_after = holder.execute("SELECT relfilenode FROM pg_class WHERE oid = %s::regclass", (target,)).fetchone()
        holder.rollback()
    return mode, node_before != node_after
