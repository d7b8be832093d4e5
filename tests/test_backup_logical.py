"""Logical backup verification on a real server with the real pg_dump / pg_restore (PostgreSQL 15)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19.config import Settings
from agent19.db.binaries import pg_binary
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.dryrun.scratch import list_scratch
from agent19.ops.backup.logical import verify_logical
from tests.conftest import need, owner_login, run_sql
from tools.throwaway import ThrowawayServer, system_versions

SHOP = r"""
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE items (
    id bigserial PRIMARY KEY, doc json, docb jsonb, tags text[], grid int[][], raw bytea, feeling mood,
    big text, price numeric(12, 3), ratio float8, at timestamptz DEFAULT now(), span interval, u uuid,
    "Odd Name" text
);
INSERT INTO items (doc, docb, tags, grid, raw, feeling, big, price, ratio, span, u, "Odd Name")
SELECT json_build_object('n', g, 'nested', json_build_array(g, 'x')), jsonb_build_object('k', g),
       ARRAY['a' || g, NULL, 'quote''s'], ARRAY[[g, g + 1], [g + 2, g + 3]], decode(md5(g::text), 'hex'),
       (ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::mood,
       CASE WHEN g % 50 = 0 THEN repeat(md5(g::text), 4000) ELSE 'short' END,   -- TOASTed every 50th row
       g * 1.125, g / 7.0, make_interval(hours => g), md5(g::text)::uuid, E'tab\there'
  FROM generate_series(1, 500) g;
CREATE TABLE log_lines (level text, line text);          -- no primary key, duplicate rows
INSERT INTO log_lines SELECT 'info', 'same line' FROM generate_series(1, 40);
INSERT INTO log_lines VALUES ('warn', NULL), ('warn', NULL);
CREATE SEQUENCE invoice_no START 1000;
SELECT nextval('invoice_no') FROM generate_series(1, 7);
CREATE SCHEMA archive;
CREATE TABLE archive.events (id int PRIMARY KEY, payload jsonb);
INSERT INTO archive.events SELECT g, jsonb_build_object('g', g) FROM generate_series(1, 30) g;
"""


def _bin(server: ThrowawayServer, tool: str) -> str:
    found = pg_binary(tool, server.major)
    need(found is not None, f"{tool} is not installed")
    return str(found)


def _db(dsn: str, mode: str = "dry-run") -> Database:
    return Database(Settings.load(dsn=dsn, mode=mode))


@pytest.fixture
def shop(dsn: str) -> str:
    """The shop, owned by an application role (no superuser, CREATEDB): as an application connects, and the
    login a scratch-database restore accepts (a superuser's would run the dump's functions as one)."""
    owner = owner_login(dsn, "shop")
    run_sql(dsn, f"ALTER ROLE {conninfo_to_dict(owner)['user']} CREATEDB")
    run_sql(owner, SHOP)
    return owner


def test_round_trip_through_a_scratch_database_is_verified_equal(shop, pg):
    result = verify_logical(_db(shop), restore_into="scratch")
    assert result.verified, result.summary
    assert result.kind == "logical"
    rows = {t.table: (t.rows_source, t.rows_restored, t.checksum_match) for t in result.tables}
    assert rows == {"public.items": (500, 500, True), "public.log_lines": (42, 42, True),
                    "archive.events": (30, 30, True)}
    assert result.schema_differences == []
    seqs = {s.sequence: (s.source, s.restored) for s in result.sequences}
    assert seqs["public.invoice_no"] == (1006, 1006)
    assert seqs["public.items_id_seq"] == (500, 500)
    # measured and reported: durations, sizes, an RTO estimate and how it was made
    assert result.durations_s.dump > 0 and result.durations_s.restore > 0 and result.durations_s.verify > 0
    assert result.sizes.backup_bytes and result.sizes.restored_bytes and result.sizes.database_bytes
    assert result.restore_estimate_s > 0 and "scaled linearly" in result.estimate_method
    assert result.restored_into.startswith("scratch database agent19_scratch_")
    assert list_scratch(pg.dsn) == []                      # dropped
    assert not any(Path(r.split()[-1]).exists() for r in result.removed if r.startswith("work directory"))


def test_round_trip_into_a_throwaway_cluster_works_in_read_only_mode(shop, pg):
    result = verify_logical(_db(shop, "read-only"), jobs=2)   # directory format, 2 jobs
    assert result.verified, result.summary
    assert result.restored_into.startswith("throwaway cluster")
    assert "read-only mode" in " ".join(result.notes)
    assert list_scratch(pg.dsn) == []


def test_rows_deleted_in_the_restored_copy_are_caught_and_the_table_named(shop):
    def damage(restored_dsn: str) -> None:
        run_sql(restored_dsn, "DELETE FROM archive.events WHERE id > 25")

    result = verify_logical(_db(shop), restore_into="scratch", after_restore=damage)
    assert not result.verified
    bad = [t for t in result.tables if not t.checksum_match]
    assert [(t.table, t.rows_source, t.rows_restored) for t in bad] == [("archive.events", 30, 25)]
    assert "archive.events" in result.summary and "NOT verified" in result.summary
    # which rows: by primary key, in key order
    [events] = bad
    assert events.key_columns == ["id"] and not events.differing_rows_truncated
    assert [(r.key, r.difference) for r in events.differing_rows] == [(f"({i})", "missing") for i in range(26, 31)]
    assert "rows by (id): (26) missing, (27) missing" in result.summary


def test_changed_and_extra_rows_are_listed_by_key_and_the_list_is_bounded(shop):
    def damage(restored_dsn: str) -> None:
        run_sql(restored_dsn, "UPDATE archive.events SET payload = '{}' WHERE id IN (3, 17);"
                "INSERT INTO archive.events VALUES (99, NULL);"
                "UPDATE items SET price = price + 1 WHERE id <= 30")

    result = verify_logical(_db(shop), restore_into="scratch", after_restore=damage)
    bad = {t.table: t for t in result.tables if not t.checksum_match}
    assert set(bad) == {"archive.events", "public.items"}
    events = bad["archive.events"]
    # text order of the key: (17) before (3) before (99), the same on both sides whatever their collation
    assert [(r.key, r.difference) for r in events.differing_rows] == [("(17)", "changed"), ("(3)", "changed"),
                                                                      ("(99)", "extra")]
    items = bad["public.items"]
    assert len(items.differing_rows) == 20 and items.differing_rows_truncated
    assert {r.difference for r in items.differing_rows} == {"changed"}


def test_changed_content_with_the_same_row_count_is_caught(shop):
    def damage(restored_dsn: str) -> None:   # same rows, one value differs; a table without a primary key
        run_sql(restored_dsn, "UPDATE log_lines SET line = 'other' WHERE ctid = (SELECT min(ctid) FROM log_lines "
                "WHERE level = 'info')")

    result = verify_logical(_db(shop), restore_into="scratch", after_restore=damage)
    bad = {t.table: t for t in result.tables if not t.checksum_match}
    assert list(bad) == ["public.log_lines"]
    assert bad["public.log_lines"].rows_source == bad["public.log_lines"].rows_restored == 42
    assert bad["public.log_lines"].note == "content differs (same row count)"
    # no primary key to name the row by: how many rows are on one side only
    assert (bad["public.log_lines"].rows_only_in_source, bad["public.log_lines"].rows_only_in_restored) == (1, 1)
    assert bad["public.log_lines"].differing_rows == []


def test_schema_and_sequence_differences_are_reported(shop):
    def damage(restored_dsn: str) -> None:
        run_sql(restored_dsn, "ALTER TABLE archive.events DROP CONSTRAINT events_pkey; SELECT setval('invoice_no', 5)")

    result = verify_logical(_db(shop), restore_into="scratch", after_restore=damage)
    assert not result.verified
    assert any("archive.events" in d and "events_pkey" in d for d in result.schema_differences)
    bad = [s for s in result.sequences if not s.match]
    assert [(s.sequence, s.source, s.restored) for s in bad] == [("public.invoice_no", 1006, 5)]


def test_a_dump_whose_restore_fails_is_not_verified(shop, pg, tmp_path):
    dump = tmp_path / "nightly.dump"
    subprocess.run([_bin(pg, "pg_dump"), "-Fc", "-f", dump, "-d", shop], check=True)
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    good = verify_logical(_db(shop), from_file=str(dump), restore_into="cluster")
    assert good.verified, good.summary
    assert good.durations_s.dump == 0
    bad = verify_logical(_db(shop), from_file=str(truncated), restore_into="cluster")
    assert not bad.verified
    assert bad.errors, "pg_restore's errors are reported"
    assert any(not t.checksum_match for t in bad.tables)


def test_a_plain_sql_dump_is_restored_with_psql(shop, pg, tmp_path):
    dump = tmp_path / "plain.sql"
    subprocess.run([_bin(pg, "pg_dump"), "-f", dump, "-d", shop], check=True)
    result = verify_logical(_db(shop), from_file=str(dump), restore_into="cluster")
    assert result.verified, result.summary


def test_as_an_application_role_with_a_password(pg, shop, dsn):
    """A non-superuser login that reads the shop (owned by another role); its password travels in PGPASSWORD,
    never in argv or output. Another role's tables are restored in a throwaway cluster, not by this login."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS backup_app")
        conn.execute("CREATE ROLE backup_app LOGIN CREATEDB PASSWORD 's3cret-pw'")
        conn.execute("GRANT ALL ON SCHEMA public, archive TO backup_app")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public, archive TO backup_app")
        conn.execute("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO backup_app")
    app_dsn = make_conninfo(shop, user="backup_app", password="s3cret-pw")
    try:
        result = verify_logical(_db(app_dsn))
        assert result.verified, result.summary
        assert "agent19_restorer" in result.restored_into
        assert "s3cret-pw" not in result.model_dump_json()
    finally:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("REASSIGN OWNED BY backup_app TO postgres")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP OWNED BY backup_app")
            conn.execute("DROP ROLE backup_app")


def test_refuses_when_the_work_directory_lacks_room(shop, tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(tiny)], capture_output=True)
    need(mounted.returncode == 0, "cannot mount a small tmpfs here (needs root in a privileged container)")
    try:
        with pytest.raises(InputError) as err:
            verify_logical(_db(shop), restore_into="scratch", jobs=2, work_base=str(tiny))  # dump files needed
        assert "needs about" in str(err.value) and "--work-dir" in str(err.value)
        assert list(tiny.iterdir()) == []
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


