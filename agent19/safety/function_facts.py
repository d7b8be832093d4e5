"""What built-in functions do beyond returning a value: one table read by every guard.

Three guards ask about functions, each its own question:

* read-only mode (:mod:`agent19.safety.readonly`): may a read call it? — never a function with an effect
  in this table, except sequence functions (the server's read-only transaction refuses those itself, and
  a backfill in execute mode may legitimately call ``nextval``);
* a dry run (:func:`agent19.safety.readonly.check_escapes`, and in the code a statement reaches
  :mod:`agent19.safety.trial`): does its effect survive the rollback? — ``escapes`` (refused), except sequence
  calls: ``setval`` (:data:`SEQUENCE_MOVES`) is not run, ``nextval`` (:data:`SEQUENCE_FORWARD`) only leaves a gap;
  SQL given as a string (:data:`SQL_FROM_STRING`) is code the guard cannot read: not run;
* destructive-operation detection (:mod:`agent19.safety.detect`): is calling it the point of the statement
  (a side effect such as terminating a session or deleting a large object)? — ``side_effect``.

A function whose effect the table does not know is judged by the server's catalog (volatility, language)
where a connection is at hand; :data:`DENIED_PREFIXES` covers families whose members come and go between
versions and extensions.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Effect(StrEnum):
    SERVER_FILES = "reads or writes files on the database server"
    LARGE_OBJECTS = "reads or writes large objects"
    SESSIONS = "acts on other sessions"
    SERVER = "acts on the server (configuration, WAL, backups, statistics)"
    SETTINGS = "changes settings"
    LOCKS = "takes or releases advisory locks"
    REMOTE = "runs SQL on another server"
    SQL_FROM_STRING = "runs SQL given as a string, unseen by the guard"
    NOTIFY = "sends notifications"
    REPLICATION = "creates, consumes or drops replication state"
    MAINTENANCE = "changes index or visibility data"
    CONFIG_FILES = "reads the server's configuration files"
    SEQUENCE = "advances or sets a sequence"


class Fact(NamedTuple):
    effect: Effect
    escapes: bool = False  # a rolled-back transaction does not undo it
    side_effect: bool = False  # calling it is what the statement is for


def _facts(effect: Effect, names: str, *, escapes: bool = False, side_effect: bool = False) -> dict[str, Fact]:
    return {n: Fact(effect, escapes, side_effect) for n in names.split()}


FUNCTION_FACTS: dict[str, Fact] = {
    **_facts(Effect.SERVER_FILES, "pg_read_file pg_read_binary_file pg_ls_dir pg_stat_file", escapes=True),
    **_facts(Effect.SERVER_FILES, "pg_ls_logdir pg_ls_waldir pg_ls_tmpdir pg_ls_archive_statusdir "
                                  "pg_ls_logicalsnapdir pg_ls_logicalmapdir pg_ls_replslotdir pg_logdir_ls "
                                  "pg_current_logfile", escapes=True),  # the server's files, named (review r35 F6)
    **_facts(Effect.SERVER_FILES, "pg_file_write pg_file_rename pg_file_unlink", escapes=True, side_effect=True),
    **_facts(Effect.SERVER_FILES, "pg_file_sync pg_file_read pg_file_length", escapes=True),  # adminpack 1.0's
    **_facts(Effect.SERVER, "pg_logfile_rotate", escapes=True, side_effect=True),  # adminpack 1.0 (review r36 F4)
    **_facts(Effect.LARGE_OBJECTS, "lo_import lo_export", escapes=True, side_effect=True),
    **_facts(Effect.LARGE_OBJECTS, "lo_unlink", side_effect=True),
    **_facts(Effect.LARGE_OBJECTS, "lo_get lo_put lo_from_bytea lo_open lo_create lo_creat loread lowrite "
                                   "lo_truncate"),
    **_facts(Effect.SESSIONS, "pg_terminate_backend pg_cancel_backend", escapes=True, side_effect=True),
    **_facts(Effect.SESSIONS, "pg_log_backend_memory_contexts", escapes=True),
    **_facts(Effect.SERVER, "pg_reload_conf pg_rotate_logfile pg_switch_wal pg_promote pg_stat_reset",
             escapes=True, side_effect=True),
    **_facts(Effect.SERVER, "pg_create_restore_point pg_backup_start pg_backup_stop pg_start_backup pg_stop_backup "
                            "pg_stat_reset_shared pg_stat_reset_single_table_counters pg_stat_reset_slru "
                            "pg_stat_reset_single_function_counters pg_stat_reset_replication_slot "
                            "pg_stat_reset_subscription_stats "
                            "pg_stat_statements_reset autoprewarm_start_worker autoprewarm_dump_now",
             escapes=True),
    **_facts(Effect.SERVER, "pg_wal_replay_pause pg_wal_replay_resume pg_import_system_collations "
                            "pg_sync_replication_slots"),
    **_facts(Effect.SETTINGS, "set_config", side_effect=True),
    **_facts(Effect.LOCKS, "pg_advisory_lock pg_advisory_lock_shared pg_try_advisory_lock "
                           "pg_try_advisory_lock_shared pg_advisory_unlock pg_advisory_unlock_all "
                           "pg_advisory_unlock_shared", escapes=True),
    **_facts(Effect.LOCKS, "pg_advisory_xact_lock pg_advisory_xact_lock_shared pg_try_advisory_xact_lock "
                           "pg_try_advisory_xact_lock_shared"),  # released by the rollback
    **_facts(Effect.REMOTE, "dblink dblink_exec", escapes=True, side_effect=True),
    **_facts(Effect.REMOTE, "dblink_connect dblink_connect_u dblink_send_query dblink_open dblink_fetch "
                            "dblink_get_result", escapes=True),
    **_facts(Effect.SQL_FROM_STRING, "query_to_xml query_to_xmlschema query_to_xml_and_xmlschema cursor_to_xml "
                                     "cursor_to_xmlschema table_to_xml table_to_xmlschema table_to_xml_and_xmlschema "
                                     "schema_to_xml database_to_xml schema_to_xml_and_xmlschema "
                                     "database_to_xml_and_xmlschema ts_stat ts_rewrite crosstab crosstab2 crosstab3 "
                                     "crosstab4 connectby xpath_table check_primary_key check_foreign_key"),
    **_facts(Effect.NOTIFY, "pg_notify"),  # sent at commit only
    **_facts(Effect.REPLICATION, "pg_drop_replication_slot pg_replication_origin_drop pg_logical_emit_message",
             escapes=True, side_effect=True),
    **_facts(Effect.REPLICATION, "pg_create_physical_replication_slot pg_create_logical_replication_slot "
                                 "pg_logical_slot_get_changes pg_logical_slot_get_binary_changes "
                                 "pg_replication_slot_advance pg_copy_physical_replication_slot "
                                 "pg_copy_logical_replication_slot pg_replication_origin_create "
                                 "pg_replication_origin_advance", escapes=True),
    **_facts(Effect.REPLICATION, "pg_logical_slot_peek_changes pg_logical_slot_peek_binary_changes"),
    **_facts(Effect.MAINTENANCE, "brin_summarize_new_values brin_summarize_range brin_desummarize_range "
                                 "gin_clean_pending_list"),
    **_facts(Effect.MAINTENANCE, "pg_truncate_visibility_map", escapes=True, side_effect=True),  # not undone
    **_facts(Effect.MAINTENANCE, "heap_force_kill heap_force_freeze", escapes=True, side_effect=True),  # pg_surgery
    **_facts(Effect.SERVER_FILES, "xslt_process", escapes=True),  # xml2: a stylesheet may read any document
    **_facts(Effect.CONFIG_FILES, "pg_show_all_file_settings pg_hba_file_rules pg_ident_file_mappings"),
    **_facts(Effect.SEQUENCE, "nextval", escapes=True),
    **_facts(Effect.SEQUENCE, "setval", escapes=True, side_effect=True),
}
KNOWN_EXTENSIONS = frozenset("""
    adminpack amcheck autoinc bloom btree_gin btree_gist citext cube dblink dict_int dict_xsyn earthdistance
    file_fdw fuzzystrmatch hstore insert_username intagg intarray isn lo ltree moddatetime old_snapshot pageinspect
    pg_buffercache pg_freespacemap pg_prewarm pg_stat_statements pg_surgery pg_trgm pg_visibility pg_walinspect
    pgcrypto pgrowlocks pgstattuple plpgsql postgres_fdw refint seg sslinfo tablefunc tcn tsm_system_rows
    tsm_system_time unaccent uuid-ossp xml2
    address_standardizer hypopg pg_cron pg_partman postgis postgis_raster postgis_sfcgal postgis_tiger_geocoder
    postgis_topology vector
