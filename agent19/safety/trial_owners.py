"""The ``TRIAL`` layer's question of powers: whose code a trial runs, and with whose powers.

A trial (a dry run, EXPLAIN ANALYZE of a write, a measured write) runs as the main login, and so does the code the
server runs around the statement: a table's triggers, defaults, constraints, index expressions, rules, policies,
and the functions they call. :mod:`agent19.safety.trial` reads that code before the trial and refuses what escapes
the rollback, but a catalog read is not a boundary: whoever owns a table or a function can add a trigger or replace
a function between agent19's check and the run (review r31 F4: ``CREATE OR REPLACE`` every few milliseconds got
past a check in 6 of 20 runs). When the login is privileged (a superuser, or a member of a role that reaches
server files, programs or other sessions: :data:`agent19.safety.gate.PRIVILEGED_ROLES`) and a statement reaches
objects of a role without those powers, that role's code would run with the login's powers — so the statement is
not run (:class:`PrivilegedTrial`, a kind of :class:`~agent19.safety.trial.Untestable`) unless the operator
accepts it with ``--allow-privileged-reads``. Connecting ``--dsn`` as the application's role that owns the tables
removes the question: its owner's code then runs with no more than the owner's powers.

What a statement reaches here (:data:`Q_OTHERS`, read with the trial's one catalog read, only for a privileged
login): a table, view, function or type it names (by name, in any schema, like :mod:`agent19.safety.closure`) owned
by another role that is not a superuser; a table it names whose trigger, default, constraint, index, policy or rule
calls a function of such a role, or whose column is of such a role's type (a domain's CHECK); and a table whose
partition or inheritance child is any of these. Not followed (said in the README): functions such a role owns that
a superuser's function calls by name in its body, and its operators and casts.
"""

from __future__ import annotations

from typing import Any

from agent19.safety.gate import PRIVILEGED_ROLES

# kinds of a dependent object that belong to a table (the table is in the column named), and what to call them
_DEPENDENTS = (
    ("pg_trigger", "tgrelid", "trigger"),
    ("pg_attrdef", "adrelid", "column default"),
    ("pg_constraint", "conrelid", "constraint"),
    ("pg_policy", "polrelid", "policy"),
    ("pg_rewrite", "ev_class", "rule"),
)
_JOINS = "\n".join(
    f"  LEFT JOIN pg_catalog.{table} x{i} ON d.classid = 'pg_catalog.{table}'::pg_catalog.regclass "
    f"AND x{i}.oid = d.objid"
    for i, (table, _column, _what) in enumerate(_DEPENDENTS))
_TABLE = ", ".join(f"x{i}.{column}" for i, (_table, column, _what) in enumerate(_DEPENDENTS))
_KIND = " ".join(f"WHEN x{i}.oid IS NOT NULL THEN '{what}'" for i, (_table, _column, what) in enumerate(_DEPENDENTS))

