"""lint_migration (``agent19 lint``) and list_lint_rules (``agent19 rules``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, cast

import agent19
from agent19 import json_text, tool_names
from agent19.errors import Agent19Error, InputError, StatementNote, where
from agent19.migrate.lint.engine import LintReport, LintStream
from agent19.migrate.lint.model import LintStopped, StatementReport
from agent19.textsafe import Message
from agent19.tools.registry import ToolContext, tool


@dataclass
class LintArgs:
    paths: list[str] = field(default_factory=list, metadata={"description": "migration files or directories "
                             "(Flyway, golang-migrate, Prisma, numbered or plain .sql), linted in their tool's order"})
    sql: str | None = field(default=None, metadata={"description": "SQL text to lint instead of files",
                                                    "json_schema_extra": {"user_sql": "text"}})
    pg_version: int | None = field(default=None, metadata={"description": "PostgreSQL version to assume without a "
                                   "database, e.g. 15 or 150004 (default: the config's, else 11)"})
    disable: list[str] = field(default_factory=list, metadata={
        "description": "rule codes or names to turn off (adds to the config's)"})
    fail_on: Literal["error", "warning", "info", "never"] | None = field(default=None, metadata={
        "description": "lowest severity that fails the lint (CLI exit 1); default error"})
    config: str | None = field(default=None, metadata={"description": "config file (default: nearest agent19.toml "
                               "or pyproject.toml [tool.agent19.lint])"})
    style: bool = field(default=False, metadata={
        "description": "also run the style group (bigint keys, identity, text, timestamptz, jsonb, no char(n), "
        "names <= 63 bytes, schema-qualified names); config: style"})
    assume: list[str] = field(default_factory=list, metadata={"description": "facts the SQL does not show, added to "
                              "the config's: type-changes-widen = type changes linted without a database are "
                              "no-rewrite widenings"})
    migration_lock_timeout: str | None = field(default=None, metadata={
        "description": "lock_timeout the migration tool's connection sets (e.g. 5s): statements then need no SET "
        "lock_timeout (default: the config's, else the role's or database's setting when connected)"})


def _first_line(sql: str, width: int = 100) -> str:
    line = " ".join(sql.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def _read(report: LintReport | LintStream, stopped: list[Exception]) -> Iterator[StatementReport]:
    """``report.statements`` as a renderer reads them: an error that stops a streamed lint part-way (a statement
    nested too deeply, a name agent19 cannot write into a fix) ends them and is kept in ``stopped``, so that the
    renderer closes its document saying so (a CI job saving the output keeps a complete file), then raises it."""
    try:
        yield from report.statements
    except Exception as exc:  # raised again by the renderer, after its last part
        stopped.append(exc)


def _stopped(exc: Exception) -> LintStopped:
    """What the report says of the error that stopped it, and where (an unexpected error: the statement the
    engine's note names)."""
    if isinstance(exc, Agent19Error):
        file, line = (exc.file, exc.line) if isinstance(exc, InputError) else (None, None)
        return LintStopped(message=str(exc), file=file, line=line)
    note = StatementNote.of(exc)
    message = f"agent19 stopped on an unexpected error ({type(exc).__name__}: {exc}); its traceback is on stderr"
    if note is None:
        return LintStopped(message=message)
    return LintStopped(message=f"{where(note.file, note.line)}: {message}", file=note.file, line=note.line)


class _Failed:
    """A lint stopped before its first statement (a file that does not parse), as a renderer reads a stream: its
    statements end at once with the error, so that the renderer writes its stopped document (no statements, the
    error) and raises the error."""

    def __init__(self, exc: Exception) -> None:
        self.statements = self._raise(exc)

    @staticmethod
    def _raise(exc: Exception) -> Iterator[StatementReport]:
        raise exc
        yield  # a generator: raises when read


def _failed(exc: Exception) -> LintStream:
    return cast(LintStream, _Failed(exc))


def render_report(report: LintReport | LintStream) -> Iterator[str]:
    """The text report, a statement at a time (it reads ``report.statements`` once, then the summary); a lint
    stopped by an error ends with a line saying so instead of the summary."""
    stopped: list[Exception] = []
    for s in _read(report, stopped):
        if not s.findings:
            continue
        out: list[str] = []
        where = f"{s.file}:{s.line}" if s.file else f"line {s.line}"
        facts = [f"lock {s.lock}" if s.lock else "no table lock"] + (["rewrites the table"] if s.rewrite else []) + [
            f"risk {s.risk}"] + ([] if s.in_transaction else ["cannot run in a transaction block"])
        out.append(f"{where}: {_first_line(s.sql)}")
        out.append(f"  {', '.join(facts)}")
        for f in s.findings:
            out.append(f"  {f.severity} {f.rule}: {f.message}")
            if fix := f.fix:  # read once: a long fix is written when read (engine.Finding)
                out.extend(f"      {line}" for line in ("fix: " + fix).splitlines())
        out.append("")
        yield "\n".join(out) + "\n"
    if stopped:
        # agent19's own words, written whatever the output's encoding: the error it tells of must not be hidden
        yield Message(f"lint stopped by an error: {_stopped(stopped[0]).message} (the statements from there on "
                      "were not linted)\n")
        raise stopped[0]
    m = report.summary
    out = [
        f"{m.statements} statements in {m.files} file(s): {m.errors} error(s), {m.warnings} warning(s), "
        f"{m.infos} info" + (f", {m.ignored} ignored" if m.ignored else "")
        + f" - PostgreSQL {m.pg_version // 10000}{' (live database)' if m.live else ''}"
    ]
    out.extend(f"note: {a}" for a in m.assumptions)
    yield "\n".join(out)


def render_json(report: LintReport | LintStream) -> Iterator[str]:
    """The report's JSON as pydantic writes it (``model_dump_json(indent=2)``, :mod:`agent19.json_text`), a
    statement at a time: a 5 MB migration's report is ~100 MB of JSON, which built whole (and encoded once more to
    print) was most of a large lint's memory. A lint stopped by an error part-way ends the document with an
    ``error`` member (:class:`LintStopped`) in place of the summary, then raises the error."""
    yield '{\n  "statements": ['
    write, before, stopped = json_text.writer(level=2), "\n    ", []
    for s in _read(report, stopped):
        yield before + write(s)
        before = ",\n    "
    end = "]" if before == "\n    " else "\n  ]"
    if stopped:
        yield end + f',\n  "error": {json_text.write(_stopped(stopped[0]), level=1)}\n}}\n'
        raise stopped[0]
    yield end + f',\n  "summary": {json_text.write(report.summary, level=1)}\n}}'


_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
_RESULTS = "\0results\0"
"""Stands for the results in the SARIF document written around them (a string no result holds)."""


def _location(file: str | None, line: int) -> dict[str, object]:
    return {"physicalLocation": {"artifactLocation": {"uri": Path(file).as_posix() if file else "migration.sql"},
                                 "region": {"startLine": line}}}


def render_sarif(report: LintReport | LintStream) -> Iterator[str]:
    """SARIF 2.1.0, for code-scanning UIs (GitHub, GitLab, IDEs): ``json.dumps(sarif, indent=2)``'s text, each
    result written as its statement is read. A lint stopped by an error part-way ends the run with an invocation
    that did not succeed (``executionSuccessful: false``, the error as its notification), then raises the error."""
    import json

    from agent19.migrate.lint.rules import all_rules

    rules = list(all_rules())
    index = {r.code: i for i, r in enumerate(rules)}
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "agent19",
                "version": agent19.__version__,
                "informationUri": "https://github.com/agent19/agent19/blob/main/docs/rules.md",
                "rules": [{
                    "id": r.code,
                    "name": r.name,
                    "shortDescription": {"text": r.title},
                    "fullDescription": {"text": r.why},
                    "help": {"text": r.alternative},
                    "defaultConfiguration": {"level": _SARIF_LEVEL[r.severity]},
                } for r in rules],
            }},
            "results": [_RESULTS],
        }],
    }
    # the document with one placeholder result: its text before and after that result's place (indent 8: a result
    # sits in document → runs → run → results), the results written between
    head, _, tail = json.dumps(sarif, indent=2, ensure_ascii=False).partition(f"\n{' ' * 8}{json.dumps(_RESULTS)}")
    yield head
    written, stopped = False, []
    for s in _read(report, stopped):
        for f in s.findings:
            fix = f.fix  # read once: a long fix is written when read (engine.Finding)
            text = f.message + (f"\nfix:\n{fix}" if fix else "")
            result = {
                "ruleId": f.rule,
                "ruleIndex": index[f.rule],
                "level": _SARIF_LEVEL[f.severity],
                "message": {"text": text},
                "locations": [_location(s.file, s.line)],
            }
            yield ("," if written else "") + f"\n{' ' * 8}" + json.dumps(result, indent=2, ensure_ascii=False).replace(
                "\n", f"\n{' ' * 8}")
            written = True
    if stopped:
        error = _stopped(stopped[0])
        note: dict[str, object] = {"level": "error", "message": {"text": error.message}}
        if error.line is not None:
            note["locations"] = [_location(error.file, error.line)]
        sarif["runs"][0]["invocations"] = [{"executionSuccessful": False, "toolExecutionNotifications": [note]}]
        tail = json.dumps(sarif, indent=2, ensure_ascii=False).partition(f"\n{' ' * 8}{json.dumps(_RESULTS)}")[2]
    # no result: json.dumps writes the empty list on one line
    yield tail if written else "]" + tail.partition("]")[2]
    if stopped:
        raise stopped[0]


