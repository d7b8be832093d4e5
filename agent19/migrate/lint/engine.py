"""Lint migrations: classify every statement, run every enabled rule, report with fixes.

    report = lint_paths(["migrations/"], pg_version=150000)
    report = lint_sql("ALTER TABLE orders ADD COLUMN n int DEFAULT random();")
    stream = lint_stream(load_paths(["migrations/"]))   # each statement's report as it is linted, then the summary
    for statement in stream.statements: ...
    stream.summary.failed

The report's JSON shape is a published interface (CI systems parse it)::

    {"statements": [{"file", "line", "sql", "kind", "tables", "lock", "rewrite", "in_transaction", "risk",
                     "findings": [{"rule", "severity", "message", "fix"}]}],
     "summary": {...}}

``lock`` is the strongest lock the statement takes, in pg_locks spelling; ``in_transaction`` whether
it can run inside a transaction block. Findings are silenced by ``-- agent19:ignore <rule>`` on the
statement's lines or the line before, and by the config file (:mod:`agent19.migrate.lint.config`).
"""

from __future__ import annotations

import gc
import re
import threading
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from agent19.errors import Agent19Error, InputError, StatementNote
from agent19.migrate.classification.existence import missing_relations
from agent19.migrate.classification.state import Context as ClassifyContext
from agent19.migrate.classification.state import MigrationState as ClassifyState
from agent19.migrate.classification.state import one_session
from agent19.migrate.layouts.files import Migration, load_paths, load_text
from agent19.migrate.lint.config import ASSUMPTIONS, LintConfig, lock_timeout_ms, normalize_version
from agent19.migrate.lint.model import Finding, LintReport, StatementReport, Summary, new_finding
from agent19.migrate.lint.rules import Rule, all_rules, find_rule
from agent19.migrate.lint.rules._base import (
    SEVERITY_ORDER,
    MigrationState,
    Severity,
    StatementContext,
    lock_rank,
    norm,
    rel_name,
)
from agent19.migrate.lint.rules.missing_lock_timeout import sets_lock_timeout
from agent19.migrate.model import Operation, Risk, max_risk
from agent19.migrate.parse import too_deep
from agent19.sqltree import walk

if TYPE_CHECKING:  # annotations only: the catalog models load where a catalog is read
    from agent19.db.models import SchemaSnapshot

DEFAULT_PG_VERSION = 110000
"""Without a database and without --pg-version: the oldest supported version (the most cautious)."""

_IGNORE = re.compile(r"--\s*agent19:ignore\b([^\n]*)", re.IGNORECASE)


def _ignored_rules(lines: list[str] | None, line: int, sql: str) -> set[str] | None:
    """Rules silenced for a statement starting at ``line``: ``None`` = none; empty set = all."""
    if lines is None:
        return None
    span = lines[line - 1: line - 1 + sql.count("\n") + 1]
    if line >= 2 and lines[line - 2].lstrip().startswith("--"):
        span.insert(0, lines[line - 2])  # the line before counts when it is only a comment
    found: set[str] | None = None
    for text in span:
        for m in _IGNORE.finditer(text):
            keys = [k for k in re.split(r"[\s,]+", m.group(1).strip()) if k]
            found = found or set()
            if not keys or any(k.lower() == "all" for k in keys):
                return set()
            for k in keys:
                rule = find_rule(k)
                found.add(rule.code if rule else k)
    return found


