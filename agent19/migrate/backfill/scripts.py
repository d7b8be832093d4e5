"""The same backfill as :mod:`agent19.migrate.backfill.executor`, emitted for teams that run their own: a
PL/pgSQL procedure that commits after every batch, or a standalone Python script (psycopg 3 only).

It must be a PROCEDURE called with ``CALL`` outside a transaction block: only there may PL/pgSQL
``COMMIT`` (a ``DO`` block or a function runs inside one transaction, so a big backfill would hold
its row locks and bloat until the very end). It shares the executor's checkpoint table and name,
so a run can be started with one and resumed with the other.

The Python script (:func:`python_script`, rendered from ``templates/backfill.py.j2``) is the
executor's loop on its own: same keyset batch query, same checkpoint table, name, columns and
``last_key`` text encoding, same advisory lock — so it, the procedure and ``agent19 backfill`` can
each resume a run another one started.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

import pglast

import agent19
from agent19.errors import InputError
from agent19.migrate.backfill.executor import CHECKPOINT_TABLE, Q_LAG, BackfillSpec, check_fragments
from agent19.migrate.patterns.model import BackfillStep, comment
from agent19.migrate.patterns.sqlnames import ident, literal, parse_name, qualified, short

if TYPE_CHECKING:  # jinja2 is imported when a script is written: lint fixes and plans need only the SQL parts
    from jinja2 import Environment

CHECKPOINT_DDL = f"""CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (
    name text PRIMARY KEY, table_name text NOT NULL, set_sql text NOT NULL, where_sql text,
    key_columns text[] NOT NULL, last_key text[], rows_updated bigint NOT NULL DEFAULT 0,
    rows_scanned bigint NOT NULL DEFAULT 0, batches integer NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz)"""


def procedure_sql(spec: BackfillSpec, key: str, key_type: str, *, lock_timeout: str = "2s") -> str:
    """``CREATE PROCEDURE`` + ``CALL`` for a single-column key ``key`` of type ``key_type``."""
    create, call = procedure_parts(spec, key, key_type, lock_timeout=lock_timeout)
    return f"{create};\n\n{call};\n"


def procedure_parts(spec: BackfillSpec, key: str, key_type: str, *, lock_timeout: str = "2s") -> tuple[str, str]:
    """(``CREATE PROCEDURE``, which also creates the checkpoint table when it runs, the ``CALL``) — the CALL must
    run on its own."""
    check_fragments(spec)
    if spec.key and len(spec.key) > 1:
        raise InputError("the procedure form walks a single-column key", "use agent19 backfill for composite keys")
    name = spec.checkpoint_name()
    proc = ident(procedure_name(spec))
    t, k = qualified(*parse_name(spec.table)), ident(key)  # spec.table is SQL text, as to_regclass reads it
    where = f" AND ({spec.where})" if spec.where else ""

    def batch(after: bool) -> str:
        # the key range (last key, the batch's last key]: one index range scan, as agent19 backfill does. Every
        # name of our own is _a19_-prefixed, as in the executor's batch query: the SET/WHERE and the table's
        # columns (k, hi, last_key, updated…) must not collide with them; the parameters are copied into _a19_
        # variables and #variable_conflict use_column makes a column named batch_size or pause_s the column
        cond, low = (f" WHERE {k} > _a19_last", f"{t}.{k} > _a19_last AND ") if after else ("", "")
        return (f"    WITH _a19_b AS (SELECT {k} AS _a19_k FROM {t}{cond} ORDER BY {k} LIMIT _a19_batch_size),\n"
                f"         _a19_hi AS (SELECT max(_a19_k) AS _a19_k FROM _a19_b),\n"
                f"         _a19_u AS (UPDATE {t} SET {spec.set} FROM _a19_hi\n"
                f"                     WHERE {low}{t}.{k} <= _a19_hi._a19_k{where} RETURNING 1)\n"
                f"    SELECT (SELECT _a19_k FROM _a19_hi), (SELECT count(*) FROM _a19_b),\n"
                f"           (SELECT count(*) FROM _a19_u)\n"
                f"      INTO _a19_batch_last, _a19_scanned, _a19_updated;\n")

    cp = CHECKPOINT_TABLE
    create = f"""-- batched backfill of {spec.table}: SET {spec.set}{' WHERE ' + spec.where if spec.where else ''}
