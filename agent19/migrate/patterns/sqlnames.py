"""The one module that writes identifiers, literals and comment lines into SQL that agent19 generates.

Every generator (lint fixes, plans from change lists, zero-downtime patterns, runbooks, rollbacks,
backfills, catalog look-ups) quotes through these functions; a second quoting helper elsewhere is a
bug waiting (DESIGN.md, "one source for each kind of knowledge").

The rules are PostgreSQL's own ``quote_ident()``/``quote_literal()`` (src/backend/utils/adt/ruleutils.c,
``quote_identifier``): a name stays bare only when it is lower-case ASCII letters, digits and
underscores, does not start with a digit, and is not a keyword other than an unreserved one
(pglast ships the server's keyword lists). Everything else — upper case, spaces, a double quote,
unicode, ``user``, ``order``, ``values`` — is double-quoted with ``"`` doubled. Written by hand
rather than with ``psycopg.sql.Identifier`` because that always quotes (generated SQL is read by
people) and needs a connection to render.

Names are raw, as stored in the catalog (``Order`` is the mixed-case name, not ``order``).
``qname`` takes ``schema.table`` and splits at the last dot — or, written as SQL with double quotes
(``s."a.b"``), reads it as PostgreSQL does; use :func:`qualified` with the parts when a name itself may
contain a dot. :func:`table_arg` is the one reading of a table name a user gives a tool.
"""

from __future__ import annotations

import re
from typing import Any

from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

from agent19.errors import InputError

_SIMPLE = re.compile(r"[a-z_][a-z0-9_]*")
_KEYWORDS = frozenset(RESERVED_KEYWORDS) | frozenset(TYPE_FUNC_NAME_KEYWORDS) | frozenset(COL_NAME_KEYWORDS)
_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
NAMEDATALEN = 64
"""PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 bytes."""
DEFAULT_PG_VERSION = 11
"""The oldest version agent19 supports: the default when none is given (DESIGN.md)."""


def _check(name: str, what: str = "identifier") -> str:
    if not isinstance(name, str) or not name:
        raise InputError(f"an empty {what} cannot be written into SQL", "give the object's name")
    if "\x00" in name:
        raise InputError(f"{what} {name!r} contains a NUL byte, which PostgreSQL does not accept",
                         "remove the NUL character")
    if "\n" in name or "\r" in name:
        # generated scripts show names in -- comment lines, which a line break would end (the rest would run)
        raise InputError(f"{what} {name!r} contains a line break; agent19 does not write it into generated SQL",
                         "rename the object (ALTER ... RENAME TO) to a name on one line, then run agent19 again")
    return name


def needs_quotes(name: str) -> bool:
    """Whether PostgreSQL reads ``name`` differently (or not at all) unless it is double-quoted."""
    if name.isascii() and name.isidentifier() and name.islower():  # [a-z_][a-z0-9_]* with a letter: most names
        return name in _KEYWORDS
    return not _SIMPLE.fullmatch(name) or name in _KEYWORDS


_MEMO_LIMIT = 4096
_idents: dict[str, str] = {}
"""name → :func:`ident` of it (a pure function of the text; a lint writes the same names many times a statement)"""
_qnames: dict[str, str] = {}
"""name → :func:`qname` of it"""


def ident(name: str) -> str:
    """One identifier, double-quoted when PostgreSQL needs it (as ``quote_ident()`` does)."""
    written = _idents.get(name) if type(name) is str else None
    if written is not None:
        return written
    _check(name)  # raises for a name that cannot be written: never kept
    written = '"' + name.replace('"', '""') + '"' if needs_quotes(name) else name
    if len(_idents) >= _MEMO_LIMIT:
        _idents.clear()
    _idents[name] = written
    return written


def quoted(name: str) -> str:
    """One identifier, always double-quoted (for text read back exactly, e.g. ``to_regclass`` arguments)."""
    return '"' + _check(name).replace('"', '""') + '"'