def _update_state(ctx: StatementContext) -> None:
    state, f = ctx.state, ctx.fields
    if ctx.node in ("CreateStmt", "CreateTableAsStmt") or (ctx.node == "ViewStmt" and not f.get("replace")):
        rel = (f.get("relation") or f.get("view") or f.get("into", {}).get("IntoClause", {}).get("rel")
               or f.get("into", {}).get("rel"))
        if isinstance(rel, dict) and ctx.table(rel_name(rel, create=True)) is None:  # in the live catalog: not new
            state.created.add(norm(rel_name(rel, create=True)))
    if ctx.node == "IndexStmt" and ctx.is_new(ctx.relation) and f.get("idxname"):
        state.created.add(f"{norm(ctx.relation or '').partition('.')[0]}.{f['idxname']}")  # on a new table: new
    if sets_lock_timeout(ctx):
        if f.get("is_local"):  # until the transaction ends; outside one it does nothing (PostgreSQL warns)
            state.lock_timeout_tx = ctx.tx_group
        else:
            state.lock_timeout = True
    table = norm(ctx.relation or "")
    for _, subtype, cmd in ctx.alter_cmds():
        con = cmd.get("def", {}).get("Constraint", {})
        if subtype == "AT_AddConstraint" and con.get("contype") == "CONSTR_CHECK":
            cols = {fl[-1].get("String", {}).get("sval", "") for n, fl in
                    ((n, v.get("fields", [])) for n, v in walk(con.get("raw_expr", {})) if n == "ColumnRef") if fl}
            expr = con.get("raw_expr", {}).get("NullTest", {})
            if expr.get("nulltesttype") == "IS_NOT_NULL" and len(cols) == 1:
                state.not_null_checks[con.get("conname", "")] = (table, next(iter(cols)))
                if not con.get("skip_validation"):
                    state.validated_not_null.add((table, next(iter(cols))))
            state.check_names[con.get("conname", "")] = {(table, c) for c in cols}
            if not con.get("skip_validation"):
                state.check_columns.update((table, c) for c in cols)
        # IF NOT EXISTS adds nothing when the column is there already: running clients may use it
        if subtype == "AT_AddColumn" and (name := cmd.get("def", {}).get("ColumnDef", {}).get("colname")) and \
                not cmd.get("missing_ok"):
            state.added_columns.add((table, name))
        if subtype == "AT_ValidateConstraint":
            if cmd.get("name") in state.not_null_checks:
                state.validated_not_null.add(state.not_null_checks[cmd["name"]])
            state.check_columns.update(state.check_names.get(cmd.get("name", ""), set()))
    state.seen.append(ctx)
    if ctx.tx_group is not None:
        state.seen_in_transaction.setdefault(ctx.tx_group, []).append(ctx)
    last_touch = state.last_touch
    for o in ctx.operations:
        for t in o.tables:
            last_touch[norm(t)] = ctx
    if ctx.relation:
        last_touch[norm(ctx.relation)] = ctx


def _statement_report(ctx: StatementContext, findings: list[Finding]) -> StatementReport:
    ops = ctx.operations
    statement = ctx.statement
    if len(ops) == 1:  # most statements: the same report as below, without the generators over one operation
        o = ops[0]
        return StatementReport(
            file=statement.file, line=statement.line, sql=statement.sql, kind=o.kind,
            tables=list(dict.fromkeys(o.tables)), lock=o.lock or None, rewrite=bool(o.rewrite),
            in_transaction=bool(o.in_transaction), risk=o.risk, findings=findings,
        )
    kinds = list(dict.fromkeys(o.kind for o in ops))
    tables = list(dict.fromkeys(t for o in ops for t in o.tables))
    return StatementReport(
        file=ctx.statement.file, line=ctx.statement.line, sql=ctx.statement.sql,
        kind=",".join(kinds) if kinds else ctx.node, tables=tables,
        lock=max((o.lock for o in ops if o.lock), key=lock_rank, default=None),
        rewrite=any(o.rewrite for o in ops), in_transaction=all(o.in_transaction for o in ops),
        risk=max_risk([o.risk for o in ops]), findings=findings,
    )


def _next_file(lint_state: MigrationState, classify_state: ClassifyState) -> tuple[MigrationState, ClassifyState]:
    """The states for the next migration of a set: what earlier files created, added and validated carries over
    (shared, so it keeps growing); what belongs to one file's session and transactions starts afresh —
    lock_timeout and search_path (each file may run on a new connection), transaction ids, the statements seen."""
    return (replace(lint_state, lock_timeout=False, lock_timeout_tx=None, seen=[], seen_in_transaction={},
                    last_touch={}),
            replace(classify_state, lock_timeout=None, explicit_transaction=False, path=None))


