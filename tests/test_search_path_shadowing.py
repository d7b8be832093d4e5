"""A database owner cannot make agent19 run their code by shadowing a built-in.

An owner may set ``ALTER DATABASE … SET search_path = public, pg_catalog`` and create
``public.format_type(oid, integer)``: every unqualified call in agent19's catalog queries would then run
the owner's function as agent19's login (a superuser, say). agent19's sessions always search pg_catalog
first; the owner's tables still resolve by their unqualified names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import owner_login

ROOT = Path(__file__).parent.parent


def test_a_shadowed_builtin_never_runs_in_agent19s_sessions(dsn: str, tmp_path: Path) -> None:
    owner_dsn = owner_login(dsn, "owner")
    db = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(owner_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id int PRIMARY KEY, amount numeric)")
        c.execute("CREATE FUNCTION public.format_type(oid, integer) RETURNS text LANGUAGE plpgsql AS "
                  "$$ BEGIN RAISE EXCEPTION 'the owner''s format_type ran'; END $$")
        c.execute(f"ALTER DATABASE {db} SET search_path = public, pg_catalog")
    with psycopg.connect(dsn) as c:  # the trap is armed: an unqualified call runs the owner's function
        try:
            c.execute("SELECT format_type(23, NULL)")
            armed = False
        except psycopg.errors.RaiseException:
            armed = True
    assert armed, "the planted function should shadow the built-in in an ordinary session"

    out = subprocess.run([sys.executable, "-m", "agent19", "describe", "orders", "--dsn", dsn, "--format", "json",
                          "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "format_type ran" not in out.stdout + out.stderr
    described = json.loads(out.stdout)
    assert "orders" in json.dumps(described) and "numeric" in json.dumps(described)

    out = subprocess.run([sys.executable, "-m", "agent19", "sql", "SELECT count(*) AS n FROM orders", "--dsn", dsn,
                          "--allow-privileged-reads", "--format", "json", "--data-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr  # the owner's tables still resolve unqualified

    # writes keep the database's path: new objects still land in public, not pg_catalog
    out = subprocess.run([sys.executable, "-m", "agent19", "sql", "CREATE TABLE audit (id int)", "--dsn", dsn,
                          "--mode", "execute", "--format", "json", "--data-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT to_regclass('public.audit') IS NOT NULL").fetchone()[0]
