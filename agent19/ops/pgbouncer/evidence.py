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
and pg_dump's own session (agent19's ``backup verify``, a nightly dump), recognised only as a whole: per role, its
catalog queries ``PREPARE dump…``/``getColumnACLs`` and every statement its connection setup sends
(``SET statement_timeout = 0``, ``SET lock_timeout = 0``, … as recorded on PostgreSQL 15) with the same number
of calls (one per pg_dump connection). pg_dump connects directly, never through a transaction pool; the result
says how many such calls were set aside. An application's ``SET statement_timeout = 0`` counts: without pg_dump's
other statements nothing is set aside, and alongside them its extra calls make that statement count, all of it.
Other roles' statements a login without ``pg_read_all_stats`` cannot read (:mod:`agent19.db.hidden_statements`)
leave the scan unknown, never "none".

**Budget.** Pools may use ``max_connections`` minus ``superuser_reserved_connections`` (and
``reserved_connections``, PostgreSQL 16+) minus the other known consumers: agent19 itself (its pool of 4
plus one direct session) and the direct connections the caller declares (monitoring, migrations, cron).
WAL senders and background workers have their own limits (``max_wal_senders``, ``max_worker_processes``) and
do not count against ``max_connections``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from agent19.db.hidden_statements import hidden_statements
from agent19.db.redact import shown_statement
from agent19.migrate.patterns.sqlnames import literal
from agent19.ops.health.probe import Probe

AGENT19_CONNECTIONS = 5
"""agent19's own: its pool (max_size 4) and one direct session."""

FEATURES: list[tuple[str, str, str]] = [
    ("SET without LOCAL", r"^\s*set\s+(?!local\M)(?!transaction\M)(?!constraints\M)|set_config\s*\([^)]*,\s*false\s*\)",
     "use SET LOCAL inside the transaction (or set_config(..., true)); per-role defaults: ALTER ROLE ... SET"),
    ("LISTEN", r"^\s*listen\M", "keep LISTEN on a direct connection (or a session-mode pool of its own)"),
    ("session advisory locks", r"\mpg_(try_)?advisory_lock(_shared)?\s*\(",
     "use pg_advisory_xact_lock (released at commit)"),
    ("WITH HOLD cursors", r"\mdeclare\M.*\mwith\s+hold\M", "fetch inside one transaction, or use keyset pagination"),
    ("SQL PREPARE", r"^\s*prepare\M", "use the driver's protocol-level prepared statements (PgBouncer 1.21+ "
     "max_prepared_statements) or plain statements"),
    ("temporary tables", r"^\s*create\s+(global\s+|local\s+)?temp(orary)?\s+table\M(?!.*\mon\s+commit\s+drop\M)",
     "CREATE TEMP TABLE ... ON COMMIT DROP inside the transaction"),
]


AGENT19_OWN = "ARRAY['SET default_transaction_read_only = on']"
"""agent19's own session setup (it connects directly, never through PgBouncer): not the application's."""

APP_NAME = r"^\s*set\s+(session\s+)?application_name\M"
"""SET application_name: PgBouncer keeps it per client (re-applied on the next server connection)."""

PG_DUMP_SESSION = [r"set datestyle = iso", r"set intervalstyle = postgres", r"set extra_float_digits to (3|\$1)",
                   r"set synchronize_seqscans to off", r"set statement_timeout = (0|\$1)",
                   r"set lock_timeout = (0|\$1)", r"set idle_in_transaction_session_timeout = (0|\$1)"]
"""The session statements every pg_dump connection sends (PostgreSQL 15's pg_dump, recorded on 15), whole text."""

PG_DUMP = (r"^(" + "|".join(PG_DUMP_SESSION) + r"|set row_security = (off|on)|set quote_all_identifiers = true"
           r"|set transaction_timeout = (0|\$1))$|^prepare (dump[a-z]+|getcolumnacls)\(")
"""pg_dump's own statements (its session setup, optional settings, its catalog queries), matched on their whole text."""

PG_DUMP_QUERIES = r"^prepare (dump[a-z]+|getcolumnacls)\("
"""pg_dump's characteristic catalog queries."""


def pg_dump_statements(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of the rows matching :data:`PG_DUMP` (role ``u``, ``query``, ``calls``), those that are pg_dump's: per role,
    only when its characteristic queries are there and every statement of :data:`PG_DUMP_SESSION` too; then the
    session statements whose calls equal the fewest of them (one per pg_dump connection). A statement with more
    calls was also run by someone else (an application's ``SET statement_timeout = 0``): it counts, all of it."""
    out = []
    for role in {r["u"] for r in rows}:
        mine = [r for r in rows if r["u"] == role]
        dump = [r for r in mine if re.match(PG_DUMP_QUERIES, r["query"], re.I)]
        core = [[r for r in mine if re.fullmatch(p, r["query"], re.I)] for p in PG_DUMP_SESSION]
        if not dump or not all(core):
            continue
        n = min(int(r["calls"]) for found in core for r in found)
        out += dump + [r for r in mine if r not in dump and int(r["calls"]) == n]
    return out


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
    other_direct: int = Field(description="direct connections declared by the caller (monitoring, migrations...)")
    available: int = Field(description="what PgBouncer's server connections may use in total")
    in_use_now: int = Field(description="client connections open now (pg_stat_activity)")


def session_features(probe: Probe, schema: str) -> tuple[list[SessionFeature], list[str], dict[str, int]]:
    """The session state found, what could not be seen, and the calls set aside ("pg_dump", "application_name")."""
    cannot: list[str] = []
    hidden = hidden_statements(probe.rows, f"{schema}.pg_stat_statements",
                               "whether other roles' statements keep session state (SET, LISTEN, advisory locks, ...)")
    if hidden:
        cannot.append(hidden)
    track = probe.rows("SELECT current_setting('pg_stat_statements.track_utility', true) AS t")[0]["t"]
    if track == "off":
        cannot.append("pg_stat_statements.track_utility is off: SET, LISTEN, PREPARE and DECLARE are not recorded "
                      "- ALTER SYSTEM SET pg_stat_statements.track_utility = on and let the workload run")
    found = []
    here = (f"FROM {schema}.pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = "
            f"current_database()) AND query NOT LIKE '/* agent19 %' AND query <> ALL({AGENT19_OWN})")
    dump = pg_dump_statements(probe.rows(f"SELECT userid::text AS u, query, calls {here} AND query ~* "
                                         f"{literal(PG_DUMP)}"))
    n = probe.rows(f"SELECT coalesce(sum(calls), 0)::bigint AS n {here} AND query ~* {literal(APP_NAME)}")
    aside = {"pg_dump": sum(int(r["calls"]) for r in dump), "application_name": int(n[0]["n"])}
    keys = ", ".join(literal(f"{r['u']} {r['query']}") for r in dump)
    not_dump = f" AND userid::text || ' ' || query <> ALL(ARRAY[{keys}]::text[])" if dump else ""
    for name, pattern, fix in FEATURES:
        tracked = f" AND query !~* {literal(APP_NAME)}" if name == "SET without LOCAL" else ""
        rows = probe.rows(f"SELECT query, calls {here} AND query ~* {literal(pattern)}"
                          f"{not_dump}{tracked} ORDER BY calls DESC LIMIT 5")
        if rows:
            found.append(SessionFeature(feature=name, calls=sum(int(r["calls"]) for r in rows), fix=fix,
                                        statements=[shown_statement(r["query"] or "", 200) for r in rows[:3]]))
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
