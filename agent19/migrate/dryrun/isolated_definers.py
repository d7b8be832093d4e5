"""SECURITY DEFINER functions whose owner has, on the target, a power the copy does not give, in an isolated copy
(:mod:`agent19.migrate.dryrun.isolated`).

The copy has no superuser but its own: a target's superuser exists there as a role of that name without
attributes, and owns there what it owns on the target (:mod:`agent19.migrate.dryrun.isolated_access`; an object a
predefined role owns stays the login's); no role is a member of a predefined role there (``pg_read_all_data``,
``pg_write_all_data``…), none has BYPASSRLS. A function runs as its caller, whoever owns it — except a SECURITY
DEFINER one, which runs as its owner: one owned by such a role runs on the target with that power, in the copy
without it. So the result names those functions (:func:`note`, read from the target's catalog: :data:`Q_DEFINERS`),
and a permission error (SQLSTATE 42501) the server raised inside one of them is the copy's limit, not the
migration's failure nor the login's missing privilege: the statement is reported as not testable in the copy
(:func:`explainer`, which the dry run asks: :attr:`agent19.db.connection.Database.denied_in_copy`).

The error's context names the function as the server prints it: PL/pgSQL ``PL/pgSQL function s.f(integer) line 3
…`` with its argument types, matched to the definer's (an overload of the same name, or a function of that name in
another schema, is not the definer: r27b-k05); SQL ``SQL function "f" statement 1`` without them, matched only when
no other function has that name. The innermost frame decides, and a ``RAISE`` there is the function's own refusal
(it fails on the target too), not a privilege the copy lacks.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import tuple_row

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

Q_DEFINERS = """
SELECT pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
       n.nspname::pg_catalog.text, p.proname::pg_catalog.text, r.rolname::pg_catalog.text,
       pg_catalog.oidvectortypes(p.proargtypes),
       CASE WHEN r.rolsuper THEN 'superuser'
            ELSE pg_catalog.concat_ws(', ',
                   CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
                   (SELECT 'member of ' OPERATOR(pg_catalog.||)
                           pg_catalog.string_agg(g.rolname::pg_catalog.text, ', ' ORDER BY g.rolname)
                      FROM pg_catalog.pg_roles g
                     WHERE g.rolname OPERATOR(pg_catalog.~) '^pg_' AND g.oid OPERATOR(pg_catalog.<>) r.oid
                       AND pg_catalog.pg_has_role(r.oid, g.oid, 'USAGE')))
       END,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc o WHERE o.proname OPERATOR(pg_catalog.=) p.proname)
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) p.proowner
 WHERE p.prosecdef AND n.nspname OPERATOR(pg_catalog.!~) '^pg_'
   AND n.nspname OPERATOR(pg_catalog.<>) 'information_schema'
   AND (r.rolsuper OR r.rolbypassrls OR EXISTS (
          SELECT 1 FROM pg_catalog.pg_roles g WHERE g.rolname OPERATOR(pg_catalog.~) '^pg_'
             AND g.oid OPERATOR(pg_catalog.<>) r.oid AND pg_catalog.pg_has_role(r.oid, g.oid, 'USAGE')))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_proc'::pg_catalog.regclass
                   AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e')
 ORDER BY 1"""
"""(identity, schema, name, owner, argument types as the server prints them, the owner's power the copy does not
give, how many functions have that name) of each SECURITY DEFINER function whose owner is a superuser, has
BYPASSRLS or is a member of a predefined role (not an extension's: the copy's superuser creates those, as on the
target)."""
SHOWN = 10
"""How many of them the result names."""


@dataclasses.dataclass(frozen=True)
class Definer:
    identity: str
    schema: str
    name: str
    owner: str
    arguments: str = ""
    """Its argument types as the server prints them in an error's context (``integer, text``)."""
    power: str = "superuser"
    """What its owner has on the target and not in the copy: ``superuser``, ``BYPASSRLS``, ``member of pg_…``."""
    namesakes: int = 1
    """How many functions have its name (any schema, any arguments)."""

    def named_in(self, frame: str) -> bool:
        """The error context's line ``frame`` is this function: PL/pgSQL's ``PL/pgSQL function s.f(integer) line 3 …``
        (schema-qualified when not on the search_path, quoted when needed) with its argument types; SQL's ``SQL
        function "f" statement 1`` (no arguments: only when no other function has its name)."""
        def either(name: str) -> str:
            return f'(?:{re.escape(name)}|{re.escape(chr(34) + name.replace(chr(34), chr(34) * 2) + chr(34))})'

        named = rf'(?:{either(self.schema)}\.)?{either(self.name)}'
        if re.match(rf'PL/pgSQL function {named}\({re.escape(self.arguments)}\)(?: |$)', frame):
            return True
        return self.namesakes == 1 and re.match(rf'SQL function "?{named}"? ', frame) is not None


def _frames(context: str) -> list[str]:
    """The function frames of an error's context, innermost first (``SQL statement "…"`` lines left out: user text)."""
    return [line.strip() for line in context.splitlines() if re.match(r"\s*(?:PL/pgSQL|SQL) function ", line)]


def read(conn: psycopg.Connection[Any]) -> list[Definer]:
    """The rows of :data:`Q_DEFINERS` (a catalog read on the target)."""
    return [Definer(*map(str, row[:6]), namesakes=int(row[6]))
            for row in conn.cursor(row_factory=tuple_row).execute(Q_DEFINERS).fetchall()]


def _owner(d: Definer) -> str:
    return f"owned by {d.owner}" + ("" if d.power == "superuser" else f", {d.power}")


def note(definers: list[Definer]) -> list[str]:
    """The result's note of them (at most :data:`SHOWN` named)."""
    if not definers:
        return []
    names = "; ".join(f"{d.identity} ({_owner(d)})" for d in definers[:SHOWN])
    more = f" and {len(definers) - SHOWN} more" if len(definers) > SHOWN else ""
    return [f"{len(definers)} SECURITY DEFINER function(s) owned by a superuser (or a role with BYPASSRLS or a "
            f"predefined role's membership) on the target run without it in the copy (their owner there is a role "
            f"of that name without attributes or memberships): {names}{more}; a permission error inside one is "
            "reported as not testable in the copy"]


def explainer(definers: list[Definer]) -> Callable[[psycopg.Error], str | None] | None:
    """What the dry run says of a permission error raised inside one of ``definers`` (None: not inside one — the
    innermost function frame is not one of them, or it is a ``RAISE``: the function's own refusal)."""
    if not definers:
        return None

    def explain(exc: psycopg.Error) -> str | None:
        frames = _frames(exc.diag.context or "")
        if not frames or frames[0].endswith(" at RAISE"):
            return None
        inside = next((d for frame in frames for d in definers if d.named_in(frame)), None)  # innermost first
        if inside is None:
            return None
        text = str(exc).strip()
        where = (f"superuser (owned by superuser {inside.owner} on the target, SECURITY DEFINER)"
                 if inside.power == "superuser" else
                 f"its owner's {inside.power} (owned by {inside.owner} on the target, SECURITY DEFINER)")
        return (f"not testable in the isolated copy: function {inside.identity} runs there without {where}, and it "
                f"was refused a privilege ({text.splitlines()[0] if text else type(exc).__name__}); on the target "
                f"it runs with its owner's: dry-run on the target or a staging copy with its roles")

    return explain
