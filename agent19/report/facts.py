"""Live facts for the documents: size, connections, archiving, the migration tool's schema version.

Read-only catalog and statistics queries, in one READ ONLY transaction. Which migration tool
manages the schema is recognised by its bookkeeping table
(:data:`~agent19.report.build.VERSION_TABLES`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg import sql

from agent19.report.model import LiveFacts

Q_FACTS = """
SELECT current_database() AS database, current_setting('server_version_num')::int AS num,
       current_setting('server_version') AS text, pg_database_size(current_database()) AS size,
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())::int AS connections,
       current_setting('max_connections')::int AS max_connections,
       current_setting('archive_mode') AS archive_mode,
       (SELECT last_archived_time::text FROM pg_stat_archiver) AS last_archived
"""
Q_TABLES = """
SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relname = ANY(%s) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
 ORDER BY n.nspname = 'public' DESC, n.nspname
"""


def live_facts(conn: Any) -> LiveFacts:
    """Facts about the database ``conn`` is connected to (in a READ ONLY transaction)."""
    from agent19.report.build import VERSION_TABLES

    row = conn.execute(Q_FACTS).fetchone()
    tables = {r["name"]: r["schema"] for r in conn.execute(
        Q_TABLES, ([t for t, _ in VERSION_TABLES.values()],)).fetchall()}
    tool = table = version = None
    for name, (tbl, query) in VERSION_TABLES.items():
        if tbl in tables:
            tool, table = name, f"{tables[tbl]}.{tbl}"
            ident = sql.Identifier(tables[tbl], tbl).as_string(conn)
            got = conn.execute(query.format(t=ident)).fetchone()
            version = None if got is None or got["version"] is None else str(got["version"])
            break
    return LiveFacts(
        database=row["database"], server_version=row["num"], server_version_text=row["text"],
        size_bytes=row["size"], connections=row["connections"], max_connections=row["max_connections"],
        migration_tool=tool, migration_table=table, schema_version=version, archive_mode=row["archive_mode"],
        last_archived_at=row["last_archived"], collected_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
