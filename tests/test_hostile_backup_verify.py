"""Hostile review of `agent19 backup verify`: backups that lose something must not verify, and a dump
file must not run anything on this machine. Real server, real pg_dump / pg_restore / psql, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19.db.binaries import pg_binary
from tests.conftest import need, run_sql
from tools.throwaway import ThrowawayServer

ROOT = Path(__file__).resolve().parent.parent


def _bin(server: ThrowawayServer, tool: str) -> str:
    found = pg_binary(tool, server.major)
    need(found is not None, f"{tool} is not installed")
    return str(found)


def _dump(server: ThrowawayServer, dsn: str, out: Path, *args: str) -> None:
    params = conninfo_to_dict(dsn)
    env = {**os.environ, "PGPASSWORD": str(params.pop("password", "") or "")}
    subprocess.run([_bin(server, "pg_dump"), *args, "-f", str(out), "-d", make_conninfo(**params)], check=True,
                   env=env, capture_output=True)


def _verify(dsn: str, *args: str) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", dsn, "--mode", "dry-run",
                           "--format", "json", *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "DATABASE_URL": ""})
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.fixture
def app(pg: ThrowawayServer, dsn: str) -> Iterator[str]:
    """The fresh database, reached as an application role that owns what it creates (not a superuser)."""
    role, password = f"app_{uuid.uuid4().hex[:8]}", "hostile-pw-1"
    run_sql(pg.dsn, f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'")
    run_sql(dsn, f"GRANT ALL ON SCHEMA public TO {role}")
    try:
        yield make_conninfo(dsn, user=role, password=password)
    finally:
        run_sql(dsn, f"DROP OWNED BY {role}")
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datdba = %s::regrole", (role,)):
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            conn.execute(f"DROP ROLE {role}")


def test_a_plain_dump_cannot_run_shell_commands_here(pg, dsn, tmp_path):
    run_sql(dsn, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
    plain = tmp_path / "plain.sql"
    _dump(pg, dsn, plain)
    code, out, _ = _verify(dsn, "--from", str(plain), "--restore-into", "cluster")
    assert code == 0 and out["verified"], out["summary"]  # pg_dump's own \restrict lines are no obstacle

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.sql"
    evil.write_text(f"\\! touch {marker}\n" + plain.read_text())
    code, out, _ = _verify(dsn, "--from", str(evil), "--restore-into", "cluster")
    assert not marker.exists(), "a backslash command in a dump file ran a shell command"
    assert code == 1 and not out["verified"]
    assert any("backslash commands" in e for e in out["errors"]), out["errors"]


def test_a_dump_without_the_large_objects_is_not_verified(pg, dsn, tmp_path):
    run_sql(dsn, "CREATE TABLE docs (id int PRIMARY KEY, blob oid);"
                 "INSERT INTO docs VALUES (1, lo_from_bytea(0, 'the contract, signed'))")
    without, full = tmp_path / "no-blobs.dump", tmp_path / "full.dump"
    _dump(pg, dsn, without, "-Fc", "--no-blobs")
    _dump(pg, dsn, full, "-Fc")
    code, out, _ = _verify(dsn, "--from", str(without))
    assert code == 1 and not out["verified"]
    lost = [t for t in out["tables"] if t["table"] == "(large objects)"]
    assert lost and not lost[0]["checksum_match"] and lost[0]["rows_source"] == 1, out["tables"]
    code, out, _ = _verify(dsn, "--from", str(full))
    assert code == 0 and out["verified"], out["summary"]
    run_sql(dsn, "SELECT lo_put(blob, 4, 'CONTRACT') FROM docs")  # same object, changed content
    code, out, _ = _verify(dsn, "--from", str(full))
    assert code == 1 and "(large objects)" in out["summary"]


def test_rows_row_level_security_hides_from_the_login_are_not_assumed_restored(pg, app, tmp_path):
    run_sql(app, "CREATE TABLE notes (id int PRIMARY KEY, who text, body text);"
                 "INSERT INTO notes VALUES (1, current_user, 'mine'), (2, 'boss', 'hidden'), (3, 'boss', 'hidden');"
                 "ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes FORCE ROW LEVEL SECURITY;"
                 "CREATE POLICY own ON notes USING (who = current_user)")
    partial = tmp_path / "rls.dump"
    _dump(pg, app, partial, "-Fc", "--enable-row-security")  # the dump holds row 1 only
    code, out, _ = _verify(app, "--from", str(partial))
    assert code == 1 and not out["verified"], out["summary"]
    notes = next(t for t in out["tables"] if t["table"] == "public.notes")
    assert not notes["checksum_match"] and "row-level security" in notes["note"]


def test_a_dump_missing_functions_types_or_policies_is_not_verified(pg, app, tmp_path):
    run_sql(app, "CREATE FUNCTION price_with_tax(numeric) RETURNS numeric LANGUAGE sql AS 'SELECT $1 * 1.2';"
                 "CREATE DOMAIN positive AS int CHECK (VALUE > 0); CREATE TYPE pair AS (a int, b int);"
                 "CREATE TABLE notes (id positive PRIMARY KEY, who text);"
                 "ALTER TABLE notes ENABLE ROW LEVEL SECURITY;"
                 "CREATE POLICY own ON notes USING (who = current_user)")
    full = tmp_path / "full.dump"
    _dump(pg, app, full, "-Fc")
    code, out, _ = _verify(app, "--from", str(full))
    assert code == 0 and out["verified"], out["summary"]

    listing = subprocess.run([_bin(pg, "pg_restore"), "-l", str(full)], check=True, capture_output=True, text=True)
    kept = [ln for ln in listing.stdout.splitlines()
            if not any(k in ln for k in ("price_with_tax", "TYPE public pair", "POLICY", "ROW SECURITY"))]
    (tmp_path / "list").write_text("\n".join(kept) + "\n")
    lossy = tmp_path / "lossy.sql"  # pg_restore -L -f: the dump as a script, without the listed-out entries
    subprocess.run([_bin(pg, "pg_restore"), "-L", str(tmp_path / "list"), "-f", str(lossy), str(full)],
                   check=True, capture_output=True)
    code, out, _ = _verify(app, "--from", str(lossy))
    assert code == 1 and not out["verified"]
    diffs = "\n".join(out["schema_differences"])
    for lost in ("function public.price_with_tax(numeric)", "type public.pair", "policy own on public.notes",
                 "row-level security of public.notes"):
        assert lost in diffs, diffs


def test_a_work_directory_path_cannot_smuggle_a_shell_command(dsn):
    """pg_verifybackup runs pg_waldump through a shell with the backup's path in double quotes."""
    marker = Path(f"/tmp/agent19-hostile-{uuid.uuid4().hex}")  # writable by the server's OS user too
    parent = Path(tempfile.mkdtemp(prefix="agent19-hostile-"))
    os.chmod(parent, 0o755)  # the server's OS user must reach the backup, as in a real work directory
    work = parent / f"w $(touch {marker})"
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", dsn, "--kind", "physical",
                           "--work-dir", str(work)], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "DATABASE_URL": ""})
    try:
        assert not marker.exists(), "a $(…) in --work-dir ran as a shell command"
        assert done.returncode == 2 and "work directory" in done.stderr, done.stdout + done.stderr
        assert not work.exists(), "nothing is created under a refused work directory"
    finally:
        marker.unlink(missing_ok=True)
        shutil.rmtree(parent, ignore_errors=True)