_GC_LOCK = threading.Lock()
_GC_USERS = 0
_GC_SAVED: tuple[int, int, int] = (700, 10, 10)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Raise the collector's first two thresholds while linting, then put them back (the last of concurrent lints
    does).

    Linting allocates millions of short-lived dicts and lists; at Python's default (a collection every 700
    allocations) the cyclic collector took a sixth of a large lint, re-scanning the statement in hand. A lint makes
    almost no cyclic garbage (about a hundred objects for a 5 MB file), so the middle generation is collected
    every 100 young collections instead of every 10: each found nothing and cost about 0.1 s in a 5 MB lint."""
    global _GC_USERS, _GC_SAVED
    with _GC_LOCK:
        if _GC_USERS == 0:
            _GC_SAVED = gc.get_threshold()
            gc.set_threshold(max(_GC_SAVED[0], 50_000), max(_GC_SAVED[1], 100), _GC_SAVED[2])
        _GC_USERS += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_USERS -= 1
            if _GC_USERS == 0:
                gc.set_threshold(*_GC_SAVED)


def lint(
    migrations: Iterable[Migration],
    *,
    catalog: SchemaSnapshot | None = None,
    pg_version: int | None = None,
    config: LintConfig | None = None,
    operations: list[Operation] | None = None,
    notes: Iterable[str] = (),
) -> LintReport:
    """Lint ``migrations`` as one ordered history, in order (a directory in its tool's order): a table or view
    created, a CHECK added or validated in an earlier file is known to the later ones, as PostgreSQL would have
    it when the set is applied in one deployment; session settings (lock_timeout) and transactions are per file.

    ``operations``: when given, every statement's classification (:func:`~agent19.migrate.classification.classify.
    classify`'s operations, in statement order) is appended to it, for a caller that would otherwise classify the
    same statements again (the planner). ``notes``: said first among the summary's assumptions (e.g. why a
    configured database was not used). The whole report at once; :func:`lint_stream` gives it statement by
    statement."""
    stream = lint_stream(migrations, catalog=catalog, pg_version=pg_version, config=config, operations=operations,
                         notes=notes)
    statements = list(stream.statements)
    return LintReport(statements=statements, summary=stream.summary)


class LintStream:
    """A lint as it runs: :attr:`statements` yields each statement's report as soon as it is linted (once: nothing
    keeps them), then :attr:`summary` holds the counts. A writer that prints each report as it comes holds one
    statement's report at a time, not the whole migration's (`agent19 lint` of a 5 MB file)."""

    def __init__(self, migrations: list[Migration], **options: Any) -> None:
        self._summary: list[Summary] = []
        self.statements: Iterator[StatementReport] = _run(migrations, options, self._summary)

    @property
    def summary(self) -> Summary:
        """The counts over every statement: there once :attr:`statements` has been read to its end."""
        if not self._summary:
            raise RuntimeError("the lint summary is known once every statement's report has been read")
        return self._summary[0]


def _run(migrations: list[Migration], options: dict[str, Any], summary: list[Summary]) -> Iterator[StatementReport]:
    """The stream's statements; the summary appended to ``summary`` at the end. Not a method: a generator holding
    its stream would be a reference cycle, and a stream dropped half-read would keep the collector's threshold
    raised (:func:`_fewer_collections`) until a collection found the cycle, instead of closing when dropped."""
    with _fewer_collections():
        summary.append((yield from _lint(migrations, **options)))


def lint_stream(
    migrations: Iterable[Migration],
    *,
    catalog: SchemaSnapshot | None = None,
    pg_version: int | None = None,
    config: LintConfig | None = None,
    operations: list[Operation] | None = None,
    notes: Iterable[str] = (),
) -> LintStream:
    """:func:`lint`, its reports handed out as they are made (see :class:`LintStream`): the settings are read now
    (a bad one fails here, before anything is written), the statements as their reports are read."""
    config = config or LintConfig()
    active = config.active_codes()
    plan = _Plan(config, (catalog.server_version if catalog else None) or normalize_version(pg_version)
                 or config.pg_version
                 or DEFAULT_PG_VERSION, [r for r in all_rules() if r.code in active], config.severities(),
                 config.disabled_codes())
    return LintStream(list(migrations), plan=plan, catalog=catalog, operations=operations, notes=list(notes))


class _Plan(NamedTuple):
    """What a lint's settings make of it, worked out before its first statement."""

    config: LintConfig
    version: int
    rules: list[Rule]
    """the rules that run, in code order"""
    severities: dict[str, Severity]
    disabled: set[str]


def _lint(
    migrations: list[Migration],
    *,
    plan: _Plan,
    catalog: SchemaSnapshot | None,
    operations: list[Operation] | None,
    notes: list[str],
) -> Generator[StatementReport, None, Summary]:
    """:func:`lint`, one statement at a time: its tree decoded, classified, linted and its report handed out, then
    only what later statements read of it is kept (:meth:`StatementContext.retire`), so memory does not grow with
    trees nor with reports; returns the summary, counted as the reports went."""
    from agent19.migrate.classification.classify import classify

    config, version, rules, severities, disabled = plan
    assume = frozenset(config.assume)
    session_timeout = bool(lock_timeout_ms(config.migration_lock_timeout or "0"))  # '0', '5us': no timeout
    fail_rank = SEVERITY_ORDER.index(config.fail_on) if config.fail_on != "never" else len(SEVERITY_ORDER)
    for_node: dict[tuple[str, frozenset[str] | None], list[Rule]] = {}
    counts: Counter[str] = Counter()
    counted: Counter[str] = Counter()
    risks: set[Risk] = set()
    ignored = statements = 0
    files: set[str] = set()
    state = MigrationState(set_statements=[s for m in migrations for s in m.statements])
    classify_state = ClassifyState()
    for migration in migrations:
        files.add(migration.file or "<sql>")
        state, classify_state = _next_file(state, classify_state)
        if session_timeout:  # the tool's connection (config) or the role/database setting sets it for every file
            state.lock_timeout, classify_state.lock_timeout = True, config.migration_lock_timeout
        groups = migration.transaction_groups()
        lines = migration.text.split("\n") if "agent19:ignore" in migration.text else None
        # the rules resolve unqualified names as the classification does (the session's search_path, then the file's
        # SET search_path); entered per statement: never across a yield, where the caller's code runs
        session = one_session(ClassifyContext(catalog, version // 10000, True, classify_state))
        try:
            for stmt, group in zip(migration.statements, groups, strict=True):
                with session:
                    held = stmt.hold_tree()  # decoded at parse (a small text): left so for the caller
                    # connected: what it needs that is not there, before its classification records its drops
                    missing = missing_relations(stmt.node, stmt.fields, session.ctx) if catalog is not None else ()
                    ops = classify([stmt], catalog=catalog, pg_version=version, state=classify_state)
                    if operations is not None:
                        operations.extend(ops)
                    ctx = StatementContext(stmt, ops, migration, group, version, catalog, state, assume=assume,
                                           missing=missing)
                    silenced = _ignored_rules(lines, stmt.line, stmt.sql)
                    findings: list[Finding] = []
                    kind = (stmt.node, frozenset([s for _, s, _ in ctx.alter_cmds()])
                            if stmt.node == "AlterTableStmt" else None)
                    applicable = for_node.get(kind)
                    if applicable is None:  # the rules that read this kind of statement (and sub-commands), in order
                        applicable = for_node[kind] = [r for r in rules if (not r.nodes or stmt.node in r.nodes) and (
                            kind[1] is None or not r.subcommands or not kind[1].isdisjoint(r.subcommands))]
                    for rule in applicable:
                        for hit in rule.check(ctx):
                            if silenced is not None and (not silenced or rule.code in silenced):
                                ignored += 1
                                continue
                            severity = severities.get(rule.code) or hit.severity or rule.severity
                            findings.append(new_finding(rule.code, severity, hit.message, hit.fix))
                    if findings:
                        if len(findings) > 1:
                            findings.sort(key=lambda f: (-SEVERITY_ORDER.index(f.severity), f.rule))
                        for f in findings:  # Counter.update costs an isinstance(Mapping) check and a list per call
                            counts[f.rule] += 1
                            counted[f.severity] += 1
                    report = _statement_report(ctx, findings)
                    risks.add(report.risk)
                    statements += 1
                    _update_state(ctx)
                    ctx.retire(release_tree=not held)
                yield report
        except InputError as exc:  # e.g. a name agent19 cannot write into a fix: the error names the statement
            exc.locate(stmt.file, stmt.line)
            raise
        except RecursionError:  # a tree deeper than a step can walk: said of the statement, not as a traceback
            raise too_deep(stmt.file, stmt.line) from None
        except Exception as exc:  # unexpected (a bug): its traceback, and a report stopped by it, name the statement
            if not isinstance(exc, Agent19Error) and StatementNote.of(exc) is None:
                exc.add_note(StatementNote(stmt.file, stmt.line))
            raise
    assumptions = list(notes) + ([] if catalog else [
        f"no database: PostgreSQL {version // 10000} assumed and every table not created earlier in the linted set "
        "is assumed large and in use (connect with --dsn for real sizes and constraints)"
    ])
    assumptions += [f"stated ({config.source or 'assume'}): {ASSUMPTIONS[a]}" for a in config.assume]
    if session_timeout:
        assumptions.append(f"lock_timeout = {config.migration_lock_timeout} is in force on the migration's connection "
                           f"({config.lock_timeout_source or config.source or 'lint settings'}): no SET needed")
    return Summary(
        files=len(files), statements=statements, errors=counted["error"], warnings=counted["warning"],
        infos=counted["info"], ignored=ignored, by_rule=dict(sorted(counts.items())),
        risk=max_risk(list(risks)), pg_version=version, live=catalog is not None, fail_on=config.fail_on,
        failed=any(counted[s] for s in SEVERITY_ORDER[fail_rank:]), disabled=sorted(disabled),
        assumptions=assumptions,
    )


def lint_sql(sql: str, **options: Any) -> LintReport:
    return lint([load_text(sql)], **options)


def lint_paths(paths: Iterable[Path | str], **options: Any) -> LintReport:
    return lint(load_paths(paths), **options)
