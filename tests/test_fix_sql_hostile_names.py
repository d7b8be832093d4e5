"""The SQL (and shell commands) agent19 suggests as fixes, built from names any table owner chooses (r27-k14).

An application role that owns one table can name an index, a column or a constraint anything. index_health and
health turn those names into "fix" statements that a DBA pastes into psql: each must be exactly the statements
it claims to be, naming the object it was built for, whatever the name holds.
"""

from __future__ import annotations

import re
import subprocess

import psycopg
import pytest
from pglast import parse_sql

from agent19.config import Settings
from agent19.db import Database
from agent19.migrate.patterns.sqlnames import parse_name
from agent19.ops.health.check import health_check
from agent19.ops.health.thresholds import HealthThresholds
from agent19.optimize.hygiene import index_health
from agent19.safety.detect import detect
from agent19.safety.report import alternatives
from tests.conftest import owner_login

SCHEMA = 'sch; DROP SCHEMA public CASCADE; --'
TABLE = 'Kids "x"'
DUP = "a; DROP TABLE app.orders; --"
COVER = "Cover.Idx"
INVALID = "CREATE INDEX evil ON public.victim (id); --"
UNUSED = "nl\nDROP TABLE public.victim;"
FK_COL = "p); DROP TABLE public.victim; --"
FK_NAME = "fk'; DROP TABLE public.victim; --"
SEQ_COL = 'c"$(echo PWNED)"`echo PWNED`.x'

SETUP = [
    f"CREATE SCHEMA {psycopg.sql.Identifier(SCHEMA).as_string(None)}",
    "CREATE TABLE public.victim (id int PRIMARY KEY)",
    "INSERT INTO public.victim SELECT generate_series(1, 1000)",
]


def _q(*parts: str) -> str:
    return ".".join(psycopg.sql.Identifier(p).as_string(None) for p in parts)


def _plant(dsn: str) -> None:
    t = _q(SCHEMA, TABLE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for s in SETUP:
            conn.execute(s)
        conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, {_q(FK_COL)} int, a int, b int, note text, "
                     f"CONSTRAINT {_q(FK_NAME)} FOREIGN KEY ({_q(FK_COL)}) REFERENCES public.victim)")
        conn.execute(f"INSERT INTO {t} SELECT g, 1 + g % 1000, g % 7, g, md5(g::text) "
                     "FROM generate_series(1, 20000) g")
        conn.execute(f"CREATE INDEX {_q(DUP)} ON {t} (a)")
        conn.execute(f"CREATE INDEX {_q(COVER)} ON {t} (a, b)")
        conn.execute(f"CREATE INDEX {_q(UNUSED)} ON {t} (note)")
        conn.execute(f"DELETE FROM {t} WHERE id > 10")
        conn.execute(f"VACUUM ANALYZE {t}")  # the table shrinks, its indexes keep their pages: bigger, bloated
        conn.execute(f"INSERT INTO {t} (id, a) VALUES (20001, 1), (20002, 1)")
        try:
            conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {_q(INVALID)} ON {t} (a)")
        except psycopg.errors.UniqueViolation:
            pass  # leaves an INVALID index behind
        conn.execute(f"CREATE TABLE {_q(SCHEMA, 'seqs')} ({_q(SEQ_COL)} serial PRIMARY KEY)")
        conn.execute(f"SELECT setval(pg_get_serial_sequence({psycopg.sql.Literal(_q(SCHEMA, 'seqs')).as_string(None)},"
                     f" {psycopg.sql.Literal(SEQ_COL).as_string(None)}), 2000000000)")


def _names(node) -> list[str]:
    """The raw name parts of a DROP/REINDEX/CREATE INDEX target, as PostgreSQL reads the statement."""
    from pglast import ast

    if isinstance(node, ast.DropStmt):
        return [s.sval for s in node.objects[0]]
    if isinstance(node, ast.ReindexStmt):
        return [node.relation.schemaname, node.relation.relname]
    if isinstance(node, ast.IndexStmt):
        return [node.relation.schemaname, node.relation.relname]
    raise AssertionError(f"unexpected statement {type(node).__name__}")


def _statements(fix: str) -> list:
    return [s.stmt for s in parse_sql(fix)]


def _check_fix(kind: str, index: str | None, fix: str) -> None:
    stmts = _statements(fix)
    if kind == "invalid":
        assert len(stmts) == 2, fix
        assert type(stmts[0]).__name__ == "DropStmt" and _names(stmts[0]) == [SCHEMA, index], fix
        assert type(stmts[1]).__name__ == "IndexStmt" and stmts[1].concurrent and stmts[1].idxname == index, fix
        assert _names(stmts[1]) == [SCHEMA, TABLE], fix
        return
    assert len(stmts) == 1, fix
    (st,) = stmts
    if kind == "fk_without_index":
        assert type(st).__name__ == "IndexStmt" and st.concurrent, fix
        assert _names(st) == [SCHEMA, TABLE], fix
        assert [e.name for e in st.indexParams] == [FK_COL], fix
    elif kind in ("duplicate", "unused"):
        assert type(st).__name__ == "DropStmt" and st.concurrent and _names(st) == [SCHEMA, index], fix
    else:
        assert type(st).__name__ == "ReindexStmt" and _names(st) == [SCHEMA, index], fix


