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
    assert row is not None
    major, dbname = int(row["n"]) // 10000, str(row["d"])
    restore_db = f"{dbname}_restored"
    book = RestoreRunbook(
        database=dbname, server_version=str(row["v"]), major=major, bindir=_bindir(major),
        data_directory=row["data"], pgdata=row["data"] or f"/var/lib/postgresql/{major}/main",
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
    env.filters.update(sh=shlex.quote, conf=lambda v: str(v).replace("'", "''"))
    book.markdown = env.get_template("restore_runbook.md.j2").render(r=book)
    if write_dir:
        out = Path(write_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "restore-runbook.md").write_text(book.markdown)
        book.written = [str((out / "restore-runbook.md").resolve()), str((out / "restore-runbook.json").resolve())]
        (out / "restore-runbook.json").write_text(book.model_dump_json(indent=2))
    return book
