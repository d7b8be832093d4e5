"""What the live server says about pooling: session state in the workload, and the connection budget.

**Session state.** Transaction pooling hands a server connection to another client after each transaction,
so anything a client leaves on its session breaks (REFERENCE.md, PgBouncer's feature table): ``SET`` without
``LOCAL`` (and ``set_config(…, false)``), ``LISTEN``, session advisory locks, ``WITH HOLD`` cursors, SQL
``PREPARE``, temporary tables (unless ``ON COMMIT DROP``). pg_stat_statements is scanned for each; utility
statements (SET, LISTEN, PREPARE, DECLARE) are only there when ``pg_stat_statements.track_utility`` is on —
when it is off the scan says it cannot see them. An SQL ``PREPARE`` is recorded (under the PREPARE's text)
when it is EXECUTEd, not before (observed on PostgreSQL 15).

Not counted: ``SET application_name`` (PgBouncer keeps it per client and re-applies it on whichever server
connection the client gets; only a client that sent no application_name at connection may show another
client's — a label, no behaviour: shown on PgBouncer 1.18 in tests/test_pgbouncer.py; the other parameters it
tracks, TimeZone, DateStyle, client_encoding, would reach such a client the same way and change results, so
they count),
and pg_dump's own session (agent19's ``backup verify``, a nightly dump): the exact statements pg_dump's
connection setup sends (``SET statement_timeout = 0``, ``SET row_security = off``, … as recorded on
PostgreSQL 15) and its catalog queries ``PREPARE dump…``/``getColumnACLs``. pg_dump connects directly, never
through a transaction pool; the result says how many such calls were set aside. An application sending
byte-identical text is set aside with them (the result counts them). Other roles' statements a login without
``pg_read_all_stats`` cannot read (:mod:`agent19.db.hidden_statements`) leave the scan unknown, never "none".

**Budget.** Pools may use ``max_connections`` minus ``superuser_reserved_connections`` (and
``reserved_connections``, PostgreSQL 16+) minus the other known consumers: agent19 itself (its pool of 4
plus one direct session) and the direct connections the caller declares (monitoring, migrations, cron).
WAL senders and background workers have their own limits (``max_wal_senders``, ``max_worker_processes``) and
do not count against ``max_connections``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agent19.db.hidden_statements import hidden_statements
from agent19.migrate.patterns.sqlnames import literal
from agent19.ops.health.probe import Probe

AGENT19_CONNECTIONS = 5
"""agent19's own: its pool (max_size 4) and one direct session."""

FEATURES: list[tuple[str, str, str]] = [
    ("SET without LOCAL", r"^\s*set\s+(?!local\M)(?!transaction\M)(?!constraints\M)|set_config\s*\([^)]*,\s*false\s*\)",
     "use SET LOCAL inside the transaction (or set_config(…, true)); per-role defaults: ALTER ROLE … SET"),
    ("LISTEN", r"^\s*listen\M", "keep LISTEN on a direct connection (or a session-mode pool of its own)"),
    ("session advisory locks", r"\mpg_(try_)?advisory_lock(_shared)?\s*\(",
     "use pg_advisory_xact_lock (released at commit)"),
    ("WITH HOLD cursors", r"\mdeclare\M.*\mwith\s+hold\M", "fetch inside one transaction, or use keyset pagination"),
    ("SQL PREPARE", r"^\s*prepare\M", "use the driver's protocol-level prepared statements (PgBouncer 1.21+ "
     "max_prepared_statements) or plain statements"),
    ("temporary tables", r"^\s*create\s+(global\s+|local\s+)?temp(orary)?\s+table\M(?!.*\mon\s+commit\s+drop\M)",
     "CREATE TEMP TABLE … ON COMMIT DROP inside the transaction"),
]


AGENT19_OWN = "ARRAY['SET default_transaction_read_only = on']"
"""agent19's own session setup (it connects directly, never through PgBouncer): not the application's."""

APP_NAME = r"^\s*set\s+(session\s+)?application_name\M"
"""SET application_name: PgBouncer keeps it per client (re-applied on the next server connection)."""

PG_DUMP = (r"^set (datestyle = iso|intervalstyle = postgres|extra_float_digits to (3|\$1)|synchronize_seqscans "
           r"to off|(statement_timeout|lock_timeout|idle_in_transaction_session_timeout) = (0|\$1)|row_security = "
           r"(off|on)|quote_all_identifiers = true)$|^prepare (dump[a-z]+|getcolumnacls)\(")
"""pg_dump's own session statements (connection setup, catalog queries), matched on their whole text."""


class SessionFeature(BaseModel):
    feature: str
    calls: int
    statements: list[str] = Field(description="example statement texts (untrusted data)")
    fix: str


class Budget(BaseModel):
    max_connections: int
    superuser_reserved_connections: int
    reserved_connections: int = Field(description="PostgreSQL 16+ reserved_connections (0 before)")
    agent19: int = AGENT19_CONNECTIONS
    other_direct: int = Field(description="direct connections declared by the caller (monitoring, migrations…)")
    available: int = Field(description="what PgBouncer's server connections may use in total")
    in_use_now: int = Field(description="client connections open now (pg_stat_activity)")


def session_features(probe: Probe, schema: str) -> tuple[list[SessionFeature], list[str], dict[str, int]]:
    """The session state found, what could not be seen, and the calls set aside ("pg_dump", "application_name")."""
    cannot: list[str] = []
    hidden = hidden_statements(probe.rows, f"{schema}.pg_stat_statements",
                               "whether other roles' statements keep session state (SET, LISTEN, advisory locks, …)")
    if hidden:
        cannot.append(hidden)
    track = probe.rows("SELECT current_setting('pg_stat_statements.track_utility', true) AS t")[0]["t"]
    if track == "off":
        cannot.append("pg_stat_statements.track_utility is off: SET, LISTEN, PREPARE and DECLARE are not recorded "
                      "— ALTER SYSTEM SET pg_stat_statements.track_utility = on and let the workload run")
    found = []
    here = (f"FROM {schema}.pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = "
            f"current_database()) AND query NOT LIKE '/* agent19 %' AND query <> ALL({AGENT19_OWN})")
    aside = {}
    for what, pattern in (("pg_dump", PG_DUMP), ("application_name", APP_NAME)):
        n = probe.rows(f"SELECT coalesce(sum(calls), 0)::bigint AS n {here} AND query ~* {literal(pattern)}")
        aside[what] = int(n[0]["n"])
    for name, pattern, fix in FEATURES:
        tracked = f" AND query !~* {literal(APP_NAME)}" if name == "SET without LOCAL" else ""
        rows = probe.rows(f"SELECT query, calls {here} AND query ~* {literal(pattern)} "
                          f"AND query !~* {literal(PG_DUMP)}{tracked} ORDER BY calls DESC LIMIT 5")
        if rows:
            found.append(SessionFeature(feature=name, calls=sum(int(r["calls"]) for r in rows), fix=fix,
                                        statements=[" ".join((r["query"] or "").split())[:200] for r in rows[:3]]))
    return found, cannot, aside


def budget(probe: Probe, other_direct: int) -> Budget:
    r: dict[str, Any] = probe.rows("""
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved_connections,
       coalesce(current_setting('reserved_connections', true), '0')::int AS reserved_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS in_use_now""")[0]
    available = (r["max_connections"] - r["superuser_reserved_connections"] - r["reserved_connections"]
                 - AGENT19_CONNECTIONS - other_direct)
    return Budget(**r, other_direct=other_direct, available=available)
