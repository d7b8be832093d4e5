"""The ``TRIAL`` layer's question of powers: a trial as a privileged login runs no other role's code.

A trial (a dry run, EXPLAIN ANALYZE of a write, a measured write) runs as the main login, and so does the code the
server runs around the statement: triggers, defaults, constraints, domains, views, rules, operators, the functions
they call — of the tables the statement names and, through those functions, foreign-key cascades and rules, of any
other table. :mod:`agent19.safety.trial` reads that code before the trial and refuses what escapes the rollback, but
a catalog read is not a boundary: whoever owns an object can replace it, or add a trigger or a better-matching
overload, between agent19's check and the run (review r31 F4), and following links out of the tables a statement
names is never complete (review r33: a superuser's trigger writing into the application's table, a cascade into
it, a superuser's view or domain over the application's function, an overload the application adds — each ran the
application's code as the superuser). So the question is asked of the whole database, as the trial's closure asks
it (:mod:`agent19.safety.closure`): when the login is privileged
(:data:`agent19.safety.privileged.TRIAL_PRIVILEGED`) and the database has
objects of another role that is not a superuser — the database or a schema it owns, its tables, views, functions,
types, operators, foreign servers, text search objects or conversions — or such a role may create objects there
(``CREATE`` on a schema or the database, ``TRIGGER`` on a table — to PUBLIC too: it could add code while the trial
runs, after the check; review r34 F1, F2), no statement is tried
(:class:`~agent19.safety.trial.PrivilegedTrial`), unless the operator accepts it with ``--allow-privileged-reads``.
Connecting ``--dsn`` as the application's role removes the question: its owner's code then runs with no more than
the owner's powers. A database whose every object a superuser (or the login) owns is tried as before, and so is
an isolated copy (:mod:`agent19.migrate.dryrun.isolated`: what runs there stays in its throwaway cluster).
"""

from __future__ import annotations

from typing import Any

from agent19.safety.privileged import TRIAL_PRIVILEGED

_SYSTEM = "({n} !~ '^pg_' AND {n} <> 'information_schema')"
# (rank in the message, what, owner) of every object whose owner could change the code a trial runs
_OWNED = f"""
SELECT 1 AS rank, pg_catalog.format('function %%I.%%I', n.nspname, p.proname) AS what, p.proowner AS owner
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE {_SYSTEM.format(n="n.nspname")}  -- another session's pg_temp_N: reached only through a trigger (counted)
UNION ALL
SELECT 2, pg_catalog.format('%%s %%I.%%I', CASE c.relkind WHEN 'v' THEN 'view' WHEN 'f' THEN 'foreign table'
                            WHEN 'm' THEN 'materialized view' ELSE 'table' END, n.nspname, c.relname), c.relowner
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_SYSTEM.format(n="n.nspname")}
UNION ALL
SELECT 3, pg_catalog.format('type %%I.%%I', n.nspname, t.typname), t.typowner
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typtype IN ('d', 'e', 'r', 'm', 'b') AND t.typelem = 0 AND {_SYSTEM.format(n="n.nspname")}
UNION ALL
SELECT 4, pg_catalog.format('operator %%s.%%s', n.nspname, o.oprname), o.oprowner
  FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
 WHERE {_SYSTEM.format(n="n.nspname")}
UNION ALL
SELECT 5, pg_catalog.format('foreign server %%I', s.srvname), s.srvowner FROM pg_catalog.pg_foreign_server s
UNION ALL
SELECT 5, pg_catalog.format('text search configuration %%I', cfgname), cfgowner FROM pg_catalog.pg_ts_config
UNION ALL
SELECT 5, pg_catalog.format('text search dictionary %%I', dictname), dictowner FROM pg_catalog.pg_ts_dict
UNION ALL
SELECT 5, pg_catalog.format('conversion %%I', conname), conowner FROM pg_catalog.pg_conversion
UNION ALL
SELECT 6, pg_catalog.format('schema %%I', nspname), nspowner FROM pg_catalog.pg_namespace
 WHERE {_SYSTEM.format(n="nspname")}
UNION ALL
SELECT 7, pg_catalog.format('database %%I', datname), datdba FROM pg_catalog.pg_database
 WHERE datname = pg_catalog.current_database()
"""
# (rank, what, grantee; 0: PUBLIC) of every right to add code while the trial runs (after the check): to create in
# a schema or the database, or a trigger (its WHEN clause too, which no one owns) on a table
_GRANTED = f"""
SELECT 8 AS rank, pg_catalog.format('the right to create in schema %%I', n.nspname) AS what, a.grantee
  FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
 WHERE {_SYSTEM.format(n="n.nspname")} AND a.privilege_type = 'CREATE'
UNION ALL
SELECT 8, pg_catalog.format('the right to create schemas in database %%I', d.datname), a.grantee
  FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a
 WHERE d.datname = pg_catalog.current_database() AND a.privilege_type = 'CREATE'
UNION ALL
SELECT 8, pg_catalog.format('the right to create triggers on table %%I.%%I', n.nspname, c.relname), a.grantee
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
       pg_catalog.aclexplode(c.relacl) a
 WHERE c.relkind IN ('r', 'p', 'v', 'f') AND {_SYSTEM.format(n="n.nspname")} AND a.privilege_type = 'TRIGGER'
"""

