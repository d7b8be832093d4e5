"""A dry run in an isolated copy: the target's schema restored into a throwaway cluster, the migration run there.

A dry run on the target (:mod:`agent19.migrate.dryrun.run`) contains what a rollback undoes; code can act outside a
transaction (a signal to the application's sessions, ``setval``), so its guard (:mod:`agent19.safety.trial`) refuses
any statement whose code it cannot prove contained — every statement, when the database has one trigger whose
function uses ``EXECUTE``. Reading code is evadable; isolation is not: here the migration runs where its code reaches
nobody's sessions, sequences or locks.

How (:func:`isolated_copy`, :func:`isolated_dry_run`):

1. The target is read (its major version, login, database name, role names) and dumped, while step 2 runs:
   ``pg_dump --schema-only --no-owner --no-privileges`` (:func:`agent19.migrate.dryrun.early_scratch.cached_dump`: a
   running server reuses the dump while the target's catalogs are unchanged). Only reads reach it.
   Tables the login cannot lock (pg_dump would fail) are left out, and stood in for by empty tables with the
   target's owner and privileges (:mod:`agent19.migrate.dryrun.isolated_unreadable`).
2. A throwaway cluster of the target's major version (:mod:`agent19.db.throwaway_cluster`: found like backup
   verification finds it, exactly that major) starts in a work directory ``agent19-isolated-<pid>-<random>``, on a
   private Unix socket, with an environment that holds none of agent19's (no ``DATABASE_URL``, ``PGPASSWORD``,
   ``HOME``'s ``.pgpass``). Its bootstrap superuser's name is random per run (:func:`bootstrap_name`; a target
   role of that name is refused), its every session's search_path pinned (:data:`PINNED`). What it may write on
   this machine, and the run's time, are bounded (:mod:`agent19.migrate.dryrun.isolated_limits`).
3. There, the target's roles exist by name (NOLOGIN, no attributes), so a ``GRANT … TO app`` or a policy ``TO app``
   works; the target's login exists by its name as a LOGIN role **without** SUPERUSER (CREATEDB only, for the dry
   run's scratch databases), member of the roles it is a member of on the target (none of the predefined ``pg_*``
   roles), and owns a database of the target's name. The cluster's superuser creates the extensions that need one
   (:func:`agent19.ops.backup.restorer.precreate`), of those the target's catalog lists (``pg_extension``, never
   text in the dump); the login loads the rest of the dump with ``psql``. Then the
   cluster's superuser gives every object its owner and ACL on the target, and the login the target's database and
   role settings (:mod:`agent19.migrate.dryrun.isolated_access`, read from the target's catalog in step 1): the copy
   refuses what the target refuses for want of a privilege, and resolves names through its search_path. What cannot
   be made (an event trigger, a function in an untrusted language, an extension not installed here, a setting the
   copy refuses) is said, not hidden.
   A SECURITY DEFINER function a superuser owns on the target runs there without the superuser's powers: said too,
   and a permission error inside one is the copy's limit, not the migration's failure
   (:mod:`agent19.migrate.dryrun.isolated_definers`).
   No rows are copied (a sample would be loaded before the guard screens the migration: the copy's triggers and
   CHECK constraints would run unguarded).
4. :func:`agent19.migrate.dryrun.run.dry_run` runs on that copy, unchanged, its guard set to ``contained``
   (:attr:`agent19.db.connection.Database.contained`, a token the server holds too in its setting
   ``agent19.isolated_copy``, checked by the guard; the guard's categories:
   :data:`agent19.safety.function_facts.IN_ISOLATED_COPY`): signals to sessions, ``setval``, advisory locks, code
   agent19 cannot read run there; what leaves the copy (dblink, postgres_fdw, foreign tables, server files, a
   language the server does not sandbox) is still refused or not run.
5. The cluster is stopped and its directory removed in ``finally`` (on an error or Ctrl-C too), on SIGTERM/SIGHUP
   and at exit; after a SIGKILL, by the next run (:func:`agent19.ops.backup.workdir.remove_leftovers`).

The result is a normal :class:`~agent19.migrate.dryrun.model.DryRunResult`, labelled (``isolated``, the summary):
lock modes, rewrites and errors are the server's; durations are those of empty tables.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import tuple_row

from agent19.config import AccessMode
from agent19.db import catalog_first, throwaway_cluster
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.dryrun import (
    isolated_access,
    isolated_definers,
    isolated_limits,
    isolated_unreadable,
    scratch_schema,
)
from agent19.migrate.dryrun.early_scratch import cached_dump
from agent19.migrate.dryrun.model import DryRunResult, Finding, IsolatedCopy, StatementResult
from agent19.migrate.parse import Statement
from agent19.ops.backup import restorer
from agent19.ops.backup.workdir import PREFIXES, work_dir

Progress = Callable[[float, float | None, str | None], None]
BOOTSTRAP = "agent19_isolated_admin_"
"""The prefix of the throwaway cluster's bootstrap superuser's name, random per run (:func:`bootstrap_name`): a role
of the target cannot be named so in advance, so no object of the target is given to the copy's superuser (r26b j03)."""
PINNED = "-c search_path=pg_catalog,pg_temp"
"""The options of every superuser session in the copy: the target's settings never reach them (they are the login's,
:func:`agent19.migrate.dryrun.isolated_access.apply`), and this pins their search_path too (r26b j01)."""
APPLICATION = "agent19 isolated dry run"
QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified
CREATE_ROLE, GRANT_ROLE = "CREATE ROLE {} NOLOGIN", "GRANT {} TO {}"
CREATE_LOGIN = "CREATE ROLE {} LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
GIVE_POSTGRES, CREATE_DATABASE = "ALTER DATABASE postgres OWNER TO {}", "CREATE DATABASE {} OWNER {}"
"""The copy's roles and database, made by its superuser (:func:`_roles`)."""

