"""The ledger behind ``require_dry_run``: which changes passed ``test_migration`` on which server and schema.

A statement may run in execute mode under the policy only when an entry holds for all of:

* **the same server**, as the server identifies itself — never the DSN as written, so ``localhost`` and
  ``127.0.0.1``, a default and an explicit port, a URI and a keyword DSN are one server: the
  ``system_identifier`` of ``pg_control_system()`` (readable by any login on PostgreSQL 15) and the
  database's oid. Where ``pg_control_system()`` is not readable (some managed services revoke it), the
  server's port and ``cluster_name``, the postmaster's start time and the database's oid stand in: a
  restart of the server then invalidates the ledger (a dry run again is the cost, never a false pass);
  and the session's resolved search_path (``current_schemas(true)``): unqualified names then mean the same tables;
* **the same statement**: a sha256 of its tokens (spacing between tokens, comments and a trailing ``;`` aside);
* **the same schema**: a fingerprint of the database's catalog (:data:`Q_CATALOG`: schemas, relations,
  columns, defaults, constraints, indexes, functions, types, enum labels, triggers, rules and views,
  row-level policies, extensions — outside ``pg_catalog``, ``information_schema`` and temporary schemas)
  equal to the one the dry run started from. DDL by anyone since then invalidates the dry run;
  statistics, ANALYZE, VACUUM and data changes do not;
* **fresh**: tested within ``dry_run_max_age_hours`` (``AGENT19_DRY_RUN_MAX_AGE_HOURS``, default 24 h).

A migration of several statements is run one statement per ``run_sql`` call. Its entry lists the hashes
of the statements that change something, in order, and the step reached: the dry run records step 0
with the schema it started from; each time agent19 runs step *k* under the policy, it records step *k+1*
with the schema step *k* left. So statement *k+1* runs only on the schema agent19's own step *k*
produced from the schema the dry run tested; a step run elsewhere (psql) or someone's DDL in between
makes the fingerprint differ, and the refusal says so.

Rows live in ``<data_dir>/dry-runs.jsonl`` (mode 0600, appended): hashes and times only — no server
name, no statement text. Rows of the first format (keyed by the DSN's host as written) are ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from pglast.parser import ParseError, scan
from psycopg.rows import tuple_row

from agent19.config import Settings
from agent19.errors import ConfigError

LEDGER = "dry-runs.jsonl"
_COMMENTS = {"SQL_COMMENT", "C_COMMENT"}
FORMAT = 2

Q_IDENTITY = """SELECT (SELECT system_identifier::text FROM pg_control_system()) AS system_id,
       d.oid::text AS db_oid, current_schemas(true)::text AS path FROM pg_database d
 WHERE d.datname = current_database()"""
Q_FALLBACK_IDENTITY = """SELECT concat_ws('|', current_setting('port'), current_setting('cluster_name'),
       pg_postmaster_start_time()::text) AS system_id,
       d.oid::text AS db_oid, current_schemas(true)::text AS path FROM pg_database d
 WHERE d.datname = current_database()"""

Q_CATALOG = r"""
WITH ns AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND nspname !~ '^pg_(toast_)?temp_'),
rel AS (SELECT c.oid FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns))
SELECT md5(coalesce(string_agg(x, E'\n' ORDER BY x), '')) FROM (
    SELECT concat_ws('|', 'n', oid, nspname) FROM ns
    UNION ALL SELECT concat_ws('|', 'c', oid, relname, relnamespace, relkind, relpersistence, reloptions::text,
                               relispartition, relrowsecurity, relreplident)
      FROM pg_class WHERE oid IN (SELECT oid FROM rel)
    UNION ALL SELECT concat_ws('|', 'a', attrelid, attnum, attname, atttypid, atttypmod, attnotnull, attisdropped,
                               atthasdef, attidentity, attgenerated, attcollation)
      FROM pg_attribute WHERE attrelid IN (SELECT oid FROM rel) AND attnum > 0
    UNION ALL SELECT concat_ws('|', 'd', adrelid, adnum, md5(adbin::text))
      FROM pg_attrdef WHERE adrelid IN (SELECT oid FROM rel)
    UNION ALL SELECT concat_ws('|', 'k', oid, conname, contype, conrelid, contypid, confrelid, convalidated,
                               condeferrable, conkey::text, confkey::text, md5(coalesce(conbin::text, '')))
      FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ns)
    UNION ALL SELECT concat_ws('|', 'i', indexrelid, indrelid, indisunique, indisprimary, indisvalid, indisready,
                               indkey::text, indclass::text,
                               md5(coalesce(indexprs::text, '') || coalesce(indpred::text, '')))
      FROM pg_index WHERE indrelid IN (SELECT oid FROM rel)
    UNION ALL SELECT concat_ws('|', 'f', oid, proname, pronamespace, prokind, proargtypes::text, prorettype,
                               provolatile, prosecdef, md5(prosrc))
      FROM pg_proc WHERE pronamespace IN (SELECT oid FROM ns)
    UNION ALL SELECT concat_ws('|', 't', oid, typname, typnamespace, typtype, typbasetype, typnotnull)
      FROM pg_type WHERE typnamespace IN (SELECT oid FROM ns)
    UNION ALL SELECT concat_ws('|', 'e', e.oid, enumtypid, enumlabel, enumsortorder)
      FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typnamespace IN (SELECT oid FROM ns)
    UNION ALL SELECT concat_ws('|', 'g', oid, tgname, tgrelid, tgfoid, tgtype, tgenabled)
      FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM rel)
    UNION ALL SELECT concat_ws('|', 'r', oid, rulename, ev_class, ev_type, ev_enabled, md5(ev_action::text))
      FROM pg_rewrite WHERE ev_class IN (SELECT oid FROM rel)
    UNION ALL SELECT concat_ws('|', 'p', oid, polname, polrelid, polcmd, polpermissive,
                               md5(coalesce(polqual::text, '') || coalesce(polwithcheck::text, '')))
      FROM pg_policy WHERE polrelid IN (SELECT oid FROM rel)
    UNION ALL SELECT concat_ws('|', 'x', oid, extname, extversion, extnamespace) FROM pg_extension
) f(x)"""


@dataclass(frozen=True)
class ServerState:
    """Who the server is (a hash) and what its schema is now (a fingerprint)."""

    server: str
    catalog: str
    database: str  # the server and database alone (no search_path): what a verified backup is of
    identified_by: str  # "system_identifier" or "port, cluster_name and start time"
    read_at: datetime


def read_state(conn: psycopg.Connection[Any]) -> ServerState:
    """The server's identity and the catalog fingerprint, read on ``conn`` (any login may read them)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        try:
            with conn.transaction():  # a savepoint when ``conn`` is in a transaction
                row = cur.execute(Q_IDENTITY).fetchone()
            how = "system_identifier"
        except psycopg.errors.InsufficientPrivilege:
            row = cur.execute(Q_FALLBACK_IDENTITY).fetchone()
            how = "port, cluster_name and start time"
        catalog = cur.execute(Q_CATALOG).fetchone()
    assert row is not None and catalog is not None  # current_database() is always in pg_database
    # the schemas unqualified names resolve to: the same text on another search_path is another migration
    server = hashlib.sha256(f"{how}\0{row[0]}\0{row[1]}\0{row[2]}".encode()).hexdigest()
    database = hashlib.sha256(f"{how}\0{row[0]}\0{row[1]}".encode()).hexdigest()
    return ServerState(server=server, catalog=str(catalog[0]), database=database, identified_by=how,
                       read_at=datetime.now(UTC))


