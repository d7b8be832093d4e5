"""Reading a slot's changes through SQL, for either output plugin, as wal2json-v2-shaped dictionaries.

* wal2json: ``pg_logical_slot_peek_changes`` with ``add-tables`` (the plugin filters the captured tables).
* pgoutput: ``pg_logical_slot_peek_binary_changes`` with protocol version 1 and a publication (which chooses
  the tables, and may hold more than are captured: those changes are left out here), decoded by
  :mod:`agent19.etl.pgoutput`.
"""

from __future__ import annotations

import json
from typing import Any

from agent19.db.connection import Connection
from agent19.errors import InputError
from agent19.etl.cdc_apply import quoted, split_table
from agent19.etl.pgoutput import Decoder
from agent19.migrate.patterns.sqlnames import ident

PLUGINS = ("wal2json", "pgoutput")
Q_WAL2JSON = ("SELECT lsn::text AS lsn, data FROM pg_logical_slot_peek_changes(%s, %s::pg_lsn, %s, "
              "VARIADIC %s::text[])")
Q_PGOUTPUT = ("SELECT lsn::text AS lsn, data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, %s, "
              "'proto_version', '1', 'publication_names', %s)")
Q_PUBLISHED = """
SELECT p.pubname IS NOT NULL AS exists,
       ARRAY(SELECT schemaname || '.' || tablename FROM pg_publication_tables t WHERE t.pubname = %s) AS tables
  FROM (SELECT %s::name AS want) w LEFT JOIN pg_publication p ON p.pubname = w.want
"""


def _bytea_as_text(change: dict[str, Any]) -> None:
    """wal2json writes a bytea as bare hex digits, which bytea's input reads as the characters themselves:
    given the ``\\x`` prefix of bytea's own text form (as pgoutput sends it), the bytes arrive unchanged."""
    for column in (*change.get("columns", ()), *change.get("identity", ())):
        if column.get("type") == "bytea" and isinstance(column.get("value"), str):
            column["value"] = "\\x" + column["value"]


def _escape(part: str) -> str:
    return "".join("\\" + ch if ch in ",.\\* " else ch for ch in part)


def require_publication(conn: Connection, publication: str | None, tables: list[str]) -> None:
    """pgoutput reads what a publication holds: it must exist and cover every captured table."""
    if not publication:
        raise InputError("--plugin pgoutput reads the tables of a publication: name one", "e.g. --publication "
                         "agent19_cdc (agent19 cdc check gives the CREATE PUBLICATION)")
    row = conn.execute(Q_PUBLISHED, (publication, publication)).fetchone()
    covered = set(row["tables"]) if row else set()
    missing = [t for t in tables if t not in covered]
    if not row or not row["exists"] or missing:
        what = "does not exist" if not row or not row["exists"] else f"does not cover {', '.join(missing)}"
        fix = (f"CREATE PUBLICATION {ident(publication)} FOR TABLE {', '.join(quoted(t) for t in tables)};"
               if not row or not row["exists"] else
               f"ALTER PUBLICATION {ident(publication)} ADD TABLE {', '.join(quoted(t) for t in missing)};")
        raise InputError(f"publication {publication} {what} on the source (nothing was created)",
                         f"run on the source, as an owner of the tables: {fix}")


class ChangeReader:
    def __init__(self, plugin: str, tables: list[str], publication: str | None):
        if plugin not in PLUGINS:
            raise InputError(f"plugin {plugin!r} is not one agent19 reads", "--plugin wal2json or --plugin pgoutput")
        self.plugin, self.tables, self.publication = plugin, tables, publication
        self.decoder = Decoder()

    def peek(self, conn: Connection, slot: str, upto: str | None, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The decoded changes (each ``{"lsn", "change"}``) and how many rows the slot returned."""
        if self.plugin == "wal2json":
            options = ["format-version", "2", "include-timestamp", "1", "include-lsn", "1", "include-types", "1",
                       "add-tables", ",".join(".".join(_escape(p) for p in split_table(t)) for t in self.tables)]
            rows = conn.execute(Q_WAL2JSON, (slot, upto, limit, options)).fetchall()
            changes = [{"lsn": r["lsn"], "change": json.loads(r["data"])} for r in rows]
            for c in changes:  # wal2json: one T per table
                _bytea_as_text(c["change"])
                if c["change"]["action"] == "T":
                    c["change"]["tables"] = [f"{c['change']['schema']}.{c['change']['table']}"]
            return changes, len(rows)
        rows = conn.execute(Q_PGOUTPUT, (slot, upto, limit, self.publication)).fetchall()
        out = []
        captured = set(self.tables)
        for r in rows:
            change = self.decoder.decode(r["data"])
            if change is None:
                continue
            if change["action"] in ("I", "U", "D") and f"{change['schema']}.{change['table']}" not in captured:
                continue  # published, not captured
            if change["action"] == "T":
                change["tables"] = [t for t in change["tables"] if t in captured]
                if not change["tables"]:
                    continue
            out.append({"lsn": r["lsn"], "change": change})
        return out, len(rows)