""".split())
"""Extensions whose C functions agent19 knows (PostgreSQL's contrib and a few common ones): those that act
outside the transaction or run SQL given as a string are named in :data:`FUNCTION_FACTS` (or by prefix:
dblink, postgres_fdw); the rest stay inside it. Any other extension's C code cannot be read, so a trial cannot
prove what it does (:mod:`agent19.safety.closure`)."""

DENIED_PREFIXES = (
    "dblink", "lo_", "pg_file_", "pg_ls_", "pg_read_", "pg_stat_reset", "pg_advisory", "pg_try_advisory",
    "pg_replication_origin", "pg_create_", "pg_drop_replication", "pg_copy_", "pg_logical_", "postgres_fdw_",
    "pg_wal_replay_", "query_to_", "cursor_to_", "table_to_xml", "schema_to_xml", "database_to_xml", "crosstab",
    "pg_backup_", "pg_terminate", "pg_cancel",
)
"""Families whose members read-only mode never calls, whatever the version or extension adds to them."""

DENIED_IN_READS = frozenset(n for n, f in FUNCTION_FACTS.items() if f.effect is not Effect.SEQUENCE)
ESCAPING = frozenset(n for n, f in FUNCTION_FACTS.items() if f.escapes)
SIDE_EFFECT = frozenset(n for n, f in FUNCTION_FACTS.items() if f.side_effect)
SEQUENCE_FUNCTIONS = frozenset(n for n, f in FUNCTION_FACTS.items() if f.effect is Effect.SEQUENCE)
SEQUENCE_FORWARD = frozenset({"nextval"})
"""Sequence calls that only move a sequence forward (a gap in the numbers, never a number handed out twice):
everywhere in triggers and defaults, so a dry run follows them without stopping."""
SEQUENCE_MOVES = SEQUENCE_FUNCTIONS - SEQUENCE_FORWARD
"""Sequence calls that set a sequence anywhere, backward too (``setval``): not rolled back, so a dry run never
runs a statement whose reachable code calls one."""
SQL_FROM_STRING = frozenset(n for n, f in FUNCTION_FACTS.items() if f.effect is Effect.SQL_FROM_STRING)

IN_ISOLATED_COPY: dict[Effect, bool] = {
    Effect.SERVER_FILES: False,  # the files of the machine the copy runs on (its OS user's ~/.pgpass…)
    Effect.LARGE_OBJECTS: True,  # the copy's large objects; lo_import/lo_export read and write files: below
    Effect.SESSIONS: True,  # only the copy's sessions: nobody else's
    Effect.SERVER: True,  # the throwaway server's configuration, WAL, statistics
    Effect.SETTINGS: True,
    Effect.LOCKS: True,  # session advisory locks end with the throwaway server
    Effect.REMOTE: False,  # another server: the real target, or any on the network
    Effect.SQL_FROM_STRING: True,  # runs what the copy holds: contained unless the copy has a way out
    Effect.NOTIFY: True,
    Effect.REPLICATION: True,  # the throwaway server's slots and origins
    Effect.MAINTENANCE: True,  # the copy's tables
    Effect.CONFIG_FILES: True,  # the throwaway server's own configuration files
    Effect.SEQUENCE: True,  # the copy's sequences
}
"""Whether a function's effect stays inside an isolated copy — a database restored into a throwaway cluster that
agent19 started on a private socket, owned by a role without superuser or the predefined roles that read or write
server files — so that a dry run there may run it (:mod:`agent19.migrate.dryrun.isolated`): nothing in that cluster
belongs to anyone, so signalling its sessions, setting its sequences or its configuration, taking its advisory locks
is contained. What reaches the machine's files or another server is not."""
LEAVES_COPY = frozenset(n for n in ESCAPING if not IN_ISOLATED_COPY[FUNCTION_FACTS[n].effect]) | {
    "lo_import", "lo_export"}  # large objects from and to server files
"""Escapes an isolated copy does not contain: server files and other servers (dblink / postgres_fdw also by
prefix, foreign tables by their relations: :mod:`agent19.safety.closure`)."""


def denied_in_reads(name: str) -> bool:
    """A function name that read-only mode never calls, whatever schema it is in."""
    name = name.lower()
    return name in DENIED_IN_READS or name.startswith(DENIED_PREFIXES)


def effect_of(name: str) -> str | None:
    """What calling ``name`` does beyond returning a value, in words, or None when the table does not know."""
    fact = FUNCTION_FACTS.get(name.lower())
    return fact.effect.value if fact else None