def statement_hash(sql: str) -> str:
    """sha256 of the statement's tokens as PostgreSQL's scanner reads them: spacing between tokens, comments
    and trailing ``;`` aside, but never inside a token — a string's spaces and a newline that ends a ``--``
    comment (and so decides what is commented out) change the hash."""
    try:
        tokens = [sql[t.start:t.end + 1] for t in scan(sql) if t.name not in _COMMENTS]
    except ParseError:  # unscannable (unterminated quote…): the exact text, only outer spacing aside
        return hashlib.sha256(("\0" + sql.strip()).encode()).hexdigest()
    while tokens and tokens[-1] == ";":
        tokens.pop()
    return hashlib.sha256("\0".join(tokens).encode()).hexdigest()


def _path(settings: Settings) -> Path:
    return settings.data_dir / LEDGER


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append JSON rows to an agent19 ledger (created mode 0600: only this user reads it); a data directory that
    cannot be written (read-only, full, not a directory) is a ConfigError saying which and what to do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    except OSError as exc:
        raise ConfigError(f"cannot write {path} ({exc.strerror or exc}): agent19 records what it did in its "
                          "data directory; point --data-dir (or AGENT19_DATA_DIR) at one this user may write") from None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a ledger (a torn or foreign line is skipped)."""
    out = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                out.append(row)
    return out


def _entries(settings: Settings) -> list[dict[str, Any]]:
    return [r for r in read_rows(_path(settings)) if r.get("v") == FORMAT and isinstance(r.get("statements"), list)]


def record(settings: Settings, state: ServerState, statements: list[str]) -> None:
    """Remember that ``statements`` (the migration's changes, in order) passed a dry run that started from
    ``state`` (its age counts from then)."""
    if not statements:
        return
    hashes = [statement_hash(s) for s in statements]
    when = state.read_at.isoformat(timespec="seconds")
    append_rows(_path(settings), [{"v": FORMAT, "server": state.server, "migration": statement_hash("\n".join(hashes)),
                               "statements": hashes, "step": 0, "catalog": state.catalog, "tested_at": when}])


@dataclass(frozen=True)
class Verdict:
    """The ledger's answer for one statement: ``refusal`` None means it may run; ``entry`` is what it ran under.
    A refusal's parts, for callers that word their own message: ``reason`` (why, naming the target) and
    ``advice`` (what to run)."""

    refusal: str | None
    entry: dict[str, Any] | None = None
    reason: str | None = None
    advice: str | None = None


def _age_hours(entry: dict[str, Any], now: datetime) -> float | None:
    try:
        at = datetime.fromisoformat(str(entry["tested_at"]))
    except (KeyError, ValueError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (now - at).total_seconds() / 3600


def check(settings: Settings, state: ServerState, sql: str, target: str) -> Verdict:
    """May ``sql`` run on the server in ``state`` under ``require_dry_run``? ``target`` names it in messages."""
    want = statement_hash(sql)
    now = datetime.now(UTC)
    max_age = settings.dry_run_max_age_hours
    stale: list[float] = []
    moved = False
    later_step: int | None = None
    for entry in reversed(_entries(settings)):
        step, hashes = entry.get("step"), entry["statements"]
        if entry.get("server") != state.server or not isinstance(step, int) or want not in hashes:
            continue
        if step >= len(hashes) or hashes[step] != want:
            later_step = hashes.index(want) if later_step is None else later_step
            continue
        age = _age_hours(entry, now)
        if age is None or age > max_age:
            stale.append(age if age is not None else float("inf"))
            continue
        if entry.get("catalog") != state.catalog:
            moved = True
            continue
        return Verdict(None, entry)
    again = ("run test_migration (agent19 dry-run --sql '...' --mode dry-run) with it on this database again, "
             "then run it")
    if moved:
        why = ("it passed a dry run, but the database's schema changed since (DDL by someone, or a step of the "
               "migration run outside agent19): the dry run no longer proves it")
    elif stale:
        why = (f"its last passing dry run is {min(stale):.1f} h old, beyond the {max_age:g} h a dry run stays valid "
               "(AGENT19_DRY_RUN_MAX_AGE_HOURS)")
    elif later_step is not None:
        why = (f"it passed a dry run as change {later_step + 1} of a migration whose earlier changes have not been "
               "run through agent19 on the schema the dry run tested")
    else:
        why = "it has not passed a dry run on this server and database with this search_path"
    return Verdict(f"policy require_dry_run: {why} ({target}); {again}", reason=f"{why} ({target})", advice=again)


def advance(settings: Settings, entry: dict[str, Any], state_after: ServerState) -> None:
    """Statement ``entry['step']`` ran through agent19: the migration's next change may run on the schema it
    left (``state_after``). The dry run's time still bounds the whole migration."""
    step = int(entry["step"]) + 1
    if step >= len(entry["statements"]):
        return
    append_rows(_path(settings), [{**entry, "step": step, "catalog": state_after.catalog}])
