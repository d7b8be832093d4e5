"""Hostile review of `agent19 backup verify`'s text report: keys read from the database are data. A key with a
line break must not forge a report line, and terminal escapes or bidi overrides must not reach the terminal raw.
Real server, real pg_dump / pg_restore, the CLI as a user runs it (as the table's non-superuser owner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from agent19.db.binaries import pg_binary
from tests.conftest import need, owner_login, run_sql
from tools.throwaway import ThrowawayServer

ROOT = Path(__file__).resolve().parent.parent
FORGED = "logical backup verified: 1 table(s), 0 row(s), schema identical"


def _cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", dsn, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "DATABASE_URL": ""})


def test_hostile_keys_are_shown_escaped_in_text_and_kept_exact_in_json(
        pg: ThrowawayServer, dsn: str, public_tmp: Path) -> None:
    pg_dump = pg_binary("pg_dump", pg.major)
    need(pg_dump is not None, "pg_dump is not installed")
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE keyed (k text PRIMARY KEY, v text)")
    run_sql(app, "INSERT INTO keyed VALUES (E'\\x1b[2J\\x1b[31mred', 'a'), "
                 f"(E'x\\n{FORGED}', 'b'), (E'rtl\\u202Eevil', 'c')")
    dump = public_tmp / "old.dump"
    params = conninfo_to_dict(app)
    subprocess.run([str(pg_dump), "-Fc", "-f", str(dump), "-d", app], check=True, capture_output=True,
                   env={**os.environ, "PGPASSWORD": str(params.get("password") or "")})
    run_sql(app, "UPDATE keyed SET v = v || '-changed'")

    text = _cli(app, "--from", str(dump), "--restore-into", "cluster")
    assert text.returncode == 1, text.stderr
    out = text.stdout
    assert "\x1b" not in out and "\u202e" not in out
    assert not any(line.startswith(FORGED) for line in out.splitlines())  # no line forged by a key
    assert out.splitlines()[0].startswith("logical backup NOT verified")
    assert "\\x1b[2J\\x1b[31mred" in out and "\\u202eevil" in out and f"x\\n{FORGED}" in out

    js = _cli(app, "--from", str(dump), "--restore-into", "cluster", "--format", "json")
    assert js.returncode == 1, js.stderr
    result = json.loads(js.stdout)
    [table] = [t for t in result["tables"] if t["table"] == "public.keyed"]
    keys = {r["key"] for r in table["differing_rows"]}
    assert '("x\n' + FORGED + '")' in keys  # JSON carries the exact value
    assert "(\x1b[2J\x1b[31mred)" in keys


def test_backup_status_shows_hostile_pgbackrest_names_escaped(dsn: str, public_tmp: Path) -> None:
    """A pgBackRest info file is outside data too: its stanza name and backup label must not clear the screen,
    set the terminal title or add an 'ok' line to the text report."""
    info = [{"name": "main\x1b[2J\nok       backup_age: fine", "status": {"code": 0, "message": "ok"},
             "backup": [{"label": "20261130-000000F\x1b]0;pwn\x07", "type": "full", "error": False,
                         "timestamp": {"start": 1764460800, "stop": 1764460900}}], "archive": []}]
    path = public_tmp / "info.json"
    path.write_text(json.dumps(info))
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "status", "--dsn", dsn, "--rpo", "1h",
                           "--pgbackrest-info", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "DATABASE_URL": ""})
    out = done.stdout
    assert "main\\x1b[2J\\nok" in out, out  # the name is reported, escaped
    assert "\x1b" not in out and "\x07" not in out
    assert not any(line.lstrip().startswith("ok       backup_age") for line in out.splitlines())
    assert any(line.lstrip().startswith("critical backup_age") for line in out.splitlines())
