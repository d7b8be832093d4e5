"""agent19 reads the server's catalog by unqualified names (``pg_proc``, ``pg_locks``, ``set_config``…): its own
queries must resolve them in ``pg_catalog``.

The server searches ``pg_catalog`` before the ``search_path``'s schemas unless the path lists it explicitly after one
of them (``ALTER ROLE app SET search_path = evil, pg_catalog``); then ``evil.pg_proc`` — a view any role may create in
a schema it owns — answers agent19's guard, and a trigger's ``setval`` hides (review r26b j07). Likewise a temporary
relation named like a catalog one (``CREATE TEMP TABLE pg_locks``) is searched before ``pg_catalog``: ``pg_temp`` comes
first for relations unless listed. So:

* the trial guard's one catalog read (:data:`agent19.safety.trial.Q_TRIAL`) reads the ``search_path`` too, with
  ``pg_catalog.``-qualified functions, and refuses to judge code when it searches another schema before
  ``pg_catalog`` (:func:`shadowing`);
* a dry run reads it again after every statement, with the session's temporary relations named ``pg_*``
  (:data:`agent19.migrate.dryrun.cluster_guard.Q_SESSION_READS`): a statement that changes either is rolled back and
  refused.

Not yet: the read-only guard's walk (:mod:`agent19.safety.readonly_catalog`) reads names through the session's path;
an owner's ``search_path = public, pg_catalog`` is supported there (reads must keep working), so it needs the
catalog reads themselves qualified, not a refusal.
"""

from __future__ import annotations

SEARCH_PATH = "pg_catalog.current_setting('search_path')"
"""The session's search_path, read without resolving a name through it."""


def shadowing(path: str) -> str | None:
    """The schema searched before ``pg_catalog`` when ``path`` lists ``pg_catalog`` after it (``"$user"`` counts:
    it may name a schema), else None. ``pg_temp`` before ``pg_catalog`` is left to the session check: a new
    session has no temporary relations."""
    from agent19.migrate.classification.session_path import split_path  # the server's reading of a path

    names = split_path(path)
    if "pg_catalog" not in names:
        return None
    return next((n for n in names[:names.index("pg_catalog")] if n != "pg_temp"), None)


def refusal(path: str, schema: str) -> str:
    return (f"the session's search_path ({path}) searches schema {schema} before pg_catalog: agent19 reads the "
            f"catalog by its names (pg_proc, pg_locks, set_config...), which would then resolve to {schema}'s "
            "objects. Put pg_catalog first, or leave it out of the path (the server then searches it first): "
            "ALTER ROLE <login> SET search_path = pg_catalog, ...")
