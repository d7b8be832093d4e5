"""A restore runbook for this server: the exact commands for its version, with measured timings.

Rendered from ``agent19/report/templates/restore_runbook.md.j2`` (Markdown) and returned as data
(JSON). Timings come from a ``verify_backup`` result when one is given; without it the runbook
says the restore time is not measured rather than guessing.
"""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import BaseModel, Field, ValidationError

from agent19.db.binaries import pg_binary
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.ops.backup.archiver import archiver_status
from agent19.ops.backup.model import VerifyResult
from agent19.report.render import environment


class RestoreRunbook(BaseModel):
    database: str
    server_version: str
    major: int
    bindir: str
    data_directory: str | None = Field(description="None when the role may not read it")
    pgdata: str = Field(description="the data directory, or a placeholder to fill in")
    pgdata_guessed: bool = Field(default=False, description="pgdata is the packaged default, a guess: the login may "
                                 "not read data_directory (needs pg_read_all_settings or a superuser)")
    login: str = Field(default="", description="the role the runbook was made for (the connection's user)")
    superuser: bool = False
    createdb: bool = False
    superuser_extensions: list[tuple[str, str]] = Field(default=[], description="(extension, schema) of this "
                                                        "database that only a superuser may create (untrusted): a "
                                                        "superuser creates them before the login restores")
    superuser_dsn: str = Field(default="", description="the restored database as a superuser ('postgres' assumed)")
    superuser_admin_dsn: str = Field(default="", description="the postgres database as a superuser")
    login_sql: str = Field(default="", description="the login as an SQL identifier")
    restore_list_filter: str = Field(default="", description="grep leaving the superuser's extensions out of "
                                     "pg_restore's list (empty when there are none)")
    archive_mode: str
    archive_command: str
    archive_dir: str
    backup_dir: str
    dump_file: str
    jobs: int
    dsn: str = Field(description="the target's connection string without its password")
    admin_dsn: str
    restore_dsn: str
    restore_db_sql: str
    generated_at: str
    measured: VerifyResult | None = None
    markdown: str = ""
    written: list[str] = []


def _without_password(dsn: str, **overrides: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None and k != "password"}
    params.update(overrides)
    return make_conninfo(**params)


Q_LOGIN = """
SELECT current_user AS login, r.rolsuper AS superuser, r.rolcreatedb AS createdb
  FROM pg_roles r WHERE r.rolname = current_user"""


def _q_untrusted(version_num: int) -> str:
    """This database's extensions (not the built-in plpgsql) whose installed version only a superuser may create."""
    untrusted = "v.superuser AND NOT v.trusted" if version_num >= 130000 else "v.superuser"
    return f"""
SELECT e.extname::text AS name, n.nspname::text AS schema
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.oid >= 16384 AND coalesce((SELECT {untrusted} FROM pg_available_extension_versions v
                                     WHERE v.name = e.extname AND v.version = e.extversion), true)
 ORDER BY 1"""


def _ere(name: str) -> str:
    return "".join("\\" + c if c in ".^$*+?()[]{}|\\" else c for c in name)


def list_filter(extensions: list[tuple[str, str]]) -> str:
    """A grep that leaves ``extensions`` (their EXTENSION and COMMENT entries, and their schemas but public) out of
    ``pg_restore --list``: a superuser has created them."""
    if not extensions:
        return ""
    names = "|".join(_ere(e) for e, _ in extensions)
    schemas = "|".join(_ere(s) for s in sorted({s for _, s in extensions} - {"public", "pg_catalog"}))
    pattern = f" (EXTENSION -|COMMENT - EXTENSION) ({names})( |$)"
    if schemas:
        pattern = f"({pattern}| SCHEMA - ({schemas}) )"
    return f"grep -v -E {shlex.quote(pattern)}"


def _bindir(major: int) -> str:
    found = pg_binary("pg_restore", major)
    return str(Path(found).parent) if found else f"/usr/lib/postgresql/{major}/bin"


def load_verify_result(text_or_path: str) -> VerifyResult:
    path = Path(text_or_path)
    text = path.read_text() if not text_or_path.lstrip().startswith("{") and path.exists() else text_or_path
    try:
        return VerifyResult.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError) as exc:  # from a file: nothing of its content
        why = f"{text_or_path} is not a JSON document" if text is not text_or_path else str(exc).splitlines()[0]
        raise InputError(f"not a verify_backup result: {why}",
                         "pass the output of `agent19 backup verify --format json`") from None


def restore_runbook(db: Database, *, verify_result: str | None = None, archive_dir: str | None = None,
                    backup_dir: str | None = None, jobs: int = 4, write_dir: str | None = None) -> RestoreRunbook:
    with db.read() as conn:
        row = conn.execute(
            "SELECT current_setting('server_version') AS v, current_setting('server_version_num')::int AS n,"
            " current_database() AS d,"
            " (SELECT setting FROM pg_settings WHERE name = 'data_directory') AS data").fetchone()
        archiver = archiver_status(conn)
        who = conn.execute(Q_LOGIN).fetchone()
        untrusted = [] if who is None or who["superuser"] else \
            [(r["name"], r["schema"]) for r in conn.execute(_q_untrusted(int(row["n"]))).fetchall()]
    assert row is not None and who is not None
    major, dbname = int(row["n"]) // 10000, str(row["d"])
    restore_db = f"{dbname}_restored"
    book = RestoreRunbook(
        database=dbname, server_version=str(row["v"]), major=major, bindir=_bindir(major),
        data_directory=row["data"], pgdata=row["data"] or f"/var/lib/postgresql/{major}/main",
        pgdata_guessed=not row["data"], login=str(who["login"]), superuser=bool(who["superuser"]),
        createdb=bool(who["createdb"]), superuser_extensions=untrusted,
        superuser_dsn=_without_password(db.dsn, dbname=restore_db, user="postgres"),
        superuser_admin_dsn=_without_password(db.dsn, dbname="postgres", user="postgres"),
        login_sql=sql.Identifier(str(who["login"])).as_string(None),
        restore_list_filter=list_filter(untrusted),
        archive_mode=archiver.archive_mode, archive_command=archiver.archive_command,
        archive_dir=archive_dir or "/path/to/wal-archive", backup_dir=backup_dir or "/path/to/base-backup",
        dump_file=f"{dbname}.dump", jobs=jobs, dsn=_without_password(db.dsn),
        admin_dsn=_without_password(db.dsn, dbname="postgres"),
        restore_dsn=_without_password(db.dsn, dbname=restore_db),
        restore_db_sql=sql.Identifier(restore_db).as_string(None),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        measured=load_verify_result(verify_result) if verify_result else None,
    )
    env = environment()  # paths and connection strings are shell-quoted: pasted as written, they run as written
    env.filters.update(sh=shlex.quote, conf=lambda v: str(v).replace("'", "''"),
                       ident=lambda v: sql.Identifier(str(v)).as_string(None))
    book.markdown = env.get_template("restore_runbook.md.j2").render(r=book)
    if write_dir:
        out = Path(write_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "restore-runbook.md").write_text(book.markdown)
        book.written = [str((out / "restore-runbook.md").resolve()), str((out / "restore-runbook.json").resolve())]
        (out / "restore-runbook.json").write_text(book.model_dump_json(indent=2))
    return book