Q_OTHERS = f"""
(WITH login AS (SELECT s.rolname, s.rolsuper, s.rolcreaterole, s.rolbypassrls, s.rolreplication,
                       ARRAY(SELECT g FROM pg_catalog.unnest(%(trial_privileged)s::pg_catalog.text[]) g
                              WHERE pg_catalog.to_regrole(g) IS NOT NULL
                                AND pg_catalog.pg_has_role(session_user, pg_catalog.to_regrole(g), 'MEMBER')) AS roles
                  FROM pg_catalog.pg_roles s WHERE s.rolname = session_user),
      -- a role it is a member of (SET ROLE reaches it, and code can too)
      above AS (SELECT g.rolname, g.rolsuper, g.rolcreaterole, g.rolbypassrls FROM pg_catalog.pg_roles g
                 WHERE g.rolname <> session_user
                   AND (g.rolsuper OR g.rolcreaterole OR g.rolbypassrls OR g.rolreplication)
                   AND pg_catalog.pg_has_role(session_user, g.oid, 'MEMBER')),
      powers AS (SELECT CASE WHEN rolsuper THEN 'a superuser'
                             WHEN rolcreaterole THEN 'a role with CREATEROLE'
                             WHEN rolbypassrls THEN 'a role with BYPASSRLS'
                             WHEN rolreplication THEN 'a role with REPLICATION'
                             WHEN EXISTS (SELECT FROM above) THEN
                                  (SELECT pg_catalog.format('a member of %%I, %%s', rolname,
                                          CASE WHEN rolsuper THEN 'a superuser' WHEN rolcreaterole
                                               THEN 'a role with CREATEROLE' WHEN rolbypassrls
                                               THEN 'a role with BYPASSRLS' ELSE 'a role with REPLICATION' END)
                                     FROM above ORDER BY rolsuper DESC, rolcreaterole DESC LIMIT 1)
                             WHEN roles <> '{{}}' THEN 'a member of ' || pg_catalog.array_to_string(roles, ', ')
                        END AS powers
                   FROM login),
      hits AS (SELECT g.rank, g.what, 'PUBLIC' AS owner FROM ({_GRANTED}) g WHERE g.grantee = 0
               UNION ALL
               SELECT o.rank, o.what, r.rolname::text AS owner
                 FROM ({_OWNED} UNION ALL {_GRANTED}) o
                 -- pg_database_owner (14+, public's owner by default) stands for the database's owner
                 JOIN pg_catalog.pg_roles r ON r.oid = CASE
                        WHEN o.owner = pg_catalog.to_regrole('pg_database_owner') THEN
                             (SELECT datdba FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
                        ELSE o.owner END
                WHERE NOT r.rolsuper AND r.rolname <> session_user)
 SELECT pg_catalog.json_build_object(
          'powers', (SELECT powers FROM powers),
          'count', (SELECT pg_catalog.count(*) FROM hits),
          'owners', (SELECT pg_catalog.json_agg(DISTINCT owner) FROM hits),
          'object_owners', (SELECT pg_catalog.json_agg(DISTINCT owner) FROM hits WHERE rank < 8),
          'grant', (SELECT pg_catalog.json_build_array(what, owner) FROM hits WHERE rank = 8 ORDER BY what LIMIT 1),
          'examples', (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(what, owner))
                         FROM (SELECT * FROM hits ORDER BY rank, what LIMIT 3) e))
  WHERE (SELECT powers FROM powers) IS NOT NULL AND EXISTS (SELECT FROM hits))
"""
"""The objects of roles less privileged than a privileged login (``powers``: what makes it so; ``count``;
``owners``; three ``examples`` as ``[what, owner]``); NULL when the login is not privileged or the database has none.
A column of the trial's one catalog read (:data:`agent19.safety.trial.Q_TRIAL`, run under ``pg_catalog, pg_temp``);
its parameter: ``trial_privileged``."""
PARAMETERS = {"trial_privileged": list(TRIAL_PRIVILEGED)}
OPT_IN = "--allow-privileged-reads (AGENT19_ALLOW_PRIVILEGED_READS=1)"


def _revoke(what: str, grantee: str) -> str:
    """The REVOKE that takes back a right :data:`_GRANTED` names (``what``) from ``grantee``."""
    for phrase, sql in (("the right to create triggers on table ", "TRIGGER ON "),
                        ("the right to create in schema ", "CREATE ON SCHEMA "),
                        ("the right to create schemas in database ", "CREATE ON DATABASE ")):
        if what.startswith(phrase):
            return f"REVOKE {sql}{what.removeprefix(phrase)} FROM {grantee}"
    return "REVOKE it"


def refusal(others: dict[str, Any] | None, login: str) -> str | None:
    """Why no statement is tried, from :data:`Q_OTHERS`'s value ``others`` for ``login``; None when nothing stops it."""
    if not others:
        return None
    owners = [str(o) for o in others.get("owners") or []]
    shown = "; ".join(f"{what} ({'granted to' if what.startswith('the right') else 'owner'} {owner})"
                      for what, owner in others.get("examples") or [])
    count = int(others.get("count") or 0)
    more = f" and {count - 3} more" if count > 3 else ""
    ways = []
    if object_owners := others.get("object_owners"):
        ways.append(f"connect --dsn as the application's role ({object_owners[0]}): its code then runs with no more "
                    "than its own powers")
    if grant := others.get("grant"):
        ways.append(f"revoke a right to add code that is not needed ({_revoke(*grant)}; TRIGGER is the part of "
                    "GRANT ALL that matters here)")
    ways.append(f"accept the risk with {OPT_IN}")
    return (f"this database has objects of role(s) {', '.join(owners)}, or lets them add code, and they are not "
            f"superusers: {shown}{more}; a trial runs as the login {login}, {others.get('powers')}, and the server "
            "may run their code with the login's powers (a trigger, default, domain, view, operator or function "
            "reached through any table, cascade or call, or added between agent19's check and the run); "
            + "; or ".join(ways))