Q_TARGET = """SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int4 AS version,
       current_user::pg_catalog.text AS login, pg_catalog.current_database()::pg_catalog.text AS dbname,
       array(SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.!~) '^pg_'
                AND rolname OPERATOR(pg_catalog.<>) current_user ORDER BY 1) AS roles,
       array(SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.!~) '^pg_'
                AND rolname OPERATOR(pg_catalog.<>) current_user
                AND pg_catalog.pg_has_role(current_user, oid, 'MEMBER') ORDER BY 1) AS member_of"""


@dataclasses.dataclass
class Copy:
    """The isolated copy while it exists: ``db`` is the target's login on it (no superuser; guard contained)."""

    db: Database
    info: IsolatedCopy
    path: Path


def _roles(admin: str, login: str, roles: list[str], member_of: list[str], dbname: str) -> None:
    """The target's roles by name, its login (no superuser) a member of what it is a member of, owning ``dbname``."""
    ident = sql.Identifier
    with catalog_first.connect(admin, autocommit=True) as conn:
        for role in roles:
            conn.execute(sql.SQL(CREATE_ROLE).format(ident(role)))
        conn.execute(sql.SQL(CREATE_LOGIN).format(ident(login)))
        for role in member_of:
            conn.execute(sql.SQL(GRANT_ROLE).format(ident(role), ident(login)))
        if dbname == "postgres":  # initdb's, empty: given to the login
            conn.execute(sql.SQL(GIVE_POSTGRES).format(ident(login)))
        else:
            conn.execute(sql.SQL(CREATE_DATABASE).format(ident(dbname), ident(login)))


Q_EXTENSION_VERSIONS = ("SELECT extname::pg_catalog.text, extversion::pg_catalog.text FROM pg_catalog.pg_extension "
                        "WHERE extname OPERATOR(pg_catalog.<>) 'plpgsql'")


def bootstrap_name() -> str:
    """The copy's bootstrap superuser for one run: :data:`BOOTSTRAP` and 16 random hex digits."""
    return BOOTSTRAP + secrets.token_hex(8)


def _other_versions(copy_admin: str, target: dict[str, str]) -> list[str]:
    """What differs between the target's extension versions (``target``: name to version) and the copy's, which
    has what this machine installs by default: a function an extension changed between versions may behave
    otherwise."""
    with catalog_first.connect(copy_admin, autocommit=True) as conn:
        here = dict(conn.execute(Q_EXTENSION_VERSIONS).fetchall())
    return [f"extension {name} is version {here[name]} in the copy, {version} on the target"
            for name, version in sorted(target.items()) if name in here and here[name] != version]


