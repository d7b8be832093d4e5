"""The target's schema dump (``pg_dump --schema-only``), kept in this process (a running ``agent19 serve``) while
its catalogs are unchanged: a repeated dry run of an unchanged schema skips pg_dump.

What the digest covers: every catalog of the database whose rows ``pg_dump --schema-only --no-owner
--no-privileges --no-publications --no-subscriptions`` turns into SQL (``_CATALOGS``), by each row version's
``ctid`` and ``xmin``. A committed DDL inserts, updates or deletes rows of some of them, and a new row version has a
new ctid and xmin, so the digest changes; a rolled-back DDL, ANALYZE and VACUUM's in-place updates leave it as it
was (VACUUM FULL of a catalog moves rows: a new digest, a dump taken again — never a stale one). The dump also
names cluster-wide objects (roles in policies, tablespaces) and holds user mappings (pg_user_mapping: only a
superuser may read it), so the digest covers what this login sees of them too — the roles' and tablespaces' oids
and names and options, the user mappings' rows as pg_user_mappings shows them (as pg_dump reads them) — by value:
a role renamed is dumped again. A ctid and xmin name one row version only within one running server, so the
digest also covers the server's start time and ``system_identifier`` (when this login may read
``pg_control_system()``): a restart, a restored backup or a cluster made again is dumped again.

Kept in memory only, never on disk: a dump holds user mappings' options, passwords among them, and a file
outlives the process whose login and settings took it. Four dumps are kept; the least recently used go first.
Each is kept per target (:func:`target_key`: the connection parameters without the password, the libpq environment
variables and the server's major version): a DSN of the same text with another ``PGUSER``/``PGHOST``/… is another
target, whose dump is taken by its own login.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger(__name__)

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

_CATALOGS = (
    "pg_namespace", "pg_class", "pg_attribute", "pg_attrdef", "pg_constraint", "pg_index", "pg_trigger",
    "pg_rewrite", "pg_proc", "pg_type", "pg_enum", "pg_range", "pg_extension", "pg_sequence", "pg_inherits",
    "pg_partitioned_table", "pg_description", "pg_policy", "pg_collation", "pg_operator", "pg_opclass",
    "pg_opfamily", "pg_amop", "pg_amproc", "pg_cast", "pg_conversion", "pg_language", "pg_aggregate",
    "pg_statistic_ext", "pg_foreign_data_wrapper", "pg_foreign_server", "pg_foreign_table", "pg_event_trigger",
    "pg_ts_config", "pg_ts_config_map", "pg_ts_dict", "pg_ts_parser", "pg_ts_template", "pg_transform",
    "pg_seclabel", "pg_default_acl", "pg_init_privs", "pg_am", "pg_depend",
)
CAT = "OPERATOR(pg_catalog.||)"  # the operator the unqualified text chose (same argument types): the same digest
Q_CATALOG_STATE = (
    "SELECT pg_catalog.md5(pg_catalog.concat_ws('|', pg_catalog.pg_postmaster_start_time(), "
    "CASE WHEN pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') "
    "THEN (SELECT system_identifier FROM pg_catalog.pg_control_system()) END, "
    f"(SELECT pg_catalog.string_agg(c {CAT} ':' {CAT} n {CAT} ':' {CAT} h, ',' ORDER BY c) FROM ("
    + " UNION ALL ".join(f"SELECT '{c}' AS c, pg_catalog.count(*) AS n, "
                         f"coalesce(pg_catalog.sum(pg_catalog.hashtext(ctid::pg_catalog.text {CAT} ' ' {CAT} "
                         f"xmin::pg_catalog.text)), 0) AS h FROM pg_catalog.{c}" for c in _CATALOGS)
    + ") s), "
    f"(SELECT pg_catalog.md5(pg_catalog.string_agg(oid::pg_catalog.text {CAT} ' ' {CAT} rolname, ',' ORDER BY oid)) "
    "FROM pg_catalog.pg_roles), "
    "(SELECT pg_catalog.md5(pg_catalog.string_agg(pg_catalog.concat_ws(' ', oid, spcname, spcoptions), ',' "
    "ORDER BY oid)) FROM pg_catalog.pg_tablespace), "
    "(SELECT pg_catalog.md5(pg_catalog.string_agg(pg_catalog.concat_ws(' ', umid, srvid, umuser, usename, umoptions), "
    "',' ORDER BY umid)) FROM pg_catalog.pg_user_mappings))) AS catalog_state")

KEPT = 4
Target = tuple[str, tuple[tuple[str, str], ...], int]  # see target_key
_DUMPS: OrderedDict[tuple[Target, str], bytes] = OrderedDict()  # (target, catalog state) -> its dump
_LOCK = threading.Lock()


def target_key(dsn: str, major: int) -> Target:
    """The target as a cache key (of the kept dumps, and of :mod:`scratch_pool`'s databases made ahead): its
    connection parameters without the password, the libpq environment variables that could change the login or
    the server (every ``PG*`` but ``PGPASSWORD``: libpq reads them for what the DSN leaves out) and the server's
    major version."""
    params = conninfo_to_dict(dsn)
    params.pop("password", None)
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PG") and k != "PGPASSWORD"))
    return make_conninfo(**params), env, major


def state_of(row: Any) -> str | None:
    """The digest in a row of :data:`Q_CATALOG_STATE`."""
    value = next(iter(row.values())) if isinstance(row, dict) else row[0] if row else None
    return str(value) if value is not None else None


def catalog_state(conn: psycopg.Connection[Any]) -> str | None:
    """A digest of the database's catalogs that changes with every committed DDL (see the module doc)."""
    return state_of(conn.execute(Q_CATALOG_STATE).fetchone())


def kept(target: Target) -> bool:
    """Whether a dump of this target is kept: then its digest is worth reading."""
    with _LOCK:
        return any(k[0] == target for k in _DUMPS)


def lookup(target: Target, state: str) -> bytes | None:
    """The dump kept under ``state``, or None."""
    key = (target, state)
    with _LOCK:
        if (dump := _DUMPS.get(key)) is not None:
            _DUMPS.move_to_end(key)
        return dump


def store(target: Target, state: str, dump: bytes) -> None:
    """Keep ``dump`` under ``state``."""
    _remember((target, state), dump)


def _remember(key: tuple[Target, str], dump: bytes) -> None:
    with _LOCK:
        _DUMPS[key] = dump
        _DUMPS.move_to_end(key)
        while len(_DUMPS) > KEPT:
            _DUMPS.popitem(last=False)
