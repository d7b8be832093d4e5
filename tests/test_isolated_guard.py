"""The dry-run guard's ``contained`` setting (an isolated copy), category by category: what a throwaway cluster holds
runs there; what leaves it (files of the machine, other servers, code the server does not sandbox) does not."""

from __future__ import annotations

import pytest

from agent19.migrate.parse import parse_sql
from agent19.safety.closure import Bad, body_verdict, seed_why, tokens
from agent19.safety.function_facts import (
    ESCAPING,
    FUNCTION_FACTS,
    IN_ISOLATED_COPY,
    LEAVES_COPY,
    SEQUENCE_FORWARD,
    SQL_FROM_STRING,
    Effect,
)
from agent19.safety.readonly import ReadOnlyViolation, check_escapes


def test_every_effect_has_a_decision_and_only_files_and_other_servers_leave():
    assert set(IN_ISOLATED_COPY) == set(Effect)
    assert {e for e, stays in IN_ISOLATED_COPY.items() if not stays} == {Effect.SERVER_FILES, Effect.REMOTE}
    for name in LEAVES_COPY:  # large objects from or to files are the one exception by name
        assert FUNCTION_FACTS[name].effect in (Effect.SERVER_FILES, Effect.REMOTE) or name in ("lo_import",
                                                                                               "lo_export"), name


@pytest.mark.parametrize("name", sorted(ESCAPING | SQL_FROM_STRING))
def test_each_named_function_on_the_target_and_in_an_isolated_copy(name):
    on_target, in_copy = seed_why("f", name), seed_why("f", name, contained=True)
    if name in SEQUENCE_FORWARD:
        assert on_target is None and in_copy is None  # nextval: a gap, anywhere
    elif name in SQL_FROM_STRING:
        assert on_target.kind == in_copy.kind == "unreadable" and not in_copy.leaves  # runs what the copy holds
    elif name.startswith("dblink") or name in LEAVES_COPY:
        assert on_target.kind == in_copy.kind == "escape", name
        assert not in_copy.isolable
    else:  # signals, setval, advisory locks, the server's WAL and statistics, slots, pg_surgery: the copy's own
        assert on_target.kind in ("escape", "sequence") and on_target.isolable, name
        assert in_copy is None, name


def _verdict(language: str, body: str | None, *, lift: bool, trusted: bool = False, known: bool = False):
    return body_verdict("function app.f", language, tokens(body) if body is not None else None, known=known,
                        allow=False, bad=Bad([], False), contained=True, lift_contained=lift, trusted=trusted)


def test_code_agent19_cannot_read_runs_in_a_copy_without_a_way_out_unless_it_may_leave_it():
    execute = "BEGIN EXECUTE 'SELECT 1'; END"
    on_target = body_verdict("function app.f", "plpgsql", tokens(execute), known=False, allow=False,
                             bad=Bad([], False))
    assert on_target.kind == "unreadable" and on_target.isolable
    assert _verdict("plpgsql", execute, lift=True) is None  # EXECUTE: runs in the copy
    assert _verdict("plpgsql", execute, lift=False).kind == "unreadable"  # the copy has a way out: not run
    assert _verdict("plperl", "return 1;", lift=True, trusted=True) is None  # a sandboxed language
    python = _verdict("plpython3u", "import socket", lift=True)  # not sandboxed: may open files, sockets
    assert python.kind == "unreadable" and python.leaves and not python.isolable
    c = _verdict("c", None, lift=True)
    assert c.kind == "unreadable" and c.leaves


@pytest.mark.parametrize(("sql", "leaves"), [
    ("SELECT pg_terminate_backend(42)", False),
    ("SELECT setval('s', 1)", False),
    ("SELECT pg_advisory_lock(1)", False),
    ("SELECT pg_reload_conf()", False),
    ("SELECT pg_read_file('/etc/passwd')", True),
    ("SELECT lo_import('/etc/passwd')", True),
    ("SELECT dblink_exec('host=db', 'DROP TABLE t')", True),
    ("COPY (SELECT 1) TO PROGRAM 'id'", True),
    ("COPY t FROM '/etc/passwd'", True),
])
def test_the_statements_own_calls(sql, leaves):
    stmt = parse_sql(sql)[0]
    with pytest.raises(ReadOnlyViolation):
        check_escapes(stmt)  # on the target, every one is refused
    if leaves:
        with pytest.raises(ReadOnlyViolation):
            check_escapes(stmt, contained=True)
    else:
        check_escapes(stmt, contained=True)
