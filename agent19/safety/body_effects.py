"""What a body of SQL or PL/pgSQL does to the code the server reads or runs later, in the server's own tokens: changes
how string literals are read (:func:`resets_reading`), or creates or changes code (:func:`makes_code`). Read by
:func:`agent19.safety.closure.tokens`."""

from __future__ import annotations

from typing import Any

from agent19.sqltree import fold_identifier


def resets_reading(toks: list[Any], text: str) -> bool:
    """``RESET ALL``, ``DISCARD ALL``, ``set_config`` whose first argument is not a plain string literal (a name
    built at run time may be ``standard_conforming_strings``), or an UPDATE next to ``pg_settings`` (its rule
    calls set_config with the row's name)."""
    names = {fold_identifier(text[t.start:t.end + 1].strip('"')) for t in toks if t.name in ("IDENT", "UPDATE")}
    if {"pg_settings", "update"} <= names:
        return True
    for i, t in enumerate(toks[:-1]):
        nxt = toks[i + 1]
        if t.name in ("RESET", "DISCARD") and nxt.name == "ALL":
            return True
        raw = text[t.start:t.end + 1]
        if nxt.name == "ASCII_40" and fold_identifier(raw.strip('"')) == "set_config":
            first, then = toks[i + 2:i + 3], toks[i + 3:i + 4]
            literal = first and first[0].name == "SCONST" and text[first[0].start] in "'$"
            if not (literal and then and then[0].name == "ASCII_44"):
                return True
    return False


# what a body may create or alter that the server runs later (the new body is a string nobody read, or the change
# alters what runs or a name resolves to): a body that does so is unreadable, like EXECUTE. Keyword tokens
_MAKES = {"FUNCTION", "PROCEDURE", "ROUTINE", "TRIGGER", "RULE", "POLICY", "OPERATOR", "CAST", "AGGREGATE",
          "STATISTICS", "DOMAIN_P", "VIEW", "EVENT", "TRANSFORM", "LANGUAGE", "TABLE"}
# an ALTER TABLE makes code when it adds a column or constraint, sets a default, enables a trigger, rule or
# row-level security, converts a column USING an expression, attaches or inherits (partition keys, checks)
_TABLE_CODE = {"ADD_P", "DEFAULT", "ENABLE_P", "USING", "ATTACH", "INHERIT"}
_MODIFIERS = {"OR", "REPLACE", "TEMP", "TEMPORARY", "RECURSIVE", "MATERIALIZED", "CONSTRAINT", "TRUSTED",
              "PROCEDURAL", "FOREIGN", "UNLOGGED"}


# CREATE/ALTER of these (their keyword tokens after CREATE/ALTER [OR REPLACE]), and IMPORT FOREIGN SCHEMA: a foreign
# table reads and writes another server, a file or a program (file_fdw's ``program``), with the options these set;
# a subscription connects to another server
_FOREIGN = {("FOREIGN", "TABLE"): "a foreign table", ("FOREIGN", "DATA_P"): "a foreign-data wrapper",
            ("SERVER", ""): "a foreign server", ("USER", "MAPPING"): "a user mapping",
            ("SUBSCRIPTION", ""): "a subscription"}
REACHES = "what a rollback does not undo: another server, a server file, a program or the server's own code"


SHARED_CATALOGS = ("pg_authid", "pg_auth_members", "pg_database", "pg_db_role_setting", "pg_tablespace",
                   "pg_shdepend", "pg_shdescription", "pg_shseclabel", "pg_replication_origin", "pg_subscription",
                   "pg_parameter_acl")
"""The catalogs every database of the server shares."""
_WRITES = {"UPDATE": (), "INSERT": ("INTO",), "DELETE_P": ("FROM",), "MERGE": ("INTO",), "TRUNCATE": ("TABLE",),
           "COPY": (), "LOCK_P": ("TABLE",)}


CATALOG_TABLES = frozenset("""pg_aggregate pg_am pg_amop pg_amproc pg_attrdef pg_attribute pg_auth_members pg_authid
    pg_cast pg_class pg_collation pg_constraint pg_conversion pg_database pg_db_role_setting pg_default_acl pg_depend
    pg_description pg_enum pg_event_trigger pg_extension pg_foreign_data_wrapper pg_foreign_server pg_foreign_table
    pg_index pg_inherits pg_init_privs pg_language pg_largeobject pg_largeobject_metadata pg_namespace pg_opclass
    pg_operator pg_opfamily pg_parameter_acl pg_partitioned_table pg_policy pg_proc pg_publication
    pg_publication_namespace pg_publication_rel pg_range pg_replication_origin pg_rewrite pg_seclabel pg_sequence
    pg_shdepend pg_shdescription pg_shseclabel pg_statistic pg_statistic_ext pg_statistic_ext_data pg_subscription
    pg_subscription_rel pg_tablespace pg_transform pg_trigger pg_ts_config pg_ts_config_map pg_ts_dict pg_ts_parser
    pg_ts_template pg_type pg_user_mapping""".split())
