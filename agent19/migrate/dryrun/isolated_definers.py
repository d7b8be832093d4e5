"""SECURITY DEFINER functions a superuser owns on the target, in an isolated copy
(:mod:`agent19.migrate.dryrun.isolated`).

The copy has no superuser but its own bootstrap one: a target's superuser exists there as a role of that name without
attributes, and owns there what it owns on the target (:mod:`agent19.migrate.dryrun.isolated_access`; an object a
predefined role owns stays the login's). A function runs as its caller, whoever owns it — except a SECURITY DEFINER
one, which runs as its owner: one a superuser owns runs on the target with every power, in the copy with none of
them. So the result names those functions (:func:`note`, read from the target's catalog: :data:`Q_DEFINERS`), and a
permission error (SQLSTATE 42501) raised inside one of them (the error's context names it) is the copy's limit, not
the migration's failure nor the login's missing privilege: the statement is reported as not testable in the copy
(:func:`explainer`, which the dry run asks: :attr:`agent19.db.connection.Database.denied_in_copy`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import tuple_row

Q_DEFINERS = """
SELECT pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
       n.nspname::text, p.proname::text, r.rolname::text
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
 WHERE p.prosecdef AND r.rolsuper AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_proc'::regclass
                   AND d.objid = p.oid AND d.deptype = 'e')
 ORDER BY 1"""
"""(identity, schema, name, owner) of each SECURITY DEFINER function a superuser owns (not an extension's: the copy's
superuser creates those, as on the target)."""
SHOWN = 10
"""How many of them the result names."""


@dataclasses.dataclass(frozen=True)
class Definer:
    identity: str
    schema: str
    name: str
    owner: str

    def named_in(self, context: str) -> bool:
        """The error context ``context`` names this function: PL/pgSQL's ``PL/pgSQL function s.f(int) line 3 …``
        (schema-qualified when not on the search_path, quoted when needed), SQL's ``SQL function "f" statement 1``."""
        def either(name: str) -> str:
            return f'(?:{re.escape(name)}|{re.escape(chr(34) + name.replace(chr(34), chr(34) * 2) + chr(34))})'

        return re.search(rf'function (?:{either(self.schema)}\.)?{either(self.name)}(?:\(| statement)',
                         context) is not None


def read(conn: psycopg.Connection[Any]) -> list[Definer]:
    """The rows of :data:`Q_DEFINERS` (a catalog read on the target)."""
    return [Definer(*map(str, row)) for row in conn.cursor(row_factory=tuple_row).execute(Q_DEFINERS).fetchall()]


def note(definers: list[Definer]) -> list[str]:
    """The result's note of them (at most :data:`SHOWN` named)."""
    if not definers:
        return []
    names = "; ".join(f"{d.identity} (owned by {d.owner})" for d in definers[:SHOWN])
    more = f" and {len(definers) - SHOWN} more" if len(definers) > SHOWN else ""
    return [f"{len(definers)} SECURITY DEFINER function(s) owned by a superuser on the target run without superuser "
            f"in the copy (their owner there is a role of that name without attributes): {names}{more}; a "
            "permission error inside one is reported as not testable in the copy"]


def explainer(definers: list[Definer]) -> Callable[[psycopg.Error], str | None] | None:
    """What the dry run says of a permission error raised inside one of ``definers`` (None: not inside one)."""
    if not definers:
        return None

    def explain(exc: psycopg.Error) -> str | None:
        context = exc.diag.context or ""
        inside = next((d for d in definers if d.named_in(context)), None)
        if inside is None:
            return None
        text = str(exc).strip()
        return (f"not testable in the isolated copy: function {inside.identity} runs there without superuser (owned "
                f"by superuser {inside.owner} on the target, SECURITY DEFINER), and it was refused a privilege "
                f"({text.splitlines()[0] if text else type(exc).__name__}); on the target it runs with the "
                "superuser's: dry-run on the target or a staging copy with its roles")

    return explain
