"""agent19's confirmation path resolves no function, operator or type through the session's search_path.

The server picks a function or operator by its arguments too: an exact match in any schema of the path beats a
``pg_catalog`` candidate that needs a coercion, so an overload the login itself owns (trusted at session start,
:mod:`agent19.db.captures`) could forge the impact report a human confirms (review r27b k07). Modules that declare
``QUALIFIED_SQL = True`` promise that every SQL text they hold names its functions ``pg_catalog.f(...)``, its
operators ``OPERATOR(pg_catalog.=)``, its types ``pg_catalog.t`` and its catalog relations ``pg_catalog.pg_x``, and
avoids the constructs that look an operator up by name (``IN (...)``, ``LIKE``, ``BETWEEN``, ``IS DISTINCT FROM``,
``NULLIF``, ``CASE x WHEN``). This test reads every string constant of those modules (module-level strings, and
strings in module-level dicts, lists and tuples: f-strings are read as built) that is a statement, with pglast.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from agent19.sqltree import parse_json, walk

ROOT = Path(__file__).resolve().parent.parent / "agent19"
MARKER = re.compile(r"^QUALIFIED_SQL = True\b", re.MULTILINE)
# the destructive-operation confirmation: step 1's report and phrase, step 2's recount, ledger and archive
CONFIRMATION_PATH = {
    "agent19.safety.impact", "agent19.safety.assess", "agent19.safety.facts", "agent19.safety.type_facts",
    "agent19.db.rls", "agent19.safety.ledger", "agent19.safety.archive", "agent19.safety.execution",
    "agent19.safety.report", "agent19.safety.protocol", "agent19.safety.challenge", "agent19.safety.unmeasured",
}
# qualified before this test existed: the walker is proven on them
EXAMPLES = {"agent19.db.captures": None, "agent19.migrate.dryrun.cluster_guard": None}
DELIBERATE = {
    ("agent19.safety.type_facts", "Q_WRITTEN_TYPE"):
        "the type an ALTER COLUMN names, resolved through the session's path as the statement will be (a NULL cast "
        "in a row never computed: nothing runs)",
    ("agent19.migrate.dryrun.isolated_unreadable", "CREATE_STAND_IN"):
        "a template, no statement until stand_in() composes its columns (name, the type format_type printed under "
        "search_path pg_catalog, NOT NULL): it calls nothing, and the copy's superuser runs it with its path pinned",
}
STATEMENT = re.compile(r"[\s(]*(SELECT|WITH|INSERT|UPDATE|DELETE|LOCK|CREATE|SET|VALUES|TABLE)\s+\S", re.IGNORECASE)
PLACEHOLDER = re.compile(r"%\(\w+\)s|%s")
FORMAT_FIELD = re.compile(r"\{\w*\}")
LOOKS_UP_BY_NAME = {
    "AEXPR_IN": "IN (...)", "AEXPR_LIKE": "LIKE", "AEXPR_ILIKE": "ILIKE", "AEXPR_SIMILAR": "SIMILAR TO",
    "AEXPR_BETWEEN": "BETWEEN", "AEXPR_NOT_BETWEEN": "NOT BETWEEN", "AEXPR_BETWEEN_SYM": "BETWEEN SYMMETRIC",
    "AEXPR_NOT_BETWEEN_SYM": "NOT BETWEEN SYMMETRIC", "AEXPR_DISTINCT": "IS DISTINCT FROM",
    "AEXPR_NOT_DISTINCT": "IS NOT DISTINCT FROM", "AEXPR_NULLIF": "NULLIF",
}


def _names(nodes: list[dict[str, Any]]) -> list[str]:
    return [n.get("String", {}).get("sval", "") for n in nodes]


def _qualified(nodes: list[dict[str, Any]]) -> bool:
    names = _names(nodes)
    return len(names) == 2 and names[0] == "pg_catalog"


def _nodes(tree: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every node of ``tree``, with the ones pglast gives bare under a field (a cast's ``typeName``, a DELETE's
    ``relation``) named by their kind."""
    out = list(walk(tree))
    for _, f in list(out) + [("", tree)]:
        for key, kind in (("typeName", "TypeName"), ("relation", "RangeVar")):
            if isinstance(f.get(key), dict) and key[:1].islower():
                out.append((kind, f[key]))
    return out


def unqualified(text: str) -> list[str]:
    """What ``text`` (an SQL template: psycopg's ``%s``, ``%(name)s`` and ``str.format``/``sql.SQL`` fields) looks
    up through the search_path."""
    sql = FORMAT_FIELD.sub("x", PLACEHOLDER.sub("$1", text)).replace("%%", "%")
    found = []
    for stmt in parse_json(sql):
        for node, f in _nodes(stmt):
            if node == "FuncCall" and not _qualified(f["funcname"]):
                found.append(f"function {'.'.join(_names(f['funcname']))}")
            elif node == "A_Expr" and f["kind"] in LOOKS_UP_BY_NAME:
                found.append(LOOKS_UP_BY_NAME[f["kind"]])
            elif node == "A_Expr" and not _qualified(f["name"]):
                found.append(f"operator {'.'.join(_names(f['name']))}")
            elif node == "SubLink" and f["subLinkType"] in {"ANY_SUBLINK", "ALL_SUBLINK", "ROWCOMPARE_SUBLINK"} \
                    and not _qualified(f.get("operName", [])):
                found.append(f"operator {'.'.join(_names(f.get('operName', []))) or '='} of a sub-select (IN)")
            elif node == "CaseExpr" and "arg" in f:
                found.append("CASE x WHEN")
            elif node == "SortBy" and f.get("useOp") and not _qualified(f["useOp"]):
                found.append("ORDER BY ... USING")
            elif node == "TypeName" and not _qualified(f["names"]):
                found.append(f"type {'.'.join(_names(f['names']))}")
            elif node == "RangeVar" and f.get("relname", "").startswith("pg_") and f.get("schemaname") is None:
                found.append(f"relation {f['relname']}")
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple | set | frozenset):
        return [s for v in value for s in _strings(v)]
    return []