def test_cli_json_contract_and_exit_status(shop, tmp_path):
    env = {**os.environ, "DATABASE_URL": shop}
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--mode", "dry-run",
                           "--format", "json"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["verified"] is True and out["kind"] == "logical"
    assert {"table", "rows_source", "rows_restored", "checksum_match"} <= set(out["tables"][0])
    assert out["schema_differences"] == []
    assert set(out["durations_s"]) >= {"dump", "restore", "verify"}
    assert isinstance(out["restore_estimate_s"], float)
    bad = tmp_path / "bad.dump"
    bad.write_bytes(b"PGDMP" + b"\0" * 100)
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--from", str(bad),
                           "--restore-into", "cluster"], capture_output=True, text=True, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT verified" in done.stdout


async def test_mcp_verify_backup_structured_result(shop):
    from tests.mcp_client import stdio_session

    need(bool(system_versions()), "the system's PostgreSQL server binaries are not installed")
    async with stdio_session("--dsn", shop) as session:    # read-only mode: a throwaway cluster
        result = await session.call_tool("verify_backup", {"kind": "logical"})
    assert not result.is_error, result.content
    data = result.structured_content
    assert data["verified"] is True and data["kind"] == "logical"
    assert data["restored_into"].startswith("throwaway cluster")
    assert {t["table"] for t in data["tables"]} == {"public.items", "public.log_lines", "archive.events"}