def split_name(name: str) -> tuple[str | None, str]:
    """``schema.table`` → ``("schema", "table")``; ``table`` → ``(None, "table")``.

    A raw name is split at the last dot. A name written as SQL with double quotes (``s."a.b"``,
    ``"My Schema".t`` — what :func:`qualified` writes) is read as PostgreSQL reads it, so a dot inside
    quotes stays in its part. (A raw name that is itself a valid quoted SQL name, such as ``"x"`` with
    its quotes, is therefore read as SQL: write it with its quotes doubled inside quotes.)
    """
    if '"' in name:
        try:
            parts = parse_name(name)
        except InputError:
            parts = []  # not SQL (e.g. the raw name we"ird): a raw name
        if len(parts) == 2:
            return parts[0], parts[1]
        if len(parts) == 1:
            return None, parts[0]
        if parts:
            raise InputError(f"{name!r} has {len(parts)} parts; a table is name or schema.name",
                             "leave out the database name")
    schema, _, rel = name.rpartition(".")
    return (schema or None), rel


def table_arg(text: str) -> str:
    """A table name as a user gives it to a tool (``agent19 pattern``, ``agent19 backfill``, a change list) → the
    one SQL form every generator reads back exactly (:func:`qualified` of its parts).

    Both ways of writing it mean the same table everywhere: a raw name as the catalog stores it (``Order``,
    ``My Schema.order items``: no quotes, case kept, at most one dot, which separates the schema), or SQL
    with double quotes (``"My Schema"."a.b"``: quoted parts exact, unquoted parts folded to lower case as
    PostgreSQL does). A raw name with two or more dots is ambiguous and refused.
    """
    _check(text, "table name")
    if '"' not in text and text.count(".") > 1:
        first, second = text.split(".", 1), text.rsplit(".", 1)
        raise InputError(
            f"table name {text!r} is ambiguous: the schema could be {first[0]!r} or {second[0]!r}",
            f"write it as SQL with double quotes around the parts: {qualified(*first)} or {qualified(*second)}")
    return qualified(*split_name(text))


def qualified(*parts: str | None) -> str:
    """Parts of a name (``None`` parts skipped) quoted and joined with dots: ``qualified(schema, table)``."""
    written = []
    for p in parts:
        if p is not None:
            written.append(ident(p))
    return ".".join(written)


def relation_key(schema: str, name: str) -> str:
    """The one text for a relation that agent19 passes between modules and :func:`split_name` reads back exactly:
    ``schema.name`` as stored when neither part holds a dot or a double quote (every ordinary name); otherwise both
    parts double-quoted (``"public"."we.ird"``, ``"my.schema"."t"``), so the dot that separates them is the only
    unquoted one. The catalog's queries write the same text (:mod:`agent19.db.catalog`)."""
    if "." in schema or '"' in schema or "." in name or '"' in name:
        return f"{quoted(schema)}.{quoted(name)}"
    return f"{schema}.{name}"


def qname(name: str) -> str:
    """``schema.table`` or ``table``, each part quoted as needed."""
    written = _qnames.get(name) if type(name) is str else None
    if written is not None:
        return written
    schema, rel = split_name(_check(name, "name"))  # raises for a name that cannot be written: never kept
    written = qualified(schema, rel)
    if len(_qnames) >= _MEMO_LIMIT:
        _qnames.clear()
    _qnames[name] = written
    return written


def parse_name(text: str) -> list[str]:
    """A name as SQL text (``Orders``, ``s."Order Items"``) → its raw parts, as ``to_regclass`` reads it.

    Unquoted parts are folded to lower case (ASCII, as PostgreSQL does), quoted parts keep their case
    and ``""`` becomes ``"``. The inverse of :func:`qualified`.
    """
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] == '"':
            j, buf = i + 1, []
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise InputError(f"unterminated quoted name in {text!r}", 'close the double quote: "Name"')
                buf.append(text[j:k])
                if text.startswith('""', k):
                    buf.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            part = "".join(buf)
        else:
            j = i
            while i < n and text[i] not in '."' and not text[i].isspace():
                i += 1
            part = text[j:i].translate(_FOLD)
        while i < n and text[i].isspace():
            i += 1
        _check(part, "name part")
        parts.append(part)
        if i >= n:
            return parts
        if text[i] != ".":
            raise InputError(f"{text!r} is not a name or schema.name", 'quote names with spaces: s."My Table"')
        i += 1