def statements(module: str, names: list[str] | None = None) -> list[tuple[str, str]]:
    """(constant's name, SQL) of every statement among ``module``'s module-level strings (``names``: only those)."""
    mod = importlib.import_module(module)
    out = []
    for name, value in vars(mod).items():
        if name.startswith("__") or (names is not None and name not in names) or (module, name) in DELIBERATE:
            continue
        out += [(name, s) for s in _strings(value) if STATEMENT.match(s)]
    return out


def marked() -> set[str]:
    return {".".join(p.relative_to(ROOT.parent).with_suffix("").parts) for p in ROOT.rglob("*.py")
            if MARKER.search(p.read_text())}


def test_the_confirmation_path_is_marked():
    assert CONFIRMATION_PATH <= marked(), sorted(CONFIRMATION_PATH - marked())


@pytest.mark.parametrize("module", sorted(marked() | set(EXAMPLES)))
def test_every_statement_names_what_it_calls_qualified(module):
    found = statements(module, EXAMPLES.get(module))
    assert found or module not in EXAMPLES, f"{module}: no statement read"
    bad = {f"{name}: {', '.join(sorted(set(what)))}" for name, sql in found if (what := unqualified(sql))}
    assert not bad, f"{module}:\n" + "\n".join(sorted(bad))


def test_the_queries_built_per_call_are_qualified():
    """Queries whose text depends on what is measured, read as built."""
    from agent19.db import captures, hidden_statements
    from agent19.migrate.dryrun import cluster_state, progress
    from agent19.migrate.planning import opaque_writes
    from agent19.safety import type_facts

    assert not unqualified(captures.captures_sql()), unqualified(captures.captures_sql())
    for version in (140000, 150000):  # pg_parameter_acl from 15
        for q in [cluster_state._all_at_once(version)[1], progress.progress_query(version)]:
            assert not unqualified(q), (q, unqualified(q))
    view = '"s".pg_stat_statements'
    for q in [hidden_statements.hidden_sql(view), hidden_statements.hidden_sql(view, hidden_statements.WROTE),
              opaque_writes.Q_WROTE.format(view=view, wrote=hidden_statements.WROTE),
              opaque_writes.Q_WROTE.format(view=view, wrote=opaque_writes.WROTE_BEFORE_13)]:
        assert not unqualified(q), (q, unqualified(q))
    for old, new in [("integer", "smallint"), ("text", "character varying(20)"), ('"char"', "date"),
                     ("numeric(12,2)", "numeric(12,0)"), ("timestamp(3) with time zone", "date")]:
        q = type_facts.changed_sql('"Col"', '"s"."t"', old, new)
        assert not unqualified(q), (q, unqualified(q))


@pytest.mark.parametrize("sql, what", [
    ("SELECT now()", "function now"),
    ("SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = 1", "operator ="),
    ("SELECT 1 WHERE 1 OPERATOR(pg_catalog.=) ANY ('{1}') AND 2 = ANY ('{2}')", "operator ="),
    ("SELECT 1 WHERE 'a' IN ('a', 'b')", "IN (...)"),
    ("SELECT 1 WHERE 1 IN (SELECT 1)", "operator = of a sub-select (IN)"),
    ("SELECT 1 WHERE 'a' LIKE 'a%%'", "LIKE"),
    ("SELECT 1 WHERE 2 BETWEEN 1 AND 3", "BETWEEN"),
    ("SELECT 1 WHERE 1 IS DISTINCT FROM 2", "IS DISTINCT FROM"),
    ("SELECT NULLIF(1, 2)", "NULLIF"),
    ("SELECT CASE 1 WHEN 1 THEN 2 END", "CASE x WHEN"),
    ("SELECT %s::text", "type text"),
    ("SELECT 'pg_class'::regclass", "type regclass"),
    ("SELECT 1 FROM pg_class", "relation pg_class"),
    ("SELECT count(*) FROM {}", "function count"),
])
def test_the_walker_sees_each_lookup(sql, what):
    assert what in unqualified(sql)


def test_the_walker_passes_what_is_qualified():
    assert unqualified("SELECT pg_catalog.count(*) FILTER (WHERE c.relkind OPERATOR(pg_catalog.=) ANY "
                       "(ARRAY['r', 'p'])) FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) "
                       "%(oid)s::pg_catalog.oid AND CASE WHEN true THEN 1::integer END IS NOT NULL") == []


INLINE = re.compile(r"""(\.execute\(|SQL\()\s*f?(["'])(?P<text>.*?)\2""")


@pytest.mark.parametrize("module", sorted(marked()))
def test_no_statement_is_written_inline(module):
    """A statement written in a call is not a module constant this test reads: name it first (a fragment composed
    into one, ``sql.SQL(", ")``, ``sql.SQL("{} ({})")``, is no statement)."""
    source = (ROOT.parent / Path(*module.split("."))).with_suffix(".py").read_text()
    inline = [m.group(0) for m in INLINE.finditer(source) if STATEMENT.match(m.group("text"))]
    assert not inline, f"{module}: {inline}"