@tool(
    name="lint_migration",
    briefs={
        "paths": "files or directories", "sql": "", "disable": "rule codes or names", "fail_on": "", "style": "",
        "assume": "facts the SQL does not show", "migration_lock_timeout": "",
    },
    title="Lint a migration",
    args=LintArgs,
    result=LintReport,
    cli="lint",
    positional=("paths",),
    render_text=render_report,
    formats={"json": render_json, "sarif": render_sarif},
    error_formats={"json": lambda exc: render_json(_failed(exc)), "sarif": lambda exc: render_sarif(_failed(exc))},
    exit_code=lambda r: 1 if r.summary.failed else 0,
    examples=(
        "agent19 lint migrations/",
        "agent19 lint db/migrate/V3__orders.sql --pg-version 15",
        "agent19 lint migrations/ --format sarif > lint.sarif",
        "agent19 lint migrations/ --dsn postgresql://app@localhost/shop --format json",
        "agent19 lint migrations/ --pg-version 15 --style --assume type-changes-widen",
    ),
)
def lint_migration(ctx: ToolContext, args: LintArgs) -> LintReport | LintStream:
    """Lint migration SQL before it runs: each statement's lock, rewrite, risk and safe SQL. No database needed.

    Lint migration SQL before it runs: for every statement, the lock it takes (pg_locks names),
    whether it rewrites the table, whether it can run in a transaction, its risk, and findings —
    blocking index builds, table rewrites, validating scans, missing lock_timeout, destructive
    statements, renames that break clients — each with the safe alternative as SQL.

    Give `sql` text or `paths` (files or directories; Flyway, golang-migrate, Prisma and numbered
    files are read in their tool's order and transaction). With a database configured, real table
    sizes, constraints and the server version are used; otherwise `pg_version` (default 11) and every
    existing table is assumed large. Severity: error = blocks or rewrites a table, fails, loses data
    or breaks clients; warning = needs a condition checked; info = style. Rules: docs/rules.md."""
    from agent19.migrate.layouts.files import load_paths, load_text
    from agent19.migrate.lint.config import InvalidSetting, load_config, normalize_version, role_lock_timeout
    from agent19.migrate.lint.engine import lint, lint_stream
    from agent19.migrate.parse import release_trees

    if args.sql is None and not args.paths:
        raise InputError("nothing to lint", "give migration files or directories, or `sql`")
    config = load_config(args.config)
    updates: dict[str, object] = {"disable": [*config.disable, *args.disable],
                                  "assume": list(dict.fromkeys([*config.assume, *args.assume]))}
    if args.fail_on:
        updates["fail_on"] = args.fail_on
    if args.style:
        updates["style"] = True
    if args.migration_lock_timeout:
        updates.update(migration_lock_timeout=args.migration_lock_timeout,
                       lock_timeout_source="--migration-lock-timeout")
    try:
        config = replace(config, **updates)
    except InvalidSetting as exc:  # an argument the settings refuse (e.g. a lock_timeout PostgreSQL would not take)
        raise InputError(f"{exc.loc[0]}: {exc.message}", "see `agent19 lint --help`" if tool_names.at_cli()
                         else "see the arguments of lint_migration") from None
    migrations = [load_text(args.sql)] if args.sql is not None else []
    migrations += load_paths(args.paths)
    if not any(m.statements for m in migrations):  # a CI pointed at the wrong directory must not pass
        if not args.paths:
            raise InputError("no statements found in the SQL text", "give the migration's SQL")
        raise InputError(f"no statements found in {', '.join(args.paths)} ({len(migrations)} .sql file(s) read)",
                         "check the paths: a directory's .sql files are read, and comments alone are no statement")
    catalog, unreachable = ctx.live_catalog_or_why()  # unreachable: lint the SQL alone rather than fail
    if catalog is not None and not config.migration_lock_timeout:
        with ctx.db.read() as conn:
            found = role_lock_timeout(conn)
        if found:
            config = replace(config, migration_lock_timeout=found[0], lock_timeout_source=found[1])
    notes = [] if unreachable is None else [f"the database could not be used ({unreachable}): the SQL was linted "
                                            "alone, without its catalog"]
    options = {"catalog": catalog, "pg_version": normalize_version(args.pg_version), "config": config, "notes": notes}
    if ctx.streaming:  # written as each statement is linted (the process ends after: no trees to release)
        return lint_stream(migrations, **options)
    report = lint(migrations, **options)
    for migration in migrations:
        release_trees(migration.statements)
    return report