-- CALL it outside a transaction block (psql autocommit): it commits after every batch.
-- Resumable: progress is kept in {cp} (name {literal(name)}), moved in each batch's transaction;
-- a CALL after a finished run walks the table again.
CREATE OR REPLACE PROCEDURE {proc}(batch_size integer DEFAULT {spec.batch_size},
                                  pause_s float8 DEFAULT {spec.pause_ms / 1000},
                                  commit_batches boolean DEFAULT true)
LANGUAGE plpgsql AS $agent19$
#variable_conflict use_column
DECLARE
  _a19_batch_size integer := batch_size;
  _a19_pause_s float8 := pause_s;
  _a19_commit boolean := commit_batches;  -- false: every batch in the caller's transaction (a dry run's stand-in)
  _a19_last {key_type};
  _a19_batch_last {key_type};
  _a19_scanned bigint;
  _a19_updated bigint;
BEGIN
  -- the checkpoint table is created here, not beside the procedure: it is shared by every backfill, so a
  -- migration's rollback must not see it as something the migration created (and drop it)
  {textwrap.indent(CHECKPOINT_DDL, "  ").lstrip()};
  PERFORM set_config('lock_timeout', {literal(lock_timeout)}, false);
  IF row_security_active({literal(t)}::regclass) THEN  -- the batches would update only the rows a policy shows
    RAISE EXCEPTION 'row-level security may hide rows of % from this login: needs BYPASSRLS, or the table''s owner '
                    'without FORCE ROW LEVEL SECURITY; nothing was updated', {literal(t)};
  END IF;
  INSERT INTO {cp} (name, table_name, set_sql, where_sql, key_columns)
  VALUES ({literal(name)}, {literal(t)}, {literal(spec.set)}, {literal(spec.where) if spec.where else 'NULL'},
          ARRAY[{literal(key)}])
  -- a finished checkpoint is walked again from the start: a CALL after it (the migration rolled back and run
  -- again) must fill what is missing now: the WHERE skips rows already done; an unfinished one resumes
  ON CONFLICT (name) DO UPDATE SET last_key = NULL, finished_at = NULL, started_at = now(), updated_at = now()
   WHERE {cp}.finished_at IS NOT NULL;
  IF _a19_commit THEN COMMIT; END IF;
  LOOP
    SELECT c.last_key[1]::{key_type} INTO _a19_last FROM {cp} c WHERE c.name = {literal(name)} FOR UPDATE;
    IF _a19_last IS NULL THEN
{batch(False)}    ELSE
{batch(True)}    END IF;
    IF _a19_scanned = 0 THEN
      UPDATE {cp} SET finished_at = now(), updated_at = now() WHERE name = {literal(name)};
      IF _a19_commit THEN COMMIT; END IF;
      EXIT;
    END IF;
    UPDATE {cp} SET last_key = ARRAY[_a19_batch_last::text], rows_updated = rows_updated + _a19_updated,
           rows_scanned = rows_scanned + _a19_scanned, batches = batches + 1, updated_at = now()
     WHERE name = {literal(name)};
    IF _a19_commit THEN
      COMMIT;
      PERFORM pg_sleep(_a19_pause_s);
    END IF;
  END LOOP;