def test_index_health_fixes_are_one_statement_on_the_named_object(dsn) -> None:
    login = owner_login(dsn)
    _plant(login)
    db = Database(Settings.load(dsn=login, env={}))
    try:
        health = index_health(db, schema=SCHEMA, unused_min_bytes=1, bloat_min_bytes=1)
    finally:
        db.close()
    raw = {_q(SCHEMA, n): n for n in (DUP, COVER, INVALID, UNUSED, f"{TABLE}_pkey")}
    kinds = {f.kind for f in health.findings}
    assert {"duplicate", "invalid", "unused", "fk_without_index", "bigger_than_table", "bloat"} <= kinds, kinds
    for f in health.findings:
        assert f.table == _q(SCHEMA, TABLE)
        _check_fix(f.kind, raw[f.index] if f.index else None, f.fix)
    dup = next(f for f in health.findings if f.kind == "duplicate")
    assert dup.index == _q(SCHEMA, DUP) and dup.evidence["covered_by"] == _q(SCHEMA, COVER)


def test_health_fixes_hold_no_statement_or_shell_command_a_name_wrote(dsn, tmp_path) -> None:
    login = owner_login(dsn)
    _plant(login)
    db = Database(Settings.load(dsn=login, env={}))
    try:
        report = health_check(db, HealthThresholds(sequence_warning_pct=1, sequence_critical_pct=99),
                              only=["invalid_indexes", "index_health", "sequences"])
    finally:
        db.close()
    checks = {c.check: c for c in report.checks}
    invalid = _statements(checks["invalid_indexes"].fix)
    assert [type(s).__name__ for s in invalid] == ["DropStmt", "IndexStmt"]
    assert _names(invalid[0]) == [SCHEMA, INVALID]
    for st in _statements(checks["index_health"].fix):  # several findings' fixes, one statement each
        assert type(st).__name__ in ("DropStmt", "IndexStmt", "ReindexStmt"), st
        assert _names(st)[0] == SCHEMA
    # the sequence fix names a shell command: run its arguments through a real shell, as someone pasting it would
    fix = checks["sequences"].fix
    m = re.search(r"agent19 pattern change_column_type (.*?) --type bigint\)", fix, re.S)
    assert m, fix
    out = subprocess.run(["bash", "-c", f"printf '%s\\n' {m[1]}"], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout
    table, flag, column = out.split("\n")[:3]
    assert (parse_name(table), flag, column) == ([SCHEMA, "seqs"], "--column", SEQ_COL)
    alter = re.search(r"then (ALTER SEQUENCE .*? AS bigint)", fix, re.S)[1]
    (st,) = _statements(alter)
    assert st.sequence.schemaname == SCHEMA


NO_DOT = "x; DROP TABLE victim; --"


@pytest.mark.parametrize(("statement", "exact"), [
    (f"DROP TABLE {_q(SCHEMA, TABLE)}", True),
    (f"DELETE FROM {_q(SCHEMA, NO_DOT)}", True),
    (f"UPDATE {_q(NO_DOT)} SET a = 1", True),
    (f"ALTER TABLE {_q(SCHEMA, TABLE)} DROP COLUMN {_q(NO_DOT)}", True),
    (f"DELETE FROM {_q(SCHEMA, DUP)}", False),
    (f"ALTER TABLE {_q(DUP)} DROP COLUMN {_q(FK_COL)}", False),
])
def test_confirmation_alternatives_are_one_statement_on_the_statement_s_object(statement: str, exact: bool) -> None:
    """The alternatives a challenge offers, built from the names in the model's statement: always one statement;
    on the same object where no part of the name holds a dot (detect's targets keep a raw ``schema.name``, so a
    dot inside a part is ambiguous there: still quoted, never statement text)."""
    target = parse_sql(statement)[0].stmt
    alts = alternatives(detect(statement)[0], [])
    assert alts
    want = ([s.sval for s in target.objects[0]] if type(target).__name__ == "DropStmt"
            else [p for p in (target.relation.schemaname, target.relation.relname) if p])
    for alt in alts:
        (st,) = _statements(alt.sql.replace("<condition>", "true").replace("SET ...", "SET a = 1"))
        rel = getattr(st, "relation", None) or (st.relations[0] if getattr(st, "relations", None) else None)
        got = [s.sval for s in st.objects[0]] if rel is None else [p for p in (rel.schemaname, rel.relname) if p]
        assert got == want or not exact, alt.sql
