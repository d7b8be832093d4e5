"""Size samples recorded by ``agent19 capacity sample`` (cron-able), the first source of growth.

With ``--store table`` (execute mode: the user allows agent19 to write there) the sample goes into the table
``agent19.capacity_samples`` of the target instead; ``capacity_plan`` reads both. Otherwise: one JSON object
a line in ``<data_dir>/capacity/<key>.jsonl`` (mode 0600), where ``key`` is the server's
system identifier (``pg_control_system()``: the same cluster keeps it across restarts, a restored copy or a
new cluster on the same port does not, so histories never mix) — or ``host-port`` when this login may not
read it. A line::

    {"at": "2026-11-30T15:00:00Z", "database": "app", "database_bytes": 123, "cluster_bytes": 456,
     "rows": 789, "tables": {"public.orders": [bytes, rows], ...the 50 largest}}

A line that is not valid JSON (a crash mid-write) is skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, Field

from agent19.ops.capacity.model import CurrentState, Point


class Sample(BaseModel):
    at: str
    database: str
    database_bytes: int
    cluster_bytes: int
    rows: int
    tables: dict[str, tuple[int, int]] = {}


class SampleResult(BaseModel):
    """What ``capacity_sample`` returns."""

    path: str = Field(description="the file the sample was appended to, or the table it was inserted into")
    key: str = Field(description="the server's system identifier (or host-port when it is not readable)")
    sample: Sample
    samples_for_database: int = Field(description="samples of this database in the file, this one included")
    skipped_lines: int = 0


def sample_key(state: CurrentState, dsn: str) -> str:
    if state.system_identifier:
        return state.system_identifier
    params = conninfo_to_dict(dsn)
    raw = f"{params.get('host') or 'local'}-{params.get('port') or 5432}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


def samples_path(data_dir: Path, key: str) -> Path:
    return data_dir / "capacity" / f"{key}.jsonl"


def from_state(state: CurrentState, largest: list[tuple[str, int, int]]) -> Sample:
    return Sample(at=state.measured_at, database=state.database, database_bytes=state.database_bytes,
                  cluster_bytes=state.cluster_bytes, rows=state.rows,
                  tables={name: (size, rows) for name, size, rows in largest[:50]})


def append(path: Path, sample: Sample) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(sample.model_dump_json() + "\n")


def load(path: Path, database: str) -> tuple[list[Sample], int]:
    """This database's samples in time order, and the number of unreadable lines skipped."""
    if not path.exists():
        return [], 0
    out, skipped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            s = Sample.model_validate(json.loads(line))
        except (ValueError, TypeError):
            skipped += 1
            continue
        if s.database == database:
            out.append(s)
    out.sort(key=lambda s: s.at)
    return out, skipped


def points(samples: list[Sample]) -> list[Point]:
    return [Point(at=s.at, bytes=s.database_bytes, rows=s.rows) for s in samples]


# -- samples in a table of the target, when the user allows it (`capacity sample --store table`, execute mode) --

TABLE = "agent19.capacity_samples"
CREATE_TABLE = f"""
CREATE SCHEMA IF NOT EXISTS agent19;
CREATE TABLE IF NOT EXISTS {TABLE} (
    at timestamptz PRIMARY KEY,
    database text NOT NULL,
    database_bytes bigint NOT NULL,
    cluster_bytes bigint NOT NULL,
    rows bigint NOT NULL,
    tables jsonb NOT NULL DEFAULT '{{}}'
);
COMMENT ON TABLE {TABLE} IS 'size samples recorded by agent19 capacity sample --store table';"""


COLUMNS = ["at timestamp with time zone", "database text", "database_bytes bigint", "cluster_bytes bigint",
           "rows bigint", "tables jsonb"]
DEFAULTS = ("tables '{}'::jsonb",)
"""The table's shape as :data:`CREATE_TABLE` makes it (:data:`agent19.safety.ledger.Q_SHAPE`): any role that may
create schema ``agent19`` can make a relation by that name first — a view, a table with a trigger, a policy, a
column of its own type with an implicit cast — whose code agent19's reads and writes would run as its login
(review r29 F1, F2). Read and written only with that shape, locked against DDL first."""


def append_table(conn: Any, sample: Sample) -> None:
    """Insert ``sample`` (in the caller's transaction; its session must be allowed to write: execute mode). Raises
    :class:`agent19.safety.ledger.LedgerUnavailable` when the table is not the one agent19 makes."""
    from agent19.safety import ledger

    conn.execute(CREATE_TABLE)  # IF NOT EXISTS: nothing runs where another's is already there
    ledger.hold(conn, TABLE, COLUMNS, "ROW EXCLUSIVE", DEFAULTS)
    conn.execute(f"INSERT INTO {TABLE} (at, database, database_bytes, cluster_bytes, rows, tables) "
                 "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (at) DO NOTHING",
                 (sample.at, sample.database, sample.database_bytes, sample.cluster_bytes, sample.rows,
                  json.dumps(sample.tables)))


Q_TABLE_SAMPLES = f"""
SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at, database, database_bytes,
       cluster_bytes, rows, tables
  FROM {TABLE} WHERE database = current_database() ORDER BY at"""


Q_TABLE_EXISTS = f"""
SELECT to_regclass('{TABLE}') IS NOT NULL
       AND has_table_privilege(to_regclass('{TABLE}'), 'SELECT') AS readable"""


def read_table(conn: Any) -> tuple[list[Sample], str | None]:
    """The samples in :data:`TABLE` for this database (``conn`` in a transaction), or none and why: read only when
    the table has agent19's shape, locked against DDL first (a trigger, rule or policy added after the check would
    wait for the read to end)."""
    from agent19.safety import ledger

    if not conn.execute(Q_TABLE_EXISTS).fetchone()["readable"]:
        return [], None
    try:
        ledger.check_shape(conn, TABLE, COLUMNS, DEFAULTS)  # first: a relation of another kind is not locked
        conn.execute(ledger.Q_LOCK["ACCESS SHARE"].format(table=TABLE))
        ledger.check_shape(conn, TABLE, COLUMNS, DEFAULTS)
    except ledger.LedgerUnavailable as exc:
        return [], f"{TABLE} not read: {exc.message}"
    return from_rows(conn.execute(Q_TABLE_SAMPLES).fetchall()), None


def from_rows(rows: list[dict[str, Any]]) -> list[Sample]:
    return [Sample(at=r["at"], database=r["database"], database_bytes=r["database_bytes"],
                   cluster_bytes=r["cluster_bytes"], rows=r["rows"],
                   tables={k: tuple(v) for k, v in (r["tables"] or {}).items()}) for r in rows]