def _without_schemas(dump: bytes, schemas: list[str]) -> bytes:
    """The dump without its ``CREATE SCHEMA`` of ``schemas`` (made already, for an extension made first): only the
    first such line of each, pg_dump's own (it dumps schemas before any object whose text could hold one: a function
    body or a comment keeps a line that reads so)."""
    for schema in schemas:
        name = re.escape(restorer.sql_ident(schema))
        dump = re.sub(rf"^CREATE SCHEMA {name};$\n?".encode(), b"", dump, count=1, flags=re.MULTILINE)
    return dump


@contextmanager
def isolated_copy(db: Database, progress: Progress | None = None, work_base: Path | None = None) -> Iterator[Copy]:
    """The target's schema in a throwaway cluster (see the module docstring), removed when the block exits."""
    say = progress or (lambda done, total, message: None)
    db.require(AccessMode.DRY_RUN, "test_migration in an isolated copy (a dry run)")
    with db.read() as conn:
        row = conn.execute(Q_TARGET).fetchone()
        # the extensions the copy's superuser creates: the target's catalog says which, never text in the dump (a
        # comment or a function body can hold any "CREATE EXTENSION" line)
        extensions = restorer.source_extensions(conn)
        versions = dict(conn.cursor(row_factory=tuple_row).execute(Q_EXTENSION_VERSIONS).fetchall())
        unreadable = isolated_unreadable.read_unreadable(conn)  # left out of the dump: pg_dump could not lock them
        definers = isolated_definers.read(conn)  # SECURITY DEFINER functions of owners with powers the copy lacks
    assert row is not None
    target: dict[str, Any] = dict(row) if isinstance(row, dict) else dict(zip(
        ("version", "login", "dbname", "roles", "member_of"), row, strict=True))
    major, login, dbname = int(target["version"]) // 10000, str(target["login"]), str(target["dbname"])
    superuser = bootstrap_name()
    if superuser in (login, *target["roles"]) or dbname in ("template0", "template1"):
        raise InputError(f"cannot make an isolated copy of database {dbname} as login {login}: the name is the "
                         "throwaway cluster's own", "dry-run as another login, or of another database")
    bindir = throwaway_cluster.server_bindir(major)
    # pg_dump runs while the cluster is made (it only reads the target); waited for on the way out, whatever happens
    with (work_dir(work_base, prefix=PREFIXES[1]) as wd, ThreadPoolExecutor(2, thread_name_prefix="agent19-dump") as bg,
          ExitStack() as limits):
        dumped = bg.submit(cached_dump, db, major,  # a running server reuses it while the catalogs are unchanged
                           exclude_tables=[isolated_unreadable.pattern(t.schema, t.table) for t in unreadable])
        reading = bg.submit(isolated_access.read_access, db)  # owners, ACLs, settings: given to the copy once restored
        say(0, None, f"starting a throwaway PostgreSQL {major} cluster in {wd.path}; pg_dump --schema-only of the "
                     "target meanwhile")
        token = secrets.token_hex(16)  # the guard checks the server holds it (agent19.safety.trial.check)
        most = isolated_limits.max_bytes(db.settings, wd.path)  # what the copy may write on this machine
        cluster = throwaway_cluster.start(wd, bindir / "initdb", superuser, name="copy",
                                          env=throwaway_cluster.server_environment(wd.path),
                                          settings={"agent19.isolated_copy": f"'{token}'",
                                                    **isolated_limits.server_settings(most)})
        # stops the cluster past the limit or the time (then raises, when the block exits: before the cleanup)
        limits.enter_context(isolated_limits.Watchdog(wd, most, isolated_limits.max_seconds(db.settings)))
        admin = make_conninfo(cluster.dsn(), application_name=APPLICATION, options=PINNED)
        roles = list(target["roles"])
        _roles(admin, login, roles, [r for r in target["member_of"] if r in roles], dbname)
        say(0, None, "restoring the target's schema there")
        (dump, failure), how = dumped.result()
        if dump is None:
            raise InputError(f"could not copy the target's schema: {failure}",
                             "the login needs to read every object pg_dump dumps (or dry-run without isolated)")
        made, schemas, errors = restorer.precreate(make_conninfo(admin, dbname=dbname),
                                                   extensions, owner=login)
        # the tables left out, stood in for before the load where their types exist (what is made over them is made)
        later, stood = isolated_unreadable.stand_ins_first(make_conninfo(admin, dbname=dbname), unreadable, login)
        copy_dsn = make_conninfo(cluster.dsn(dbname), user=login, application_name=APPLICATION)
        failure = scratch_schema.load_schema(copy_dsn, major, (_without_schemas(dump, schemas + stood), None),
                                             skip_extensions=made, stop_on_error=False)
        errors += isolated_unreadable.stand_ins(make_conninfo(admin, dbname=dbname), later, login)
        # their defaults and constraints, as the login (their owner until the target's owners are given)
        completed, lacking = isolated_unreadable.complete(copy_dsn, unreadable)
        errors += completed
        # the target's owners, privileges and settings, from its catalog (isolated_access: no user code runs)
        applied = isolated_access.apply(make_conninfo(admin, dbname=dbname), reading.result(), login, dbname,
                                        superuser)
        errors += applied.notes
        errors += (_other_versions(make_conninfo(admin, dbname=dbname), versions) + isolated_unreadable.note(unreadable)
                   + isolated_definers.note(definers))
        copy = Database(dataclasses.replace(db.settings, dsn=copy_dsn, read_dsn=None, mode=AccessMode.DRY_RUN))
        copy.contained = token
        copy.denied_in_copy = isolated_definers.explainer(definers)
        info = IsolatedCopy(
            major=major, role=login, rows=0, restore_errors=errors + ([failure] if failure else []), dump=how,
            access_unmade=applied.unmade, stand_ins_lacking=lacking,
            where=f"an isolated copy of the schema in a throwaway PostgreSQL {major} cluster (run as role {login}, "
                  "no superuser; the target's owners, privileges and settings); no rows: lock modes, rewrites and "
                  "errors are observed there, durations are not those of the real data")
        try:
            yield Copy(copy, info, wd.path)
        finally:
            copy.close()


