"""Dry runs touch nothing outside the target database: cluster-wide statements are never run (neither in
the target's transaction nor in a scratch database), escapes are refused, and ``target_unchanged`` compares
cluster state too. Through the real MCP client, on a real server, with a superuser fingerprint of the
whole cluster taken before and after."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from agent19.migrate.dryrun.scratch import list_scratch
from tests.conftest import need, run_sql, session_settings
from tests.mcp_client import stdio_session
from tools.throwaway import ThrowawayServer

# everything a superuser can read about the cluster, compared byte for byte (scratch databases excluded:
# they come and go while the dry run runs; datfrozenxid/datminmxid move by themselves)
FINGERPRINT = {
    "authid": "SELECT row_to_json(a)::text FROM pg_authid a ORDER BY oid",
    "members": "SELECT row_to_json(m)::text FROM pg_auth_members m ORDER BY roleid, member",
    "role_settings": "SELECT row_to_json(s)::text FROM pg_db_role_setting s ORDER BY setdatabase, setrole",
    "databases": r"""SELECT row_to_json(d)::text FROM (SELECT oid, datname, datdba, encoding, datistemplate,
                       datallowconn, datconnlimit, dattablespace, datacl FROM pg_database
                       WHERE datname NOT LIKE 'agent19\_scratch\_%') d ORDER BY oid""",
    "tablespaces": "SELECT row_to_json(t)::text FROM pg_tablespace t ORDER BY oid",
    "slots": "SELECT row_to_json(s)::text FROM (SELECT slot_name, slot_type, plugin, database, restart_lsn, "
             "confirmed_flush_lsn FROM pg_replication_slots) s ORDER BY 1",
    "subscriptions": "SELECT row_to_json(s)::text FROM pg_subscription s ORDER BY oid",
    "shdescription": "SELECT row_to_json(s)::text FROM pg_shdescription s ORDER BY objoid, classoid",
    "parameter_acl": "SELECT row_to_json(p)::text FROM pg_parameter_acl p ORDER BY oid",
    "auto_conf": "SELECT pg_read_file('postgresql.auto.conf')",
    "origins": "SELECT row_to_json(o)::text FROM pg_replication_origin o ORDER BY 1",
}


def cluster_fingerprint(admin_dsn: str) -> dict[str, list[str]]:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        return {k: [r[0] for r in conn.execute(q).fetchall()] for k, q in FINGERPRINT.items()}


@pytest.fixture
def cluster(pg: ThrowawayServer, dsn: str):
    """Roles, a second database and a publication-ready table the migrations below name (unique per test)."""
    need(pg.major >= 15, "GRANT SET ON PARAMETER and pg_parameter_acl need PostgreSQL 15+")
    tag = uuid.uuid4().hex[:8]
    names = {"tag": tag, "app": f"app_{tag}", "victim": f"victim_{tag}", "other": f"other_{tag}",
             "db": psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]}
    run_sql(pg.dsn, f"CREATE ROLE {names['app']} LOGIN; CREATE ROLE {names['victim']}; "
                    f"GRANT pg_monitor TO {names['app']}")
    run_sql(pg.dsn, f"CREATE DATABASE {names['other']}")
    run_sql(dsn, f"CREATE TABLE items (id int PRIMARY KEY, v text); "
                 f"CREATE TABLE victim_owned (id int); ALTER TABLE victim_owned OWNER TO {names['victim']}")
    yield names
    run_sql(pg.dsn, f"DROP DATABASE IF EXISTS {names['other']} WITH (FORCE)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {names['victim']}, {names['app']}")
    run_sql(pg.dsn, f"DROP ROLE IF EXISTS {names['app']}; DROP ROLE IF EXISTS {names['victim']}")


def cluster_migration(n: dict[str, str], tmp: str) -> list[tuple[str, str]]:
    """(expected outcome, statement): every cluster-wide kind, hidden ones, and per-database ones that run."""
    app, victim, db, other, tag = n["app"], n["victim"], n["db"], n["other"], n["tag"]
    return [
        ("ran", "CREATE TABLE extra (id int)"),
        ("cluster", f"CREATE ROLE evil_{tag} SUPERUSER LOGIN PASSWORD 'pw-{tag}'"),
        ("cluster", f"CREATE USER evil_user_{tag}"),
        ("cluster", f"CREATE GROUP evil_group_{tag}"),
        ("cluster", f"ALTER ROLE {app} SUPERUSER CREATEDB"),
        ("cluster", f"ALTER ROLE {app} PASSWORD 'changed'"),
        ("cluster", f"ALTER ROLE {app} SET work_mem = '64MB'"),
        ("cluster", f"ALTER ROLE {app} IN DATABASE {db} SET work_mem = '64MB'"),
        ("cluster", f"ALTER ROLE {victim} RENAME TO renamed_{tag}"),
        ("cluster", f"GRANT pg_read_server_files TO {app}"),
        ("cluster", f"REVOKE pg_monitor FROM {app}"),
        ("cluster", f"ALTER DATABASE {db} SET work_mem = '32MB'"),
        ("cluster", f"ALTER DATABASE {db} CONNECTION LIMIT 7"),
        ("cluster", f"ALTER DATABASE {other} RENAME TO renamed_db_{tag}"),
        ("cluster", f"ALTER DATABASE {db} OWNER TO {app}"),
        ("cluster", f"GRANT CREATE ON DATABASE {db} TO {app}"),
        ("cluster", f"GRANT SET ON PARAMETER work_mem TO {app}"),
        ("cluster", f"COMMENT ON ROLE {app} IS 'owned'"),
        ("cluster", f"CREATE TABLESPACE ts_{tag} LOCATION '{tmp}'"),
        ("cluster", "ALTER SYSTEM SET work_mem = '99MB'"),
        ("cluster", f"CREATE DATABASE new_{tag}"),
        ("cluster", f"DROP DATABASE {other}"),
        ("cluster", f"REASSIGN OWNED BY {victim} TO {app}"),
        ("cluster", f"DROP OWNED BY {victim}"),
        ("cluster", f"DROP ROLE {victim}"),
        ("cluster", f"CREATE SUBSCRIPTION sub_{tag} CONNECTION 'host=127.0.0.1 dbname=none' PUBLICATION p "
                    "WITH (connect = false)"),
        # slots through functions (a direct call is refused before anything runs: see below)
        ("ran", f"CREATE FUNCTION slots_{tag}() RETURNS void LANGUAGE sql AS $$ SELECT "
                f"pg_create_physical_replication_slot('phys_{tag}'); SELECT "
                f"pg_create_logical_replication_slot('logi_{tag}', 'test_decoding') $$"),
        ("refused", f"SELECT slots_{tag}()"),
        # what the statement's text does not show, the server does: a shared catalog written
        ("hidden", f"DO $$ BEGIN EXECUTE 'CREATE ROLE hidden_' || '{tag}' || ' SUPERUSER'; END $$"),
        ("ran", f"CREATE FUNCTION promote_{tag}() RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
                f"EXECUTE 'ALTER ROLE {app} ' || 'SUPERUSER'; END $$"),
        ("hidden", f"SELECT promote_{tag}()"),
        ("ran", "CREATE PUBLICATION pub_items FOR TABLE items"),  # per database: it runs, and rolls back
        ("ran", "INSERT INTO items VALUES (1, 'a')"),
    ]


# the statements marked "hidden" build their SQL at run time: a dry run does not run them unless the operator
# opted in (agent19.safety.trial); opted in, the server's locks on shared catalogs still catch them
OPTED_IN = ("--allow-unreadable-code",)


async def _call(dsn: str, tmp_path, statements: list[str], *flags: str):
    path = tmp_path / "0001_cluster.up.sql"
    path.write_text(";\n".join(statements) + ";\n")
    async with stdio_session("--dsn", dsn, "--mode", "dry-run", *flags) as session:
        # every statement is checked: the whole result (the default one is sized for a model)
        return await session.call_tool("test_migration", {"files": [str(path)], "detail": "full"})


async def _dry_run(dsn: str, tmp_path, statements: list[str], *flags: str) -> dict:
    result = await _call(dsn, tmp_path, statements, *flags)
    assert not result.is_error, result.content
    return result.structured_content


async def _refused(dsn: str, tmp_path, statement: str, why: str) -> None:
    """A statement whose text calls an escaping function: the choke point refuses the whole call before
    anything runs, or (library path) the dry run refuses that statement; either way it never runs."""
    result = await _call(dsn, tmp_path, [statement, "CREATE TABLE after_refusal (id int)"])
    if result.is_error:
        assert why in result.content[0].text, result.content
        return
    res = result.structured_content["statements"][0]
    assert res["ran_in"] == "skipped" and why in (res["error"] or {}).get("message", ""), res
    assert result.structured_content["passed"] is False


@pytest.mark.parametrize("with_scratch", [False, True], ids=["transaction-only", "with-scratch-database"])
async def test_every_cluster_wide_kind_leaves_the_cluster_byte_for_byte(pg, dsn, cluster, tmp_path, with_scratch):
    plan = cluster_migration(cluster, str(tmp_path))
    if with_scratch:  # a statement that needs a scratch database: earlier statements are replayed there
        plan.append(("scratch", "CREATE INDEX CONCURRENTLY items_v ON items (v)"))
    before = cluster_fingerprint(pg.dsn)
    r = await _dry_run(dsn, tmp_path, [sql for _, sql in plan], *OPTED_IN)
    after = cluster_fingerprint(pg.dsn)
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert list_scratch(pg.dsn) == []

    for (outcome, sql), res in zip(plan, r["statements"], strict=True):
        where = (sql, res["ran_in"], res["note"], res["error"])
        if outcome == "cluster":
            assert res["ran_in"] == "skipped" and res["note"].startswith("acts on the whole server"), where
            assert " would " in res["note"] and res["error"] is None, where
        elif outcome == "hidden":
            assert res["ran_in"] == "skipped" and "wrote pg_authid" in res["note"], where
        elif outcome == "refused":
            assert res["ran_in"] == "skipped" and res["error"]["message"].startswith("refused in a dry run"), where
        elif outcome == "scratch":
            assert res["ran_in"] == "scratch" and res["error"] is None, where
        else:
            assert res["ran_in"] == "transaction" and res["error"] is None, where
    if with_scratch:
        assert r["scratch"]["dropped"] is True
        assert not any("wrote" in n for n in r["scratch"]["notes"])  # nothing reached a shared catalog there
    changed = [f for f in r["findings"] if f["kind"] == "target_changed" and f["severity"] == "error"]
    # only what the rolled-back INSERT left (r27 k06: measured, said): items grown — and, with the stand-in CREATE
    # INDEX, its first row count (info) —, nothing of the cluster
    left = {(d["kind"], d["severity"]) for d in r["target_differences"]}
    assert not changed and left <= {("size", "warning"), ("statistics", "info")}, r["target_differences"]
    not_run = [f for f in r["findings"] if f["kind"] == "skipped" and f["message"].startswith("not run")]
    assert len(not_run) == sum(o in ("cluster", "hidden") for o, _ in plan)
    assert r["passed"] is False  # the replication slots were refused: the migration was not fully tried
    tag = cluster["tag"]
    for direct in (f"SELECT pg_create_physical_replication_slot('phys_{tag}')",
                   f"SELECT pg_create_logical_replication_slot('logi_{tag}', 'test_decoding')"):
        await _refused(dsn, tmp_path, direct, "acts outside the transaction")
    assert cluster_fingerprint(pg.dsn) == before


async def test_dblink_and_postgres_fdw_are_refused_directly_and_through_functions_views_triggers(pg, dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'dblink'").fetchone():
            need(False, "the dblink extension (contrib) is not installed")
        conn.execute("CREATE EXTENSION dblink")
        conn.execute("CREATE TABLE marks (v text)")
    tag = uuid.uuid4().hex[:8]
    remote = f"'{dsn}'"
    # an existing function and a view in the target that reach another session through dblink
    run_sql(dsn, f"CREATE FUNCTION writes_remotely() RETURNS text LANGUAGE sql AS $$ SELECT dblink_exec({remote}, "
                 f"'INSERT INTO marks VALUES (''fn'')') $$; CREATE FUNCTION wrapper() RETURNS text LANGUAGE sql "
                 "AS $$ SELECT writes_remotely() $$; CREATE VIEW remote_view AS SELECT wrapper() AS w; "
                 "CREATE TABLE audited (id int); CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                 "BEGIN PERFORM writes_remotely(); RETURN NEW; END $$; "
                 "CREATE TRIGGER audited_remote AFTER INSERT ON audited FOR EACH ROW EXECUTE FUNCTION audit()")
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    run_sql(dsn, f"CREATE EXTENSION postgres_fdw; CREATE SERVER loop FOREIGN DATA WRAPPER postgres_fdw OPTIONS "
                 f"(host '{params['host']}', port '{params['port']}', dbname '{params['dbname']}'); "
                 "CREATE USER MAPPING FOR CURRENT_USER SERVER loop; "
                 "CREATE FOREIGN TABLE remote_marks (v text) SERVER loop OPTIONS (table_name 'marks'); "
                 "CREATE SCHEMA imported")
    before = cluster_fingerprint(pg.dsn)
    await _refused(dsn, tmp_path, f"SELECT dblink_exec({remote}, 'CREATE ROLE via_dblink_{tag}')", "dblink_exec")
    await _refused(dsn, tmp_path, f"SELECT public.dblink_exec({remote}, 'INSERT INTO marks VALUES (''direct'')')",
                   "dblink_exec")
    statements = [
        "SELECT wrapper()",
        "SELECT * FROM remote_view",
        f"CREATE FUNCTION later() RETURNS text LANGUAGE sql AS $$ SELECT dblink_exec({remote}, "
        "'INSERT INTO marks VALUES (''later'')') $$",
        "SELECT later()",
        "INSERT INTO marks VALUES ('rolled back')",
        "INSERT INTO audited VALUES (1)",  # its trigger reaches dblink
        "INSERT INTO remote_marks VALUES ('through postgres_fdw')",
        "IMPORT FOREIGN SCHEMA public LIMIT TO (marks) FROM SERVER loop INTO imported",
    ]
    r = await _dry_run(dsn, tmp_path, statements)
    refused = [s["index"] for s in r["statements"] if s["error"] and "refused in a dry run" in s["error"]["message"]]
    assert refused == [0, 1, 3, 5, 6, 7], [(s["sql"], s["note"]) for s in r["statements"]]
    # the database has a view and a trigger that reach dblink: the server runs them on its own, whatever a
    # statement names, so a statement that names neither is not run either ("could not test", not a failure)
    plain = r["statements"][4]
    assert plain["ran_in"] == "skipped" and plain["error"] is None, plain
    assert "a dry run on this database cannot contain it" in (plain["untested"] or ""), plain
    assert "trigger audited_remote on table public.audited" in plain["untested"], plain
    assert r["statements"][2]["ran_in"] == "transaction" and r["statements"][2]["error"] is None  # CREATE FUNCTION
    assert r["passed"] is False
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM marks").fetchone()[0] == 0
    assert cluster_fingerprint(pg.dsn) == before


async def test_target_unchanged_is_false_when_the_cluster_changed_anyway(pg, dsn, tmp_path):
    """A slot created through SQL built from strings escapes every check that reads text: the cluster
    fingerprint still sees it, and the dry run says the target did not stay unchanged."""
    tag = uuid.uuid4().hex[:8]
    run_sql(dsn, "CREATE FUNCTION sneaky(name text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
                 "EXECUTE 'SELECT pg_create_physical_' || 'replication_slot($1)' USING name; END $$")
    try:
        r = await _dry_run(dsn, tmp_path, [f"SELECT sneaky('escaped_{tag}')"], *OPTED_IN)
        assert r["target_unchanged"] is False and r["passed"] is False
        slot = [d for d in r["target_differences"] if d["kind"] == "replication_slot"]
        assert slot and slot[0]["object"] == f"escaped_{tag}" and slot[0]["change"] == "added"
        assert any(f["kind"] == "target_changed" and "cluster" in f["message"] for f in r["findings"])
    finally:
        run_sql(pg.dsn, f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        f"WHERE slot_name = 'escaped_{tag}'")


@pytest.mark.parametrize("with_scratch", [False, True], ids=["transaction-only", "with-scratch-database"])
async def test_an_application_role_with_createrole_leaves_the_cluster_as_it_was(pg, dsn, tmp_path, with_scratch):
    """As the user runs it: a non-superuser owner of the database that may create roles and databases."""
    tag = uuid.uuid4().hex[:8]
    owner, helper = f"owner_{tag}", f"helper_{tag}"
    db = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    run_sql(pg.dsn, f"CREATE ROLE {owner} LOGIN CREATEROLE CREATEDB; CREATE ROLE {helper}; "
                    f"ALTER DATABASE {db} OWNER TO {owner}")  # PostgreSQL 15: public belongs to the database owner
    run_sql(dsn, f"CREATE TABLE items (id int PRIMARY KEY, v text); ALTER TABLE items OWNER TO {owner}")
    as_owner = psycopg.conninfo.make_conninfo(dsn, user=owner)
    plan = [
        ("cluster", f"CREATE ROLE made_{tag} LOGIN"),
        ("cluster", f"ALTER ROLE {helper} SET work_mem = '8MB'"),
        ("cluster", f"GRANT {helper} TO {owner}"),
        ("cluster", f"ALTER DATABASE {db} SET work_mem = '16MB'"),
        ("cluster", f"CREATE DATABASE made_db_{tag}"),
        ("hidden", f"DO $$ BEGIN EXECUTE 'CREATE ROLE hidden_' || '{tag}'; END $$"),
        ("ran", "ALTER TABLE items ADD COLUMN w int"),
    ]
    if with_scratch:
        plan.append(("scratch", "CREATE INDEX CONCURRENTLY items_w ON items (w)"))
    try:
        before = cluster_fingerprint(pg.dsn)
        r = await _dry_run(as_owner, tmp_path, [sql for _, sql in plan], *OPTED_IN)
        after = cluster_fingerprint(pg.dsn)
        assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        for (outcome, sql), res in zip(plan, r["statements"], strict=True):
            where = (sql, res["ran_in"], res["note"], res["error"])
            if outcome == "cluster":
                assert res["ran_in"] == "skipped" and res["note"].startswith("acts on the whole server"), where
            elif outcome == "hidden":
                assert res["ran_in"] == "skipped" and "wrote pg_authid" in res["note"], where
            else:
                assert res["ran_in"] == outcome.replace("ran", "transaction") and res["error"] is None, where
        assert r["target_unchanged"] is True and r["passed"] is True, r["findings"]
        if with_scratch:
            assert r["scratch"] is not None and r["scratch"]["dropped"] is True
        # what this login could not read of the cluster is said, not silently assumed equal
        assert any("pg_authid" in f["message"] and f["severity"] == "info" for f in r["findings"]), r["findings"]
    finally:
        run_sql(pg.dsn, f"ALTER DATABASE {db} OWNER TO postgres")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {owner}, {helper}")
        run_sql(pg.dsn, f"DROP ROLE {owner}; DROP ROLE {helper}")



def test_library_dry_run_leaves_sequences_alone_and_refuses_other_escapes_per_statement(dsn):
    """Called as a library (no tool in front), the engine screens each statement itself: a sequence call
    is not run and not a failure ('could not test'); any other escape fails the run; the rest runs."""
    from agent19.db.connection import Database
    from agent19.migrate.dryrun.run import dry_run
    from agent19.migrate.parse import parse_sql

    run_sql(dsn, "CREATE SEQUENCE s; SELECT setval('s', 41)")
    db = Database(session_settings(dsn=dsn, mode="dry-run"))
    try:
        r = dry_run(db, parse_sql("SELECT setval('s', 1000); SELECT nextval('s'); "
                                  "SELECT setval('s', 5), pg_terminate_backend(pg_backend_pid()); "
                                  "CREATE TABLE t (id int)"))
        first, second, mixed, table = r.statements
        for res in (first, second):
            assert res.ran_in == "skipped" and res.untested and res.untested.startswith("not run: ")
            assert res.error is None
        assert mixed.error is not None and mixed.error.message.startswith("refused in a dry run: pg_terminate"), mixed
        assert table.ran_in == "transaction" and table.error is None
        assert not r.passed and r.summary.startswith("FAILED")
        r = dry_run(db, parse_sql("SELECT setval('s', 1000); CREATE TABLE t (id int)"))
        assert r.passed and r.summary.startswith("COULD NOT TEST"), r.summary
    finally:
        db.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT last_value FROM s").fetchone()[0] == 41  # the sequence never moved


@pytest.mark.parametrize("concurrently", [False, True], ids=["in-transaction", "in-scratch-database"])
async def test_rollback_check_never_runs_cluster_wide_statements_either(pg, dsn, concurrently):
    tag = uuid.uuid4().hex[:8]
    run_sql(dsn, "CREATE TABLE items (id int PRIMARY KEY, v text)")
    index = "CREATE INDEX CONCURRENTLY" if concurrently else "CREATE INDEX"
    up = (f"CREATE ROLE rb_{tag} SUPERUSER; ALTER ROLE postgres SET work_mem = '77MB'; "
          f"{index} items_v ON items (v); "
          f"DO $$ BEGIN EXECUTE 'CREATE ROLE rb_hidden_' || '{tag}'; END $$")
    down = f"DROP INDEX {'CONCURRENTLY ' if concurrently else ''}items_v; DROP ROLE rb_{tag}"
    before = cluster_fingerprint(pg.dsn)
    async with stdio_session("--dsn", dsn, "--mode", "dry-run", *OPTED_IN) as session:
        result = await session.call_tool("verify_rollback", {"up_sql": up, "down_sql": down})
    assert not result.is_error, result.content
    r = result.structured_content
    assert r["where"] == ("scratch" if concurrently else "transaction")
    assert cluster_fingerprint(pg.dsn) == before
    # the hidden role creation was caught and undone; it makes the rollback unverifiable, and says why
    assert r["verified"] is False and any("wrote pg_authid" in e["message"] for e in r["errors"]), r
    assert list_scratch(pg.dsn) == []


@pytest.mark.parametrize("measure_blocking", [False, True], ids=["replayed", "watched-for-blocking"])
async def test_a_statement_that_acts_only_in_the_scratch_database_cannot_commit_cluster_changes(
        pg, dsn, tmp_path, measure_blocking):
    """Harmless in the target's transaction, a role factory in the scratch database: caught there too."""
    tag = uuid.uuid4().hex[:8]
    run_sql(dsn, "CREATE TABLE items (id int PRIMARY KEY, v text)")
    sneaky = (f"DO $$ BEGIN IF current_database() LIKE 'agent19\\_scratch\\_%' THEN "
              f"EXECUTE 'CREATE ROLE sneak_{tag} SUPERUSER'; END IF; END $$")
    path = tmp_path / "0001.up.sql"
    path.write_text(f"{sneaky};\nCREATE INDEX CONCURRENTLY items_v ON items (v);\n")
    before = cluster_fingerprint(pg.dsn)
    async with stdio_session("--dsn", dsn, "--mode", "dry-run", *OPTED_IN) as session:
        result = await session.call_tool("test_migration", {"files": [str(path)], "measure_blocking": measure_blocking})
    assert not result.is_error, result.content
    r = result.structured_content
    assert cluster_fingerprint(pg.dsn) == before
    assert r["statements"][0]["ran_in"] == "transaction"  # in the target it did nothing
    assert any("statement 1" in n and "cluster-wide" in n for n in r["scratch"]["notes"]), r["scratch"]["notes"]
    assert r["target_unchanged"] is True