"""The system catalogs' tables (PostgreSQL 15): an unqualified name is one of them only if it is one of these (a
user's table named ``pg_jobs`` is not: review r37)."""


def system_catalog(schema: str | None, name: str) -> bool:
    """A system catalog (or a TOAST table) by its name as written: any relation of ``pg_catalog`` or ``pg_toast``
    but ``pg_settings`` (a view whose writes are ``set_config``, judged as such), or a catalog table's name."""
    if schema in ("pg_catalog", "pg_toast"):
        return name.startswith("pg_") and name != "pg_settings"
    return schema is None and name in CATALOG_TABLES


def writes_catalog(toks: list[Any], text: str) -> str | None:
    """The system catalog a body writes directly (``UPDATE pg_proc …``: what the server runs is then not what
    agent19 read), or a shared catalog it locks (every login of the server waits), or None."""
    for i, t in enumerate(toks):
        if t.name not in _WRITES:
            continue
        j = i + 1
        while j < len(toks) and toks[j].name in (*_WRITES[t.name], "ONLY"):
            j += 1
        words = [fold_identifier(text[k.start:k.end + 1].strip('"')) for k in toks[j:j + 3]]
        dotted = len(words) == 3 and toks[j + 1].name == "ASCII_46"
        schema, name = (words[0], words[2]) if dotted else (None, words[0] if words else "")
        if t.name == "LOCK_P":
            if name in SHARED_CATALOGS and schema in (None, "pg_catalog"):
                return f"locks {name}, a catalog every database shares"
        elif system_catalog(schema, name):
            return f"writes the system catalog {name} directly"
    return None


def makes_foreign(toks: list[Any]) -> str | None:
    """What ``toks`` do that reaches outside the server's transaction — ``creates or changes a foreign table``,
    ``loads a shared library (LOAD)``… — or None (the text that follows: :data:`REACHES`)."""
    names = [t.name for t in toks] + ["", ""]
    for i, name in enumerate(names[:-2]):
        if name == "IMPORT_P" and names[i + 1] == "FOREIGN":
            return "creates foreign tables (IMPORT FOREIGN SCHEMA)"
        if name == "LOAD" and names[i + 1] in ("SCONST", "USCONST"):
            return "loads a shared library into the server (LOAD)"
        if name not in ("CREATE", "ALTER"):
            continue
        j = i + 1
        while names[j] in ("OR", "REPLACE"):
            j += 1
        what = _FOREIGN.get((names[j], names[j + 1])) or _FOREIGN.get((names[j], ""))
        if what and (names[j] != "USER" or names[j + 1] == "MAPPING"):
            return f"creates or changes {what}"
    return None


# of those, the ones whose new code is a string (a function's body, a nested DO block's): never read
STRING_CODE = ("CREATE FUNCTION", "CREATE PROCEDURE", "DO")


def makes_code(toks: list[Any]) -> tuple[str, ...]:
    """``CREATE [OR REPLACE] FUNCTION`` (or trigger, rule, policy, operator, cast, aggregate, statistics,
    domain, view, event trigger…), ``ALTER FUNCTION/TABLE/…`` or a nested ``DO`` block in ``toks``, as its
    keywords. A text that is itself a ``CREATE FUNCTION ... BEGIN ATOMIC`` (how the server prints such a body) is
    no such use: its statements are read, and cannot be DDL."""
    names = [t.name for t in toks]
    found: list[str] = []
    for i, name in enumerate(names):
        if name == "DO" and i + 1 < len(names) and names[i + 1] in ("SCONST", "LANGUAGE"):
            found.append("DO")  # not ON CONFLICT DO NOTHING / UPDATE
        if name not in ("CREATE", "ALTER"):
            continue
        j = i + 1
        while j < len(names) and names[j] in _MODIFIERS:
            j += 1
        if j >= len(names) or names[j] not in _MAKES or (name == "CREATE" and names[j] == "TABLE"):
            continue
        if names[j] == "TABLE" and not _TABLE_CODE & set(names[j:(names + ["ASCII_59"]).index("ASCII_59", j)]):
            continue  # ALTER TABLE ... RENAME / DROP / OWNER / SET: no expression made
        if i == 0 and names[j] in ("FUNCTION", "PROCEDURE") and "ATOMIC" in names:
            continue  # a BEGIN ATOMIC body as the server prints it: the function itself
        found.append(f"{name} {names[j].removesuffix('_P')}")
    return tuple(dict.fromkeys(found))
