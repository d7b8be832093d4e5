"""Secrets never on a command line, and never a fragment of a password in an error.

* While a dry run copies the schema into a scratch database (pg_dump | psql), every process on the
  machine is watched through ``/proc``: no command line holds the password; pg_dump gets it in its
  environment (``PGPASSWORD``), readable only by its owner.
* A URI whose password holds an unencoded ``@``, ``/``, ``?`` or ``:`` is cut by libpq inside the
  password; the CLI and the MCP server refuse it without quoting any piece of it, and real failing
  connections (unreachable server, missing database) never echo the password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import run_sql
from tests.mcp_client import stdio_session
from tools.throwaway import free_port

ROOT = Path(__file__).parent.parent


class ProcWatcher:
    """Reads every process's argv (and pg_dump's environment) from /proc until stopped."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.leaks: list[str] = []
        self.seen: dict[str, bool] = {}  # program -> had PGPASSWORD=secret in its environment
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = str(os.getpid())
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == me:
                    continue
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if self.secret in argv:
                        self.leaks.append(argv.replace(b"\0", b" ").decode(errors="replace"))
                    program = Path(argv.split(b"\0", 1)[0].decode(errors="replace")).name
                    if program in ("pg_dump", "psql"):
                        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                        self.seen[program] = self.seen.get(program, False) or b"PGPASSWORD=" + self.secret in env
                except OSError:
                    continue

    def __enter__(self) -> ProcWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def test_scratch_copy_children_never_carry_the_password_on_their_command_line(dsn, tmp_path):
    # enough tables that pg_dump and psql live long enough to be seen
    run_sql(dsn, "DO $$ BEGIN FOR i IN 1..400 LOOP EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', "
                 "i); END LOOP; END $$")
    secret = "Pw-" + os.urandom(8).hex()  # the test server trusts loopback: the password travels, unchecked
    with_password = make_conninfo(dsn, password=secret)
    migration = tmp_path / "0001.up.sql"
    migration.write_text("CREATE INDEX CONCURRENTLY t1_v ON t1 (v);\n")
    with ProcWatcher(secret) as watcher:
        # the DSN reaches agent19 through the environment, as a user should pass it (not --dsn on argv)
        async with stdio_session("--mode", "dry-run", env={"DATABASE_URL": with_password}) as session:
            result = await session.call_tool("test_migration", {"files": [str(migration)], "scratch_copy": "schema"})
    assert not result.is_error, result.content
    r = result.structured_content
    assert r["scratch"]["strategy"] == "schema_copy" and r["statements"][0]["error"] is None, r["scratch"]
    assert "pg_dump" in watcher.seen and "psql" in watcher.seen, watcher.seen  # the watch saw the copy run
    assert watcher.seen == {"pg_dump": True, "psql": True}  # the password went through PGPASSWORD
    assert watcher.leaks == []
    assert secret not in json.dumps(r)


# a password with every URI delimiter in it, each piece distinctive enough to be searched for
PIECES = ["Qz7w", "Kx9v", "Vw3u", "Jm5t", "Hy2s"]
AWKWARD = "Qz7w@Kx9v/Vw3u?Jm5t:Hy2s"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**clean, **(env or {})})


def _assert_no_piece(text: str, pieces: list[str] = PIECES) -> None:
    found = [p for p in pieces if p in text]
    assert not found, f"password pieces {found} leaked in:\n{text}"


def test_unencoded_delimiters_in_a_uri_password_are_refused_without_echoing_any_piece(pg, dsn):
    params = conninfo_to_dict(dsn)
    for host in (f"{params['host']}:{params['port']}", "127.0.0.1:1"):
        uri = f"postgresql://postgres:{AWKWARD}@{host}/{params['dbname']}"
        for args, env in ((["info", "--dsn", uri], None), (["info", "--format", "json"], {"DATABASE_URL": uri}),
                          (["dry-run", "--sql", "SELECT 1", "--mode", "dry-run"], {"DATABASE_URL": uri})):
            done = _cli(*args, env=env)
            assert done.returncode != 0, done
            assert "percent-encode" in done.stderr, done.stderr
            _assert_no_piece(done.stdout + done.stderr)
        done = _cli("info", "--dsn", dsn, env={"AGENT19_READ_DSN": uri})  # the reader login's DSN too
        assert done.returncode != 0 and "reader DSN" in done.stderr and "percent-encode" in done.stderr
        _assert_no_piece(done.stdout + done.stderr)


def test_unparseable_key_value_dsns_are_refused_without_echoing_any_piece():
    # an unquoted space, a quote left open, a stray word: libpq would quote the piece it choked on
    for bad in ("host=127.0.0.1 port=1 password=Qz7w Kx9v user=me", "host=127.0.0.1 password='Qz7w Kx9v",
                "host=127.0.0.1 password=Qz7w Kx9v=Vw3u"):
        done = _cli("info", env={"DATABASE_URL": bad})
        assert done.returncode == 2 and "cannot be parsed as a connection string" in done.stderr, done
        _assert_no_piece(done.stdout + done.stderr, ["Qz7w", "Kx9v", "Vw3u"])


async def test_mcp_server_with_such_a_dsn_fails_to_start_without_echoing_it(dsn):
    params = conninfo_to_dict(dsn)
    uri = f"postgresql://postgres:{AWKWARD}@{params['host']}:{params['port']}/{params['dbname']}"
    done = subprocess.run([sys.executable, "-m", "agent19", "serve"], input="", capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "DATABASE_URL": uri})
    assert done.returncode != 0 and "percent-encode" in done.stderr
    _assert_no_piece(done.stdout + done.stderr)


async def test_real_failing_connections_never_echo_the_password(pg, dsn):
    secret = "Zr8q-" + os.urandom(6).hex()
    params = conninfo_to_dict(dsn)
    encoded = secret.replace("-", "%2D")
    cases = {
        "unreachable": f"postgresql://postgres:{secret}@127.0.0.1:{free_port()}/x",
        "no such database": f"postgresql://postgres:{encoded}@{params['host']}:{params['port']}/nope_db",
        "key=value, quoted": f"host=127.0.0.1 port={free_port()} user=postgres password='{secret} @/?:'",
        "encoded delimiters": f"postgresql://postgres:{secret}%40x%2Fy@127.0.0.1:{free_port()}/x",
    }
    for name, uri in cases.items():
        done = _cli("info", "--format", "json", env={"DATABASE_URL": uri})
        text = done.stdout + done.stderr
        assert '"connected": false' in text and '"error": "' in text, (name, text)  # it did try, and failed
        _assert_no_piece(text, [secret, secret[:8], secret[-8:]])
        done = _cli("dry-run", "--sql", "CREATE TABLE t (id int)", "--mode", "dry-run", env={"DATABASE_URL": uri})
        assert done.returncode != 0, (name, done)
        _assert_no_piece(done.stdout + done.stderr, [secret, secret[:8], secret[-8:]])
    async with stdio_session("--mode", "dry-run", env={"DATABASE_URL": cases["unreachable"]}) as session:
        result = await session.call_tool("test_migration", {"sql": "CREATE TABLE t (id int)"})
    assert result.is_error
    _assert_no_piece(result.content[0].text, [secret, secret[:8], secret[-8:]])
    with psycopg.connect(pg.dsn, autocommit=True):  # the server itself is fine: the failures were the DSNs'
        pass
