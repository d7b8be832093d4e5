"""Every session agent19 opens on a user's server is pinned to search pg_catalog first (agent19.db.catalog_first).

A source scan: ``psycopg.connect(`` (or a pool) anywhere in agent19/ outside the one helper and the allow-list below
fails, so new code cannot open a session that a login's ``search_path = shadow, pg_catalog`` reaches.
"""

from __future__ import annotations

import ast
from pathlib import Path

AGENT19 = Path(__file__).parent.parent / "agent19"

ALLOWED: dict[tuple[str, str], str] = {
    ("db/catalog_first.py", "connect"): "the helper itself: psycopg.connect, then pin()",
    ("db/connection.py", "Database.connect"): "Database._configure pins in the round trip it makes anyway",
    ("db/connection.py", "Database._open_pool"): "the pool's configure= is Database._configure",
    ("ops/pgbouncer/status.py", "pgbouncer_status"): "the PgBouncer admin console: SHOW commands, no SQL functions",
    ("etl/cdc.py", "CdcRun.initial_copy"): "the replication connection: it runs CREATE_REPLICATION_SLOT only, "
                                           "a replication command that resolves no name through search_path",
}


def _openers(tree: ast.AST) -> list[tuple[str, int]]:
    """(enclosing Class.function, line) of each ``psycopg.connect(``, ``connect(`` imported from psycopg,
    ``…Connection.connect(`` and ``ConnectionPool(`` call."""
    from_psycopg = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and (n.module or "").startswith("psycopg") for a in n.names}
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, [*scope, child.name])
                continue
            if isinstance(child, ast.Call):
                f = child.func
                opens = (
                    (isinstance(f, ast.Attribute) and f.attr == "connect" and isinstance(f.value, ast.Name)
                     and f.value.id == "psycopg")
                    or (isinstance(f, ast.Attribute) and f.attr == "connect" and isinstance(f.value, ast.Attribute)
                        and f.value.attr in ("Connection", "AsyncConnection"))
                    or (isinstance(f, ast.Attribute) and f.attr == "connect" and isinstance(f.value, ast.Name)
                        and f.value.id in ("Connection", "AsyncConnection") and f.value.id in from_psycopg)
                    or (isinstance(f, ast.Name) and f.id in ("connect", "ConnectionPool", "AsyncConnectionPool")
                        and f.id in from_psycopg)
                    or (isinstance(f, ast.Name) and f.id in ("ConnectionPool", "AsyncConnectionPool"))
                )
                if opens:
                    found.append((".".join(scope), child.lineno))
            visit(child, scope)

    visit(tree, [])
    return found


def test_every_session_on_a_users_server_is_opened_through_the_pinning_helper():
    unlisted, seen = [], set()
    for path in sorted(AGENT19.rglob("*.py")):
        rel = path.relative_to(AGENT19).as_posix()
        for scope, line in _openers(ast.parse(path.read_text(), filename=str(path))):
            if (rel, scope) in ALLOWED:
                seen.add((rel, scope))
            else:
                unlisted.append(f"agent19/{rel}:{line} ({scope or 'module'})")
    assert not unlisted, ("sessions opened without agent19.db.catalog_first.connect (a login's search_path could "
                          "put its schema before pg_catalog there): " + ", ".join(unlisted))
    assert seen == set(ALLOWED), f"allow-list entries that no longer open a session: {set(ALLOWED) - seen}"


def test_the_scan_finds_each_way_of_opening_a_session():
    source = ("import psycopg\nfrom psycopg import connect, Connection\nfrom psycopg_pool import ConnectionPool\n"
              "def a():\n    psycopg.connect('')\n"
              "class B:\n    def c(self):\n        connect('')\n        Connection.connect('')\n"
              "        psycopg.Connection.connect('')\n        ConnectionPool('')\n"
              "def d():\n    catalog_first.connect('')\n")
    assert _openers(ast.parse(source)) == [("a", 5), ("B.c", 8), ("B.c", 9), ("B.c", 10), ("B.c", 11)]