Q_OTHERS = f"""
(WITH RECURSIVE lesser AS (SELECT oid, rolname::text AS owner FROM pg_catalog.pg_roles
                           WHERE NOT rolsuper AND rolname <> session_user),
 found AS (
   SELECT c.oid AS rel, l.owner,
          pg_catalog.format('%%s %%I.%%I', CASE c.relkind WHEN 'v' THEN 'view' WHEN 'f' THEN 'foreign table'
                                        WHEN 'm' THEN 'materialized view' ELSE 'table' END,
                            n.nspname, c.relname) AS what
     FROM pg_catalog.pg_class c
     JOIN lesser l ON l.oid = c.relowner
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   UNION ALL
   SELECT t.oid, l.owner,
          pg_catalog.format('table %%I.%%I, whose %%s calls function %%I.%%I', tn.nspname, t.relname,
                            CASE WHEN ix.indexrelid IS NOT NULL THEN 'index' {_KIND} END, n.nspname, p.proname)
     FROM pg_catalog.pg_depend d
     JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = d.refobjid
     JOIN lesser l ON l.oid = p.proowner
     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
{_JOINS}
     LEFT JOIN pg_catalog.pg_index ix ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                      AND ix.indexrelid = d.objid
     JOIN pg_catalog.pg_class t ON t.oid = COALESCE(ix.indrelid, {_TABLE})
     JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
   UNION ALL
   SELECT t.oid, l.owner, pg_catalog.format('table %%I.%%I, whose column %%I is of type %%I.%%I', tn.nspname,
                                            t.relname, a.attname, yn.nspname, y.typname)
     FROM pg_catalog.pg_attribute a
     JOIN pg_catalog.pg_class t ON t.oid = a.attrelid AND t.relkind IN ('r', 'p', 'v', 'm', 'f')
     JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
     JOIN pg_catalog.pg_type y ON y.oid = a.atttypid
     JOIN lesser l ON l.oid = y.typowner
     JOIN pg_catalog.pg_namespace yn ON yn.oid = y.typnamespace
    WHERE a.attnum > 0 AND NOT a.attisdropped),
 -- a relation under its own name and its ancestors' (a write to a parent reaches its partitions and children)
 up AS (SELECT DISTINCT rel, rel AS via FROM found
        UNION SELECT up.rel, i.inhparent FROM up JOIN pg_catalog.pg_inherits i ON i.inhrelid = up.via)
 SELECT pg_catalog.json_agg(pg_catalog.json_build_array(o.name, o.what, o.owner))
   FROM (SELECT c.relname::text AS name, f.owner,
                CASE WHEN up.via = f.rel THEN f.what
                     ELSE pg_catalog.format('%%s (under %%I.%%I)', f.what, cn.nspname, c.relname) END AS what
           FROM found f
           JOIN up ON up.rel = f.rel
           JOIN pg_catalog.pg_class c ON c.oid = up.via
           JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
         UNION ALL
         SELECT p.proname::text, l.owner, pg_catalog.format('function %%I.%%I', n.nspname, p.proname)
           FROM pg_catalog.pg_proc p
           JOIN lesser l ON l.oid = p.proowner
           JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         UNION ALL
         SELECT y.typname::text, l.owner, pg_catalog.format('type %%I.%%I', n.nspname, y.typname)
           FROM pg_catalog.pg_type y
           JOIN lesser l ON l.oid = y.typowner
           JOIN pg_catalog.pg_namespace n ON n.oid = y.typnamespace
          WHERE y.typtype <> 'c' OR y.typrelid = 0) o
  WHERE EXISTS (SELECT FROM pg_catalog.pg_roles s
                 WHERE s.rolname = session_user
                   AND (s.rolsuper OR EXISTS (SELECT FROM pg_catalog.unnest(%(privileged)s::pg_catalog.text[]) g
                                               WHERE pg_catalog.to_regrole(g) IS NOT NULL
                                                 AND pg_catalog.pg_has_role(session_user, pg_catalog.to_regrole(g),
                                                                            'MEMBER')))))
"""
"""Objects of roles less privileged than the login that a statement can reach, as ``[name, what, owner]`` (the
name a statement would use; what and whose, for the message); NULL when the login is not privileged. A column of
the trial's one catalog read (:data:`agent19.safety.trial.Q_TRIAL`, run under ``pg_catalog, pg_temp``); its
parameter: ``privileged``."""
PARAMETERS = {"privileged": list(PRIVILEGED_ROLES)}
OPT_IN = "--allow-privileged-reads (AGENT19_ALLOW_PRIVILEGED_READS=1)"


def refusal(rows: dict[str, Any], names: set[str]) -> str | None:
    """Why a statement that uses ``names`` is not run, from the trial's catalog read ``rows`` (:data:`Q_OTHERS` as
    ``others``, and ``login``, ``login_superuser``); None when it reaches no object of a less privileged role."""
    hits = sorted({(str(what), str(owner)) for name, what, owner in rows.get("others") or [] if name in names})
    if not hits:
        return None
    login = rows.get("login")
    powers = "a superuser" if rows.get("login_superuser") else \
        "a member of a role that reaches server files, programs or other sessions"
    owners = sorted({owner for _what, owner in hits})
    shown = "; ".join(f"{what} (owner {owner})" for what, owner in hits[:3])
    more = f" and {len(hits) - 3} more" if len(hits) > 3 else ""
    return (f"it reaches code of role(s) {', '.join(owners)}: {shown}{more}; it would run as the login {login}, "
            f"{powers}, and an owner can add a trigger or replace a function between agent19's check and the run; "
            f"connect --dsn as the application's role that owns the tables ({owners[0]}), or accept the risk with "
            f"{OPT_IN}")
