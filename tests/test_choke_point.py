"""Every tool that sends user SQL goes through the one choke point (agent19.safety.gate).

(a) Walking the registry: every argument field whose name says it carries SQL is declared with
    ``gate.user_sql(kind)`` — a new tool cannot forget, this test fails first.
(b) For every tool with such a field, through the real MCP client in read-only mode — once with the
    least-privilege reader login, once as the superuser with the explicit opt-in — a deny-listed call
    in that field is refused by the gate (the error names the function) and had no effect on the
    server: no advisory lock held, the other session still alive, no large object created. A tool that
    needs a stronger mode may instead refuse for the mode (nothing runs); tools that work in dry-run
    mode are tried there too, where the gate must refuse what a rolled-back transaction cannot undo.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent19 import records
from agent19.config import AccessMode
from agent19.safety.gate import SQL_KINDS, marked_fields
from agent19.tools.registry import all_tools
from tests.mcp_client import stdio_session
from tests.reader_login import reader_login

SQL_WORDS = {"sql", "query", "queries", "where", "set", "expression", "statement", "statements", "checks", "using",
             "predicate", "condition", "definition", "default", "backfill", "up", "down", "files", "issues"}
NOT_SQL = {
    ("explain_query", "settings"): "planner settings as name=value, checked against an allowlist, bound as values",
    ("health_check", "checks"): "names of agent19's built-in health checks",
    ("health_check", "overrides"): "threshold overrides, KEY=VALUE (CLI --set)",
}
SENT = {"statement", "statements", "script", "files", "expression"}
LOCK_KEY = 4242


def _is_text(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    return annotation is str or any(_is_text(a) for a in args)


def test_every_sql_field_is_declared():
    missing = []
    for spec in all_tools():
        marked = marked_fields(spec.args)
        assert set(marked.values()) <= set(SQL_KINDS), f"{spec.name}: unknown user_sql kind in {marked}"
        for name, info in records.fields(spec.args).items():
            tokens = set(re.split(r"[_\W]+", (info.alias or name).lower()))
            if tokens & SQL_WORDS and _is_text(info.annotation) and name not in marked \
                    and (spec.name, name) not in NOT_SQL:
                missing.append(f"{spec.name}.{name}")
    assert not missing, ("these fields look like SQL but are not declared with gate.user_sql(kind) "
                         f"(json_schema_extra), so nothing proves they go through the gate: {missing}")


def _gated_fields() -> list[tuple[str, str, str, AccessMode]]:
    out = []
    for spec in all_tools():
        for field, kind in marked_fields(spec.args).items():
            if kind in SENT:
                out.append((spec.name, field, kind, spec.mode))
    return out


def test_the_registry_has_gated_tools():
    names = {t for t, _, _, _ in _gated_fields()}
    assert {"run_sql", "explain_query", "advise_indexes", "advise_workload", "test_migration", "verify_rollback",
            "run_backfill", "confirm_destructive"} <= names


ATTACKS = {
    "pg_advisory_lock": f"SELECT pg_advisory_lock({LOCK_KEY})",
    "pg_terminate_backend": "SELECT pg_terminate_backend({victim})",
    "lo_import": "SELECT lo_import('/etc/hostname')",
}
EXPRESSIONS = {
    "pg_advisory_lock": f"pg_advisory_lock({LOCK_KEY}) IS NOT NULL",
    "pg_terminate_backend": "pg_terminate_backend({victim})",
    "lo_import": "lo_import('/etc/hostname') > 0",
}
# Companion arguments some fields need to reach the tool at all.
COMPANIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("test_migration", "down_sql"): {"sql": "CREATE TABLE zz (a int)"},
    ("test_migration", "down_files"): {"sql": "CREATE TABLE zz (a int)"},
    ("test_migration", "checks"): {"sql": "CREATE TABLE zz (a int)"},
    ("verify_rollback", "down"): {"up_sql": "CREATE TABLE zz (a int)"},
    ("verify_rollback", "down_sql"): {"up_sql": "CREATE TABLE zz (a int)"},
    ("verify_rollback", "up"): {"down_sql": "DROP TABLE zz"},
    ("verify_rollback", "up_sql"): {"down_sql": "DROP TABLE zz"},
}
REQUIRED = {"table": "t", "set": "v = 1"}


def _checks_document(expression: str) -> str:
    """A data_quality checks file whose filter carries the attack."""
    return ("tables:\n  t:\n    checks:\n      - name: attack\n        check: missing_count\n"
            f"        column: v\n        filter: {json.dumps(expression)}\n")


def _pipeline_document(expression: str) -> str:
    """An etl_run pipeline whose source query carries the attack."""
    query = json.dumps(f"SELECT id, v, {expression} AS x FROM t")
    return f'name = "attack"\n[source]\nquery = {query}\ncursor = ["id"]\n[destination]\ntable = "t"\nkey = ["id"]\n'


DOCUMENTS = {("data_quality", "checks"): "content", ("data_quality", "file"): "path",
             ("etl_run", "pipeline_toml"): "content", ("etl_run", "pipeline"): "path"}


def _arguments(tool: str, field: str, kind: str, attack: str, victim: int, tmp_path: Path) -> dict[str, Any]:
    document = DOCUMENTS.get((tool, field))
    text = (EXPRESSIONS if kind == "expression" or document else ATTACKS)[attack].format(victim=victim)
    if field == "set":
        text = f"v = ({text})::int"
    value: Any = text
    if document:
        value = (_pipeline_document if tool == "etl_run" else _checks_document)(text)
        if document == "path":
            path = tmp_path / f"{tool}_{field}_{attack}.{'toml' if tool == 'etl_run' else 'yml'}"
            path.write_text(value)
            value = str(path)
    elif kind == "files":
        path = tmp_path / f"{tool}_{field}_{attack}.sql"
        path.write_text(text + ";\n")
        value = str(path)
    args = {k: v for k, v in REQUIRED.items() if k != field}
    args.update(COMPANIONS.get((tool, field), {}))
    spec = next(s for s in all_tools() if s.name == tool)
    args = {k: v for k, v in args.items() if k in records.fields(spec.args)}
    annotation = records.fields(spec.args)[field].annotation
    args[field] = [value] if typing.get_origin(annotation) is list or "list" in str(annotation) else value
    return args


def _effects(dsn: str, victim: psycopg.Connection) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        locks = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
                             (LOCK_KEY,)).fetchone()[0]
        objects = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
    alive = victim.execute("SELECT 1").fetchone()[0] == 1
    return {"advisory_locks": locks, "large_objects": objects, "victim_alive": alive}


async def _attack_all(dsn: str, env: dict[str, str], mode: AccessMode, tmp_path: Path) -> list[str]:
    failures: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as victim:
        pid = victim.info.backend_pid
        before = _effects(dsn, victim)
        async with stdio_session("--mode", mode.value, env={"DATABASE_URL": dsn, **env}) as session:
            for tool, field, kind, needs in _gated_fields():
                if not mode.allows(needs) and mode is not AccessMode.READ_ONLY:
                    continue
                for attack in ATTACKS:
                    args = _arguments(tool, field, kind, attack, pid, tmp_path)
                    result = await session.call_tool(tool, args)
                    text = " ".join(getattr(c, "text", "") for c in result.content)
                    refused = any(w in text for w in ("not allowed", "refused", "acts outside"))
                    below_mode = not mode.allows(needs) and result.is_error and "needs mode" in text
                    # below its mode nothing runs (its own mode's pass proves the gate); else the gate refuses:
                    # as an error, or in a per-statement result (dry runs, data_quality)
                    if not below_mode and (attack not in text or not refused):
                        failures.append(f"{tool}.{field} {attack}: not refused by the gate: {text[:300]}")
                    after = _effects(dsn, victim)
                    if after != before:
                        failures.append(f"{tool}.{field} {attack}: had an effect: {before} -> {after}")
                        before = after
    return failures


@pytest.mark.asyncio
async def test_read_only_refuses_deny_listed_calls_in_every_gated_field_as_the_reader(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
    with reader_login(dsn, tmp_path) as read_dsn:
        failures = await _attack_all(dsn, {"AGENT19_READ_DSN": read_dsn, "AGENT19_ALLOW_PRIVILEGED_READS": "0"},
                                     AccessMode.READ_ONLY, tmp_path)
    assert not failures, "\n".join(failures)


@pytest.mark.asyncio
async def test_read_only_refuses_deny_listed_calls_in_every_gated_field_as_a_privileged_login(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
    failures = await _attack_all(dsn, {"AGENT19_ALLOW_PRIVILEGED_READS": "1"}, AccessMode.READ_ONLY, tmp_path)
    assert not failures, "\n".join(failures)


@pytest.mark.asyncio
async def test_dry_run_refuses_calls_a_rollback_cannot_undo(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
    failures = await _attack_all(dsn, {"AGENT19_ALLOW_PRIVILEGED_READS": "1"}, AccessMode.DRY_RUN, tmp_path)
    assert not failures, "\n".join(failures)


def test_the_declaration_is_in_the_mcp_schema():
    """Clients and reviewers see which arguments carry SQL that agent19 checks."""
    spec = next(s for s in all_tools() if s.name == "run_sql")
    schema = json.loads(json.dumps(records.json_schema(spec.args)))
    assert schema["properties"]["sql"]["user_sql"] == "statement"
    lint = next(s for s in all_tools() if s.name == "lint_migration")  # arguments declared as a dataclass
    assert records.json_schema(lint.args)["properties"]["sql"]["user_sql"] == "text"


@pytest.mark.asyncio
async def test_dry_run_gate_lets_ordinary_migrations_through(dsn):
    """pg_dump's set_config line is rolled back with the rest, and a sequence default is the dry run's
    to report per statement: the gate does not refuse the migration."""
    migration = ("SELECT pg_catalog.set_config('search_path', '', false);\n"
                 "CREATE SEQUENCE public.s;\n"
                 "CREATE TABLE public.x (id bigint PRIMARY KEY DEFAULT nextval('public.s'), v text);\n"
                 "INSERT INTO public.x (v) VALUES ('a');\n")
    async with stdio_session("--mode", "dry-run", env={"DATABASE_URL": dsn}) as session:
        result = await session.call_tool("test_migration", {"sql": migration})
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert not result.is_error and "refused" not in text, text  # sequence calls: reported per statement
    assert result.structured_content["target_unchanged"] is True