def qname_exact(name: str) -> str:
    """``schema.table`` with every part always double-quoted (text ``to_regclass`` reads back exactly)."""
    schema, rel = split_name(_check(name, "name"))
    return ".".join(quoted(p) for p in (schema, rel) if p is not None)


def literal(text: str) -> str:
    """A string literal, as ``quote_literal()`` writes it: ``'it''s'``; ``E'a\\\\b'`` when it holds a backslash.

    The ``E''`` form reads the same whatever ``standard_conforming_strings`` is set to.
    """
    if "\x00" in text:
        raise InputError(f"text {text[:40]!r} contains a NUL byte, which PostgreSQL does not accept",
                         "remove the NUL character")
    body = text.replace("'", "''")
    if "\\" in body or "\n" in body or "\r" in body:  # E'' also keeps line breaks out of comment lines
        return "E'" + body.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r") + "'"
    return "'" + body + "'"


def regclass(name: str) -> str:
    """A literal usable as ``to_regclass(…)`` argument for a (possibly qualified) name."""
    return literal(qname(name))


def sibling(table: str, name: str) -> str:
    """``name`` in the schema of ``table`` (indexes live in their table's schema), as :func:`qualified` writes it
    (so a dot in either part is read back exactly)."""
    schema, _ = split_name(table)
    return qualified(schema, name)


def major(pg_version: int | None) -> int:
    """Accept 15, 150004 or None (the oldest supported version)."""
    if pg_version is None:
        return DEFAULT_PG_VERSION
    if pg_version >= 10000:
        return pg_version // 10000
    if pg_version < 9:
        raise InputError(f"pg_version {pg_version} is not a PostgreSQL major version", "give e.g. 15 or 150004")
    return pg_version


def short(name: str, suffix: str = "", limit: int = NAMEDATALEN - 1) -> str:
    """``name`` + ``suffix``, trimmed so the result fits PostgreSQL's 63-byte identifier limit.

    Trimmed on a character boundary (a multi-byte character is never cut in half), so the name
    PostgreSQL stores is exactly the one the generated SQL refers to afterwards.
    """
    room = limit - len(suffix.encode())
    base = name.encode()[:room].decode(errors="ignore")
    return base + suffix


def comment(text: str) -> str:
    """One ``--`` comment line: a line break in ``text`` (a catalog default, a name) would end the comment
    and turn the rest into a statement of the script, so every line break becomes a space."""
    return "-- " + " ".join(text.splitlines())


def conf_value(text: str) -> str:
    """A string value for postgresql.conf / ``postgresql.auto.conf`` (no ``E''`` there: backslash escapes)."""
    if "\n" in text or "\x00" in text:
        raise InputError(f"setting value {text[:40]!r} spans lines", "give a value on one line")
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def from_server(text: str) -> Any:
    """A relation's name as the server wrote it (``format('%I.%I')``, ``regclass::text``) → an SQL composable built
    here from its parts: text read back from a query is never pasted into SQL as it is (a function or operator that
    took the built-in's place in that query could have written a statement there instead of a name — review r28
    F12). Raises :class:`InputError` for anything but a name of one to three parts."""
    from psycopg import sql

    parts = parse_name(text)
    if not 1 <= len(parts) <= 3:
        raise InputError(f"{text!r} read back from the server is not a relation name")
    return sql.Identifier(*parts)


_TYPE_TEXT = re.compile(r'(?:\s*(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*|\(\s*\d+(?:\s*,\s*\d+)?\s*\)'
                        r'|\[\d*\]|\.))+\s*')


def type_from_server(text: str) -> Any:
    """A type as ``format_type`` wrote it (``character varying(40)``, ``"My Type"[]``), checked to be one before it
    goes into SQL (see :func:`from_server`)."""
    from psycopg import sql

    if not _TYPE_TEXT.fullmatch(text):
        raise InputError(f"{text!r} read back from the server is not a type name")
    return sql.SQL(text)
