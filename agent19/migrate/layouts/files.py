"""Migration files as the tools that run them see them: which files, in which order, in which transaction.

Recognised conventions (a directory is read in its tool's order):

==============  ==============================================  ==========================================
convention      files                                           order, transaction
==============  ==============================================  ==========================================
flyway          ``V<version>__<desc>.sql``, ``U<version>__``     version compared numerically part by part
                (undo), ``R__<desc>.sql`` (repeatable)           (``V1_10`` after ``V1_9``), repeatables
                                                                 last by description. Flyway wraps each
                                                                 file in a transaction unless it contains a
                                                                 statement that cannot run in one.
golang-migrate  ``<version>_<title>.up.sql`` / ``.down.sql``     version as an unsigned integer. The file is
                                                                 sent as one multi-statement query, which
                                                                 PostgreSQL runs as one implicit transaction.
prisma          ``migrations/<timestamp>_<name>/migration.sql``  directory name; one script, one implicit
                (optional ``down.sql`` beside it)                transaction (as golang-migrate).
numbered        ``001_init.sql``, ``0002-add-x.sql``             leading number, numerically; each statement
                                                                 on its own (as ``psql -f`` runs them)
plain           any other ``*.sql``                              file name; each statement on its own
==============  ==============================================  ==========================================

Explicit ``BEGIN`` … ``COMMIT`` in a file is honoured in every convention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agent19.errors import InputError
from agent19.migrate.parse import Statement, parse_sql, read_sql_file

Convention = Literal["flyway", "golang-migrate", "prisma", "numbered", "plain", "text"]

_FLYWAY = re.compile(r"^(?P<kind>[VU])(?P<version>\d+(?:[._]\d+)*)__(?P<desc>.*)\.sql$", re.IGNORECASE)
_FLYWAY_REPEATABLE = re.compile(r"^R__(?P<desc>.*)\.sql$", re.IGNORECASE)
_GOLANG = re.compile(r"^(?P<version>\d+)_(?P<desc>.*)\.(?P<dir>up|down)\.sql$", re.IGNORECASE)
_PRISMA_DIR = re.compile(r"^(?P<version>\d{8,})_(?P<desc>.+)$")
_NUMBERED = re.compile(r"^(?P<version>\d+)(?:[-_.]+(?P<desc>.*?))?\.sql$", re.IGNORECASE)

_TX_BEGIN = {"TRANS_STMT_BEGIN", "TRANS_STMT_START"}
_TX_END = {"TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED",
           "TRANS_STMT_ROLLBACK_PREPARED"}


@dataclass(kw_only=True)
class Migration:
    """One migration: its identity, the statements it runs, and how its tool runs them."""

    id: str = field(metadata={
        "description": "the version (Flyway/golang-migrate/numbered/Prisma timestamp) or the file name"})
    name: str = field(metadata={"description": "the description part of the file name"})
    convention: Convention
    file: str | None = field(default=None, metadata={"description": "the up file (None for SQL given as text)"})
    down_file: str | None = field(default=None, metadata={
        "description": "the matching undo/down file, when there is one"})
    statements: list[Statement]
    wrapped: bool = field(metadata={
        "description": "the tool runs the whole file in one transaction (Flyway, golang-migrate, Prisma)"})
    text: str = field(default="", repr=False, metadata={
        "description": "the file's text (for ignore comments)", "exclude": True})

    def transaction_groups(self) -> list[int | None]:
        """For each statement, the id of the transaction it runs in, or ``None`` when it runs alone.

        Explicit ``BEGIN``/``COMMIT`` blocks get one id each; in a wrapped file every statement
        outside an explicit block shares one id. Transaction-control statements themselves get ``None``.
        """
        groups: list[int | None] = []
        current: int | None = None
        next_id = 1
        wrapped_id = 0 if self.wrapped else None
        for s in self.statements:
            kind = s.fields.get("kind") if s.node == "TransactionStmt" else None
            if kind in _TX_BEGIN:
                current, next_id = next_id, next_id + 1
                groups.append(None)
            elif kind in _TX_END:
                current = None
                groups.append(None)
            else:
                groups.append(current if current is not None else wrapped_id)
        return groups


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.split(r"[._]", version) if p)


def _natural_key(name: str) -> tuple[object, ...]:
    return tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name))


def has_non_transactional(statements: Iterable[Statement]) -> bool:
    for s in statements:
        f = s.fields
        if s.node in ("IndexStmt", "ReindexStmt") and (f.get("concurrent") or _reindex_concurrent(f)):
            return True
        if s.node == "DropStmt" and f.get("concurrent"):
            return True
        if s.node in ("CreatedbStmt", "DropdbStmt", "AlterSystemStmt", "CreateTableSpaceStmt"):
            return True
        if s.node == "VacuumStmt" and f.get("is_vacuumcmd"):
            return True
        if s.node == "AlterTableStmt" and any(
            c.get("AlterTableCmd", {}).get("subtype") == "AT_DetachPartition"
            and c["AlterTableCmd"].get("def", {}).get("PartitionCmd", {}).get("concurrent")
            for c in f.get("cmds", [])
        ):
            return True
    return False


def _reindex_concurrent(fields: dict[str, object]) -> bool:
    params = fields.get("params") or []
    return any(
        isinstance(p, dict) and p.get("DefElem", {}).get("defname") == "concurrently" for p in params  # type: ignore[union-attr]
    )


def _classify(path: Path) -> tuple[Convention, str, str, str | None]:
    """(convention, id, name, role) of one file; role is ``up``, ``down`` or ``None`` (not a migration)."""
    name = path.name
    if m := _FLYWAY.match(name):
        return "flyway", m["version"].replace("_", "."), m["desc"].replace("_", " "), (
            "up" if m["kind"].upper() == "V" else "down"
        )
    if m := _FLYWAY_REPEATABLE.match(name):
        return "flyway", "R", m["desc"].replace("_", " "), "up"
    if m := _GOLANG.match(name):
        return "golang-migrate", m["version"], m["desc"], m["dir"].lower()
    if name in ("migration.sql", "down.sql") and (m := _PRISMA_DIR.match(path.parent.name)):
        return "prisma", m["version"], m["desc"], "up" if name == "migration.sql" else "down"
    if m := _NUMBERED.match(name):
        return "numbered", m["version"], m["desc"] or "", "up"
    if name.lower().endswith(".sql"):
        return "plain", path.stem, path.stem, "up"
    return "plain", path.stem, path.stem, None


def _sort_key(conv: Convention, ident: str, name: str, path: Path) -> tuple[object, ...]:
    if conv == "flyway":
        return (0, (1, name.lower()) if ident == "R" else (0, _version_key(ident)), str(path))
    if conv == "golang-migrate":
        return (0, (int(ident),), str(path))
    if conv == "prisma":
        return (0, (path.parent.name,), str(path))
    if conv == "numbered":
        return (0, (int(ident), name.lower()), str(path))
    return (1, _natural_key(str(path)), str(path))


def load_file(path: Path, down_file: Path | None = None) -> Migration:
    """One migration file (its convention is read from its name)."""
    conv, ident, name, role = _classify(path)
    text = read_sql_file(path)
    statements = parse_sql(text, str(path))
    # golang-migrate sends the file as one query string: PostgreSQL wraps it in an implicit transaction only when
    # it holds several statements (a one-statement file runs CREATE INDEX CONCURRENTLY)
    wrapped = conv == "prisma" or (conv == "golang-migrate" and len(statements) > 1) or (
        conv == "flyway" and not has_non_transactional(statements))
    return Migration(
        id=ident, name=name, convention=conv, file=str(path), down_file=str(down_file) if down_file else None,
        statements=statements, wrapped=wrapped, text=text,
    )


def load_text(sql: str, name: str = "migration", statements: list[Statement] | None = None) -> Migration:
    """SQL given as text: statements run one by one unless it has explicit ``BEGIN``/``COMMIT``. ``statements``:
    ``parse_sql(sql)`` already at hand (it is not parsed again)."""
    return Migration(id=name, name=name, convention="text",
                     statements=parse_sql(sql) if statements is None else statements, wrapped=False, text=sql)


def _files_of(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*")
        if p.suffix.lower() == ".sql" and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def load_path(path: Path) -> list[Migration]:
    """A file (one migration) or a directory (its migrations in the tool's order; down files attached)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory", "give migration files or directories")
    if path.is_file():
        conv, ident, _, role = _classify(path)
        return [load_file(path, _down_for(path, conv, ident) if role == "up" else None)]
    ups: list[tuple[tuple[object, ...], Path, Convention, str]] = []
    downs: dict[tuple[Convention, str], Path] = {}
    for p in _files_of(path):
        conv, ident, name, role = _classify(p)
        if role == "down":
            downs[(conv, ident)] = p
        elif role == "up":
            ups.append((_sort_key(conv, ident, name, p), p, conv, ident))
    ups.sort(key=lambda u: u[0])
    return [load_file(p, downs.get((conv, ident)) if ident != "R" else None) for _, p, conv, ident in ups]


def _down_for(path: Path, conv: Convention, ident: str) -> Path | None:
    if conv == "golang-migrate":
        cand = path.with_name(path.name[: -len(".up.sql")] + ".down.sql")
        return cand if cand.exists() else None
    if conv == "prisma":
        cand = path.with_name("down.sql")
        return cand if cand.exists() else None
    if conv == "flyway" and ident != "R":
        for cand in path.parent.glob("[Uu]*__*.sql"):
            m = _FLYWAY.match(cand.name)
            if m and m["kind"].upper() == "U" and m["version"].replace("_", ".") == ident:
                return cand
    return None


def load_paths(paths: Iterable[Path | str]) -> list[Migration]:
    """Every migration under ``paths``: one history. When all follow one tool's convention (Flyway, golang-migrate,
    Prisma, numbered) they are in that tool's order whichever way they were named (a shell glob puts ``V10__``
    before ``V2__``; Flyway merges its locations by version); else each path's migrations in its tool's order,
    paths in the given order."""
    out: list[Migration] = []
    seen: set[Path] = set()
    for p in paths:  # a file named twice (or given beside its directory) runs once, so it is linted once
        for m in load_path(Path(p)):
            key = Path(m.file).resolve() if m.file else None
            if key is None or key not in seen:
                out.append(m)
                seen.update([key] if key else [])
    conventions = {m.convention for m in out}
    if len(conventions) == 1 and conventions.isdisjoint(("plain", "text")):
        out.sort(key=lambda m: _sort_key(m.convention, m.id, m.name, Path(m.file or "")))
    return out