END
$agent19$"""
    return create, f"CALL {proc}()"


def keyset_backfill(key: str, key_type: str) -> Callable[[BackfillStep], list[str]]:
    """Writes a pattern's backfill phase as SQL: the keyset procedure over ``key`` (of ``key_type``) and its CALL.

    For :func:`agent19.migrate.patterns.model.fix_script` when the table's single-column key is known (a lint fix
    or runbook with a catalog). The checkpoint name is the one ``agent19 backfill`` gives the same table, SET
    and WHERE, so either resumes the other's run.
    """
    def render(step: BackfillStep) -> list[str]:
        spec = BackfillSpec(table=step.table, set=step.set, where=step.where, key=[key])
        create, call = procedure_parts(spec, key, key_type)
        return [create + ";", comment("run the CALL on its own, outside a transaction block (it commits every "
                                      "batch); after a failure, CALL it again: it resumes"),
                call + ";", drop_procedure(spec) + ";"]
    return render


def procedure_inverse(sql: str) -> str | None:
    """``DROP PROCEDURE`` for a ``CREATE PROCEDURE`` that :func:`procedure_parts` wrote (an ``agent19_backfill_…``
    procedure), else None: the rollback of a migration that created one drops it."""
    try:
        stmt = pglast.parse_sql(sql)[0].stmt
    except pglast.parser.ParseError:
        return None
    if type(stmt).__name__ != "CreateFunctionStmt" or not stmt.is_procedure or len(stmt.funcname) != 1:
        return None
    name = stmt.funcname[0].sval
    params = [p.name for p in stmt.parameters or ()]
    if not name.startswith("agent19_backfill_") or params[:2] != ["batch_size", "pause_s"]:
        return None
    return f"DROP PROCEDURE IF EXISTS {ident(name)}({_SIGNATURE if len(params) == 3 else _OLD_SIGNATURE})"


def procedure_name(spec: BackfillSpec) -> str:
    """The procedure :func:`procedure_parts` creates for ``spec`` (unqualified: the first schema of search_path)."""
    return short("agent19_backfill_" + "".join(ch if ch.isalnum() else "_" for ch in spec.checkpoint_name().lower()),
                 "")


def drop_procedure(spec: BackfillSpec) -> str:
    """Drops the procedure :func:`procedure_parts` creates (its checkpoint row stays, as agent19 backfill's does)."""
    return f"DROP PROCEDURE IF EXISTS {ident(procedure_name(spec))}({_SIGNATURE})"


_SIGNATURE = "integer, double precision, boolean"
_OLD_SIGNATURE = "integer, double precision"
"""the procedure's parameters before commit_batches (a migration file written by an earlier agent19)"""


def stand_in_call(call_sql: str) -> str | None:
    """For a dry run: the CALL of a procedure :func:`procedure_parts` wrote, with every batch in the caller's
    transaction (``commit_batches => false``) — the same rows updated, inside the dry run's rolled-back transaction;
    None for any other statement."""
    try:
        stmt = pglast.parse_sql(call_sql)[0].stmt
    except pglast.parser.ParseError:
        return None
    if type(stmt).__name__ != "CallStmt" or stmt.funccall.args:
        return None
    name = stmt.funccall.funcname[-1].sval
    if not name.startswith("agent19_backfill_"):
        return None
    return f"CALL {'.'.join(ident(n.sval) for n in stmt.funccall.funcname)}(commit_batches => false)"


@cache
def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("agent19.migrate.backfill", "templates"), undefined=StrictUndefined,
                      autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    # values reach the script as Python literals (repr), comments as one line: no text can escape either
    env.filters.update(pyrepr=repr, oneline=lambda v: " ".join(str(v).split()))
    return env


def script_filename(spec: BackfillSpec) -> str:
    return "backfill_" + (re.sub(r"[^a-z0-9]+", "_", spec.checkpoint_name().lower()).strip("_") or "run") + ".py"


def python_script(spec: BackfillSpec) -> str:
    """A standalone Python script (psycopg 3 only) running this backfill like :func:`run_backfill`.

    The key is ``spec.key`` or, at run time, the table's primary key (composite keys work too). The
    DSN comes from its first argument or ``DATABASE_URL``; batch size, pause and lock_timeout default
    to ``spec``'s and can be overridden on its command line.
    """
    check_fragments(spec)
    return _environment().get_template("backfill.py.j2").render(
        spec=spec, table=spec.table, set_sql=spec.set, where=spec.where, key=spec.key, name=spec.checkpoint_name(),
        checkpoint_table=CHECKPOINT_TABLE, q_lag=Q_LAG, version=agent19.__version__, filename=script_filename(spec))