def rising(progress: Progress) -> Progress:
    """``progress`` whose value always increases, as MCP requires: the copy's making reports at 0, and the dry run
    there starts again from 0 — a repeated value advances by a millionth."""
    furthest = [-1.0]

    def report(done: float, total: float | None, message: str | None) -> None:
        furthest[0] = done if done > furthest[0] else furthest[0] + 1e-6
        progress(furthest[0], total, message)

    return report


def label(result: DryRunResult, copy: Copy, target: Database) -> DryRunResult:
    """``result`` (a dry run of ``copy``) said to be one, for the ``target`` it copies."""
    info = copy.info
    info.removed = not copy.path.exists()
    result.isolated = info
    result.database = target.display_dsn
    result.summary += (f"; in an isolated copy of the schema in a throwaway PostgreSQL {info.major} cluster; no rows "
                       "(durations are not the real data's)")
    if info.restore_errors:
        result.findings.append(Finding(kind="skipped", severity="warning", message=(
            "the isolated copy differs from the target where its schema could not be restored: "
            + "; ".join(info.restore_errors))))
    if info.access_unmade:
        _not_testable(result, info.access_unmade)
    _touching_stand_ins(result, info.stand_ins_lacking)
    return result


def _touching_stand_ins(result: DryRunResult, lacking: dict[str, str]) -> None:
    """Each statement that ran without error and touched (locked) a stand-in the copy could not make as the target
    has the table (``lacking``: :attr:`IsolatedCopy.stand_ins_lacking`) made not testable: a trigger, a rule or a
    policy there would decide what the copy does not (r27b-k03)."""
    marked = []
    for s in result.statements:
        touched = [lock.relation for lock in s.locks if lock.relation in lacking]
        touched += [prior.relation for prior in s.held_before if prior.relation in lacking]
        if s.error is not None or s.untested or not touched:
            continue
        s.untested = (f"not testable in the isolated copy: table {touched[0]} is a stand-in there (this login cannot "
                      f"read it on the target: left out of the dump) without its {lacking[touched[0]]}: dry-run on "
                      "the target or a staging copy")
        marked.append(s)
        result.findings.append(Finding(kind="not_tested", severity="warning", statement=s.index, file=s.file,
                                       line=s.line, message=f"could not test: {s.untested}"))
    _say_untested(result, marked)