@dataclass
class RulesArgs:
    pass


@dataclass(kw_only=True)
class RuleDoc:
    code: str
    name: str
    title: str
    severity: str
    group: str = field(metadata={"description": "safety (on by default) or style (off unless turned on)"})
    aliases: list[str] = field(default_factory=list, metadata={
        "description": "other names accepted in config and ignore comments"})
    why: str
    alternative: str
    bad: str
    good: str


@dataclass
class RuleList:
    rules: list[RuleDoc]


def render_rules_text(r: RuleList) -> str:
    return "\n".join(f"{d.code}  {d.severity:<7}  {d.name:<34} {d.title}" for d in r.rules)


def render_rules_markdown(r: RuleList) -> str:
    lines = [
        "# agent19 lint rules",
        "",
        "Generated from `agent19/migrate/lint/rules/` by `agent19 rules --format markdown > docs/rules.md`; "
        "do not edit by hand.",
        "",
        "Severities mean one thing each: **error** - as written, it blocks reads or writes of an existing table "
        "for a time that grows with the table, rewrites it, fails on a populated table, loses data, or breaks "
        "running clients; **warning** - safe in itself but needs a condition checked; **info** - style.",
        "",
        "Silence one statement with `-- agent19:ignore <code or name>` on its line or the line before; turn rules "
        "off in `agent19.toml` (`[lint] disable = [...]`) or `pyproject.toml` (`[tool.agent19.lint]`).",
        "",
        "The style group is off by default: turn it on with `style = true` (or `--style`), or rule by rule with "
        "`enable = [...]`; its findings are `style_severity` (default warning), and `severity = { rule = "
        "\"error\" }` sets any rule's. squawk's rule names are accepted as aliases.",
        "",
        "| code | name | severity | title |",
        "|---|---|---|---|",
    ]
    lines += [f"| [{d.code}](#{d.code.lower()}-{d.name}) | `{d.name}` | {d.severity} | {d.title} |" for d in r.rules]
    for d in r.rules:
        lines += [
            "", f"## {d.code} {d.name}", "", f"**{d.title}** - severity: {d.severity}"
            + (" (style group: off by default; `style = true` or `enable`)" if d.group == "style" else "")
            + (f"; also named {', '.join(f'`{a}`' for a in d.aliases)}" if d.aliases else ""), "",
            d.why, "", f"**Instead:** {d.alternative}", "",
            "Bad:", "", "```sql", d.bad, "```", "", "Good:", "", "```sql", d.good, "```",
        ]
    return "\n".join(lines) + "\n"


@tool(
    name="list_lint_rules",
    title="Lint rules",
    args=RulesArgs,
    result=RuleList,
    cli="rules",
    render_text=render_rules_text,
    formats={"markdown": render_rules_markdown, "json": json_text.write},  # pydantic's text, without pydantic
    examples=("agent19 rules", "agent19 rules --format markdown > docs/rules.md"),
)
def list_lint_rules(ctx: ToolContext, args: RulesArgs) -> RuleList:
    """Every lint rule: code, severity, why, safe alternative; codes go in `disable` or `-- agent19:ignore`.

    Every lint rule agent19 applies: code, name, severity, why it matters, the safe alternative, and
    a bad and a good example. Use a code or name in `disable` or in `-- agent19:ignore` comments."""
    from agent19.migrate.lint.rules import all_rules

    return RuleList(rules=[
        RuleDoc(code=r.code, name=r.name, title=r.title, severity=r.severity, group=r.group,
                aliases=list(r.aliases), why=r.why,
                alternative=r.alternative, bad=r.bad, good=r.good)
        for r in all_rules()
    ])
