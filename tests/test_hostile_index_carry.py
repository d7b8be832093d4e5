"""Hostile review of the index carry of the column-replacing patterns: run on a real server, as the owner role."""

from __future__ import annotations

import psycopg
import pytest

from agent19.errors import InputError
from agent19.migrate.patterns.columns import change_column_type
from agent19.migrate.patterns.live import read_column
from agent19.migrate.patterns.rename import rename_column
from agent19.migrate.patterns.sqlnames import qname
from tests.conftest import owner_login, run_sql
from tests.conftest import plan_changes as _plan

_executed: list[str] = []


def _run(dsn: str, sqls: list[str]) -> None:
    _executed.clear()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in sqls:
            conn.execute(sql)  # type: ignore[arg-type]
            _executed.append(sql)


def _indexes(dsn: str, table: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT c.relname, pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' "
                                 "ELSE ' INVALID' END FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                 "WHERE i.indrelid = to_regclass(%s)", (qname(table),)).fetchall())


def _cons(dsn: str, table: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                 "WHERE conrelid = to_regclass(%s)", (qname(table),)).fetchall())


def _pattern_sql(dsn: str, kind: str, table: str, column: str, arg: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        live = read_column(conn, table, column)
    p = rename_column(table, column, arg, live=live, pg_version=15) if kind == "rename" else \
        change_column_type(table, column, arg, live=live, pg_version=15)
    out = []
    for ph in p.phases:
        if ph.transactional and all(s.in_transaction for s in ph.operations) and len(ph.operations) > 1:
            out.append("BEGIN")
            out += [s.sql for s in ph.operations]
            out.append("COMMIT")
        else:
            out += [s.sql for s in ph.operations]
        if ph.backfill:
            b = ph.backfill
            out.append(f"UPDATE {qname(b.table)} SET {b.set} WHERE {b.where}")
    return out


def _after(dsn: str, sqls: list[str], table: str = "t") -> dict[str, str]:
    _run(dsn, sqls)
    return _indexes(dsn, table)


def test_two_63_byte_index_names_get_two_temporary_indexes(dsn: str) -> None:
    """Both names trimmed to the same temporary name: the second build was skipped (IF NOT EXISTS) and the contract
    failed after the irreversible DROP COLUMN, the second index lost."""
    owner = owner_login(dsn)
    a, b = "i" * 62 + "a", "i" * 62 + "b"
    run_sql(owner, f"CREATE TABLE t (id int PRIMARY KEY, nick text); CREATE INDEX {a} ON t (nick); "
                   f"CREATE INDEX {b} ON t (lower(nick))")
    got = _after(owner, _pattern_sql(owner, "rename", "t", "nick", "name"))
    assert got[a] == f"CREATE INDEX {a} ON public.t USING btree (name)", got
    assert got[b] == f"CREATE INDEX {b} ON public.t USING btree (lower(name))", got


def test_a_relation_already_named_like_the_temporary_index_is_not_taken_for_it(dsn: str) -> None:
    """An index already called t_nick_a19new (on another column): the build was skipped silently and the contract
    gave that unrelated index the old index's name — the new column had no index."""
    owner = owner_login(dsn)
    run_sql(owner, "CREATE TABLE t (id int PRIMARY KEY, nick text, x int); CREATE INDEX t_nick ON t (nick); "
                   "CREATE INDEX t_nick_a19new ON t (x)")
    sqls = _pattern_sql(owner, "rename", "t", "nick", "name")
    try:
        got = _after(owner, sqls)
    except psycopg.errors.DuplicateTable:  # failing loudly in the build phase, before the deploy, is fine
        assert not any("DROP COLUMN nick" in s for s in _executed), "failed only after the old column was dropped"
        return
    assert "(name)" in got.get("t_nick", ""), got
    assert got.get("t_nick_a19new") == "CREATE INDEX t_nick_a19new ON public.t USING btree (x)", got


def test_a_change_list_rename_leaves_an_index_on_a_column_whose_name_contains_it_alone(dsn: str) -> None:
    """Renaming name: the index on lower(username) was taken for one on name (a substring test), built a second
    time and the contract failed after the DROP COLUMN (relation t_uname already exists)."""
    owner = owner_login(dsn)
    run_sql(owner, "CREATE TABLE t (id int PRIMARY KEY, name text, username text); "
                   "CREATE INDEX t_uname ON t (lower(username)); CREATE INDEX t_name ON t (name)")
    plan = _plan(owner, [{"type": "rename", "table": "t", "column": {"name": "name", "type": "text"},
                          "new_name": "nm"}])
    assert not any("t_uname" in op.sql for op in plan.operations), [op.sql for op in plan.operations]
    got = _after(owner, [op.sql for op in plan.operations])
    assert got == {"t_pkey": "CREATE UNIQUE INDEX t_pkey ON public.t USING btree (id)",
                   "t_uname": "CREATE INDEX t_uname ON public.t USING btree (lower(username))",
                   "t_name": "CREATE INDEX t_name ON public.t USING btree (nm)"}, got


def test_a_change_list_rename_carries_partial_and_include_indexes_on_the_column(dsn: str) -> None:
    """Renaming deleted_at: an index WHERE deleted_at IS NULL, one INCLUDE (deleted_at) and a UNIQUE … INCLUDE
    (deleted_at) were neither carried nor warned about: the contract's DROP COLUMN dropped them silently."""
    owner = owner_login(dsn)
    run_sql(owner, "CREATE TABLE t (id int PRIMARY KEY, deleted_at timestamptz, x int, "
                   "CONSTRAINT t_x_key UNIQUE (x) INCLUDE (deleted_at)); "
                   "CREATE INDEX t_live ON t (x) WHERE deleted_at IS NULL; "
                   "CREATE INDEX t_inc ON t (id) INCLUDE (deleted_at)")
    plan = _plan(owner, [{"type": "rename", "table": "t", "column": {"name": "deleted_at", "type": "timestamptz"},
                          "new_name": "removed_at"}])
    got = _after(owner, [op.sql for op in plan.operations])
    assert got == {"t_pkey": "CREATE UNIQUE INDEX t_pkey ON public.t USING btree (id)",
                   "t_x_key": "CREATE UNIQUE INDEX t_x_key ON public.t USING btree (x) INCLUDE (removed_at)",
                   "t_live": "CREATE INDEX t_live ON public.t USING btree (x) WHERE (removed_at IS NULL)",
                   "t_inc": "CREATE INDEX t_inc ON public.t USING btree (id) INCLUDE (removed_at)"}, got
    assert _cons(owner, "t")["t_x_key"] == "UNIQUE (x) INCLUDE (removed_at)"


def test_a_deferrable_unique_constraint_stays_deferrable_while_old_code_runs(dsn: str) -> None:
    """UNIQUE (pos) DEFERRABLE lets `UPDATE q SET pos = pos + 1` pass; the plain unique index built on the new column
    before the deploy checked each row at once, so that statement failed for the whole transition."""
    owner = owner_login(dsn)
    run_sql(owner, "CREATE TABLE q (id int PRIMARY KEY, pos int, CONSTRAINT q_pos UNIQUE (pos) DEFERRABLE); "
                   "INSERT INTO q SELECT g, g FROM generate_series(1, 50) g")
    sqls = _pattern_sql(owner, "rename", "q", "pos", "position")
    contract = next(i for i, s in enumerate(sqls) if s.startswith("DROP TRIGGER"))
    _run(owner, sqls[:contract])
    _run(owner, ["UPDATE q SET pos = pos + 1"])  # the old code, during the transition
    _run(owner, sqls[contract:])
    assert _cons(owner, "q") == {"q_pkey": "PRIMARY KEY (id)", "q_pos": "UNIQUE (\"position\") DEFERRABLE"}
    _run(owner, ["UPDATE q SET position = position + 1"])
    with pytest.raises(psycopg.errors.UniqueViolation):
        _run(owner, ["INSERT INTO q VALUES (999, 10)"])


def test_two_patterns_on_columns_of_one_index_are_refused_before_any_sql(dsn: str) -> None:
    """A rename of a and a type change of b, both in the index (a, b): each carried the index under the same
    temporary name, and each contract drops the other's copy (it is on the column the other replaces)."""
    owner = owner_login(dsn)
    run_sql(owner, "CREATE TABLE t (id int PRIMARY KEY, a text, b int); CREATE INDEX t_ab ON t (a, b)")
    with pytest.raises(InputError, match="t_ab"):
        _plan(owner, [{"type": "rename", "table": "t", "column": {"name": "a", "type": "text"}, "new_name": "a2"},
                      {"type": "modify_column", "table": "t", "column": {"name": "b", "type": "integer"},
                       "new_type": "bigint"}])


def test_the_plans_after_checks_find_the_carried_indexes_under_their_final_names(dsn: str) -> None:
    """The 'index …_a19new is valid' checks looked for the temporary names, which the contract renames back:
    after a correct run they returned nothing, and a dry run of the plan failed with one error per carried index."""
    owner = owner_login(dsn)
    run_sql(owner, "CREATE SCHEMA app; CREATE TABLE app.acc (id int PRIMARY KEY, email text UNIQUE, "
                   "pos int CONSTRAINT acc_pos UNIQUE DEFERRABLE); CREATE INDEX acc_lower ON app.acc (lower(email)); "
                   "CREATE TABLE t (id int PRIMARY KEY, nick text); CREATE INDEX t_nick ON t (nick)")
    plan = _plan(owner, [
        {"type": "rename", "table": "t", "column": {"name": "nick", "type": "text"}, "new_name": "name"},
        {"type": "rename", "table": "app.acc", "column": {"name": "email", "type": "text"}, "new_name": "mail"},
        {"type": "modify_column", "table": "app.acc", "column": {"name": "pos", "type": "integer"},
         "new_type": "bigint"}])
    _run(owner, [op.sql for op in plan.operations])
    checks = [c for c in plan.validation if c.phase == "after" and c.name.startswith("index ")]
    assert {c.name for c in checks} == {"index acc_email_key is valid", "index acc_lower is valid",
                                        "index acc_pos is valid", "index t_nick is valid"}, [c.name for c in checks]
    with psycopg.connect(owner) as conn:
        assert all(conn.execute(c.query).fetchone() == (True,) for c in checks)


@pytest.mark.parametrize("kind, column, arg", [("rename", "pos", "position"), ("type", "pos", "bigint")])
def test_the_build_phases_rollback_leaves_the_table_as_it_was(dsn: str, kind: str, column: str, arg: str) -> None:
    owner = owner_login(dsn)
    run_sql(owner, "CREATE TABLE q (id int PRIMARY KEY, pos int CONSTRAINT q_pos UNIQUE DEFERRABLE, "
                   "CONSTRAINT q_pos_id UNIQUE (pos, id)); CREATE INDEX q_pos_idx ON q (pos) WHERE pos > 0; "
                   "INSERT INTO q SELECT g, g FROM generate_series(1, 20) g")
    before = _indexes(owner, "q"), _cons(owner, "q")
    with psycopg.connect(owner) as conn:
        live = read_column(conn, "q", column)
    p = rename_column("q", column, arg, live=live) if kind == "rename" else change_column_type("q", column, arg,
                                                                                                   live=live)
    done = []
    for ph in p.phases:
        if "swap" in ph.name:
            break
        _run(owner, [s.sql for s in ph.operations] +
             ([f"UPDATE q SET {ph.backfill.set} WHERE {ph.backfill.where}"] if ph.backfill else []))
        done.append(ph)
        if ph.deploy_after:
            break
    assert any("a19new" in s.sql for ph in done for s in ph.operations)
    for ph in reversed(done):
        _run(owner, ph.rollback)
    assert (_indexes(owner, "q"), _cons(owner, "q")) == before


@pytest.mark.parametrize("via", ["pattern", "plan"])
def test_a_partitioned_tables_indexes_are_named_not_carried_instead_of_a_build_that_cannot_run(
        dsn: str, via: str) -> None:
    """CREATE INDEX CONCURRENTLY cannot build on a partitioned table (and ON ONLY builds an empty shell): the
    build phase failed on every partitioned table whose column had an index."""
    owner = owner_login(dsn)
    run_sql(owner, "CREATE TABLE p (id int, nick text, CONSTRAINT p_id_nick UNIQUE (id, nick)) PARTITION BY RANGE (id);"
                   "CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100); CREATE INDEX p_nick ON p (nick); "
                   "INSERT INTO p SELECT g, g::text FROM generate_series(1, 50) g")
    if via == "plan":
        plan = _plan(owner, [{"type": "rename", "table": "p", "column": {"name": "nick", "type": "text"},
                              "new_name": "name"}])
        sqls = [op.sql for op in plan.operations]
        notes = [f.message for f in plan.findings if f.rule == "not-carried"]
    else:
        sqls = _pattern_sql(owner, "rename", "p", "nick", "name")
        with psycopg.connect(owner) as conn:
            notes = [n for n in rename_column("p", "nick", "name", live=read_column(conn, "p", "nick")).notes
                     if n.startswith("not carried:")]
    assert not any("CONCURRENTLY" in s and "a19new" in s for s in sqls), sqls
    assert any("p_nick" in n and "partitioned" in n for n in notes), notes
    assert any("p_id_nick" in n and "partitioned" in n for n in notes), notes
    contract = next(i for i, s in enumerate(sqls) if s.startswith("DROP TRIGGER"))
    _run(owner, sqls[:contract])  # everything before the contract runs


def test_attaching_the_deferrable_copy_waits_for_its_lock_only_briefly(dsn: str) -> None:
    """ADD CONSTRAINT … USING INDEX takes an AccessExclusiveLock: run alone without lock_timeout, it queued behind a
    long query and every read and write of the table queued behind it."""
    owner = owner_login(dsn)
    run_sql(owner, "CREATE TABLE q (id int PRIMARY KEY, pos int CONSTRAINT q_pos UNIQUE DEFERRABLE)")
    plan = _plan(owner, [{"type": "rename", "table": "q", "column": {"name": "pos", "type": "integer"},
                          "new_name": "position"}])
    sqls = [op.sql for op in plan.operations]
    at = next(i for i, s in enumerate(sqls) if "ADD CONSTRAINT q_pos_a19new" in s)
    begin = max(i for i in range(at) if sqls[i] == "BEGIN")
    assert any(s.startswith("SET LOCAL lock_timeout") for s in sqls[begin:at]), sqls[begin:at + 1]
    assert "COMMIT" in sqls[at:] and not any("CONCURRENTLY" in s for s in sqls[begin:at]), sqls
    _run(owner, sqls)
    assert _cons(owner, "q")["q_pos"] == 'UNIQUE ("position") DEFERRABLE'


@pytest.mark.parametrize("kind, arg, column", [("rename", "name", "name"), ("type", "varchar(20)", "nick")])
def test_a_replica_identity_index_is_the_replica_identity_again(dsn: str, kind: str, arg: str, column: str) -> None:
    """REPLICA IDENTITY USING INDEX t_nick_key: the contract's DROP COLUMN dropped it, and the carried index got the
    name back but not the role — a published table then refuses every UPDATE and DELETE."""
    owner = owner_login(dsn)
    run_sql(owner, "CREATE TABLE t (id int, nick text NOT NULL CONSTRAINT t_nick_key UNIQUE); "
                   "ALTER TABLE t REPLICA IDENTITY USING INDEX t_nick_key; INSERT INTO t VALUES (1, 'a')")
    _run(owner, _pattern_sql(owner, kind, "t", "nick", arg))
    assert _cons(owner, "t")["t_nick_key"] == f"UNIQUE ({column})"
    with psycopg.connect(owner) as conn:
        got = conn.execute("SELECT c.relreplident, i.indexrelid::regclass::text FROM pg_class c LEFT JOIN pg_index i "
                           "ON i.indrelid = c.oid AND i.indisreplident WHERE c.oid = 't'::regclass").fetchone()
    assert got == ("i", "t_nick_key"), got


def test_undoing_a_type_changes_swap_and_builds_gives_the_table_back(dsn: str) -> None:
    owner = owner_login(dsn)
    run_sql(owner, "CREATE TABLE q (id int NOT NULL, pos int NOT NULL CONSTRAINT q_pos UNIQUE DEFERRABLE, "
                   "CONSTRAINT q_pos_id UNIQUE (pos, id)); ALTER TABLE q REPLICA IDENTITY USING INDEX q_pos_id; "
                   "INSERT INTO q SELECT g, g FROM generate_series(1, 20) g")
    state = "SELECT relreplident, (SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = c.oid AND " \
            "indisreplident) FROM pg_class c WHERE oid = 'q'::regclass"
    with psycopg.connect(owner) as conn:
        before = _indexes(owner, "q"), _cons(owner, "q"), conn.execute(state).fetchone()
        p = change_column_type("q", "pos", "bigint", live=read_column(conn, "q", "pos"), pg_version=15)
    done = []
    for ph in p.phases:
        if "contract" in ph.name:
            break
        ops = [s.sql for s in ph.operations]
        ops = ["BEGIN", *ops, "COMMIT"] if ph.transactional and all(s.in_transaction for s in ph.operations) else ops
        _run(owner, ops + ([f"UPDATE q SET {ph.backfill.set} WHERE {ph.backfill.where}"] if ph.backfill else []))
        done.append(ph)
    for ph in reversed(done):
        _run(owner, ph.rollback)
    with psycopg.connect(owner) as conn:
        assert (_indexes(owner, "q"), _cons(owner, "q"), conn.execute(state).fetchone()) == before