def _not_testable(result: DryRunResult, unmade: list[str]) -> None:
    """Every statement of ``result`` that ran without error made not testable: the copy may allow what the target
    refuses (``unmade``: the owner and privilege statements it refused, :attr:`IsolatedCopy.access_unmade`) — a
    table left the login's passes an ``ALTER TABLE`` its owner on the target alone may run (r27b-k09)."""
    why = (f"not testable in the isolated copy: {len(unmade)} owner or privilege statement(s) of the target could "
           f"not be made there ({'; '.join(unmade[:3])}), so the copy may allow what the target refuses: dry-run "
           "on the target or a staging copy with its roles")
    marked = [s for s in result.statements if s.error is None and not s.untested]
    for s in marked:
        s.untested = why
        result.findings.append(Finding(kind="not_tested", severity="warning", statement=s.index, file=s.file,
                                       line=s.line, message=f"could not test: {why}"))
    _say_untested(result, marked)


def _say_untested(result: DryRunResult, marked: list[StatementResult]) -> None:
    """The summary of ``result`` saying the statements ``marked`` (made not testable after the run) were not."""
    if not marked:
        return
    result.complete = False
    if result.summary.startswith("PASSED"):
        result.summary = "COULD NOT TEST" + result.summary[len("PASSED"):]
    result.summary += (f"; could not test {len(marked)} statement(s) "
                       f"({', '.join(str(s.index + 1) for s in marked[:10])}): {marked[0].untested}")


def refuse_unmeasurable(sample_rows: int, measure_blocking: bool, scratch_copy: str = "auto") -> None:
    """Raise :class:`InputError` for what an isolated copy cannot measure, its tables being empty: sample rows (they
    would be loaded before the guard screens the migration) and blocking probes (on empty tables a statement holding
    an ACCESS EXCLUSIVE lock for milliseconds blocks nothing measurable: "not blocked" would say nothing of the
    target); and for a TEMPLATE scratch copy (``scratch_copy="template"``: the target's rows): the isolated copy is
    always the target's schema restored into a throwaway cluster, without rows, and the dry run's scratch databases
    are made from it (``schema`` and ``empty`` keep their meaning there: how those are made)."""
    if scratch_copy == "template":
        raise InputError("scratch_copy template (a copy with the target's rows) does not apply to an isolated dry "
                         "run: the isolated copy is always the target's schema (pg_dump) restored into a throwaway "
                         "cluster, without rows, and the dry run's scratch databases are made from that copy",
                         "leave scratch_copy (--scratch-copy) at auto (or schema) with isolated, or drop isolated "
                         "to dry-run on the target with a template scratch copy")
    if sample_rows:
        raise InputError("sample rows are not copied into an isolated copy (its tables are empty)",
                         "leave sample_rows at 0 with isolated")
    if measure_blocking:
        raise InputError("blocking is not measured in an isolated copy: its tables are empty, so a probe there says "
                         "nothing about how long the target's reads and writes would wait",
                         "measure_blocking without isolated (on the target or a staging copy with its data)")


def isolated_dry_run(db: Database, statements: list[Statement], *, progress: Progress | None = None,
                     work_base: Path | None = None, **options: Any) -> DryRunResult:
    """:func:`agent19.migrate.dryrun.run.dry_run` of ``statements`` in an isolated copy of ``db``'s schema
    (``options``: dry_run's, but ``sample_rows``: the copy has no rows); the copy is removed before it returns."""
    from agent19.migrate.dryrun.run import dry_run

    refuse_unmeasurable(int(options.get("sample_rows") or 0), bool(options.get("measure_blocking")),
                        str(options.get("scratch_copy") or "auto"))
    progress = rising(progress) if progress is not None else None
    with isolated_copy(db, progress, work_base) as copy:
        result = dry_run(copy.db, statements, progress=progress, **options)
    return label(result, copy, db)
