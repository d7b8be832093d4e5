"""agent19 cdc debezium: the Kafka Connect configuration is checked against the live source, its setup SQL
makes the source ready when applied with psql, its heartbeat query runs there, and no password is written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from tests.reader_login import psql

ROOT = Path(__file__).parent.parent


def _agent19(*args: str, dsn: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "DATABASE_URL": dsn, **(env or {})})


def test_generated_configuration_matches_the_source_and_its_setup_makes_it_ready(dsn, tmp_path):
    role, password = f"dbz_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, v text); CREATE TABLE events (a int, b text)")
        conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
    with_password = make_conninfo(dsn, user=role, password=password)
    try:
        out = _agent19("cdc", "debezium", "orders", "events", "--topic-prefix", "shop", "--sink", "env:SINK_URL",
                       "--write-to", str(tmp_path), "--format", "json", dsn=with_password,
                       env={"SINK_URL": make_conninfo(dsn, dbname="warehouse", password="sinksecret")})
        assert out.returncode == 1, out.stderr  # not ready yet: events has no key
        assert password not in out.stdout + out.stderr and "sinksecret" not in out.stdout + out.stderr
        result = json.loads(out.stdout)
        src = result["source_connector"]["config"]
        assert src["plugin.name"] == "pgoutput" and src["slot.name"] == "debezium"
        assert src["publication.name"] == "agent19_cdc" and src["publication.autocreate.mode"] == "disabled"
        # Debezium reads the list as comma-separated regular expressions over schema.table: dots are escaped
        assert src["table.include.list"] == r"public\.orders,public\.events,agent19_etl\.debezium_heartbeat"
        included = [re.compile(x) for x in src["table.include.list"].split(",")]
        assert any(x.fullmatch("public.orders") for x in included)
        assert not any(x.fullmatch("publicXorders") for x in included)
        assert src["transforms.unwrap.type"] == "io.debezium.transforms.ExtractNewRecordState"
        assert src["transforms.unwrap.drop.tombstones"] == "false" and src["snapshot.mode"] == "initial"
        assert src["database.password"] == "${env:DEBEZIUM_SOURCE_PASSWORD}" and src["database.user"] == role
        sink = result["sink_connector"]["config"]
        assert sink["connection.url"].endswith("/warehouse") and sink["delete.enabled"] == "true"
        assert sink["connection.password"] == "${env:JDBC_SINK_PASSWORD}"
        assert json.loads((tmp_path / "source.json").read_text()) == result["source_connector"]
        assert password not in "".join(p.read_text() for p in tmp_path.iterdir())
        applied = subprocess.run([psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f",
                                  str(tmp_path / "setup.sql")], capture_output=True, text=True, timeout=60)
        assert applied.returncode == 0, applied.stderr
        with psycopg.connect(dsn, autocommit=True) as conn:
            published = {r[0] for r in conn.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables "
                                                    "WHERE pubname = 'agent19_cdc'")}
            assert published == {"public.orders", "public.events", "agent19_etl.debezium_heartbeat"}
            conn.execute(src["heartbeat.action.query"])
            conn.execute(src["heartbeat.action.query"])
            assert conn.execute("SELECT count(*) FROM agent19_etl.debezium_heartbeat").fetchone()[0] == 1
        again = _agent19("cdc", "debezium", "orders", "events", "--format", "json", dsn=dsn)
        assert again.returncode == 0, again.stdout
        assert json.loads(again.stdout)["readiness"]["ready"] is True
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")
