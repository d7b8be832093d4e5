"""What a lint reports: per statement its facts and findings, and the summary — the JSON shape CI systems parse
(:mod:`agent19.migrate.lint.engine` computes them). Plain dataclasses: linting never imports pydantic; the MCP
server dumps and describes them through :mod:`agent19.records`, the CLI writes their JSON itself
(:func:`agent19.json_text.write`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent19.migrate.lint.config import Threshold
from agent19.migrate.lint.rules._base import LazyText, Severity
from agent19.migrate.model import Risk


@dataclass(kw_only=True)
class Finding:
    rule: str = field(metadata={"description": "rule code, e.g. A19001 (see docs/rules.md)"})
    severity: Severity
    message: str
    fix: str | None = field(default=None, metadata={
        "description": "the safe alternative, as SQL where it can be generated"})

    # A rule may give a LazyText (rules/_base.py) as ``message`` or ``fix``: written only when the finding is read
    # or dumped, so a large report does not hold every finding's texts until it is rendered. Readers see a str.


def _text_property(name: str) -> property:
    """``finding.<name>``: the text, written now when a LazyText holds it (a data descriptor on the class comes
    before the instance's ``__dict__``, where the value is kept). Every reader goes through it: attribute reads,
    ``dataclasses.asdict``, pydantic's dump and schema (it reads a dataclass's fields by attribute)."""

    def read(finding: Finding) -> str | None:
        text = finding.__dict__.get(name)
        return str(text) if isinstance(text, LazyText) else text

    def write(finding: Finding, value: str | LazyText | None) -> None:
        finding.__dict__[name] = value

    return property(read, write)


Finding.message = _text_property("message")  # type: ignore[assignment,method-assign]
Finding.fix = _text_property("fix")  # type: ignore[assignment,method-assign]


def new_finding(rule: str, severity: Severity, message: str | LazyText, fix: str | LazyText | None) -> Finding:
    """``Finding(rule=…, severity=…, message=…, fix=…)`` as the lint makes one per finding: the values put in the
    instance's ``__dict__`` directly, where the constructor calls the two text properties' setters to put them."""
    made = object.__new__(Finding)
    made.__dict__.update(rule=rule, severity=severity, message=message, fix=fix)
    return made


@dataclass(kw_only=True)
class StatementReport:
    file: str | None
    line: int
    sql: str
    kind: str
    tables: list[str]
    lock: str | None = field(metadata={"description": "strongest lock mode taken, pg_locks spelling"})
    rewrite: bool
    in_transaction: bool = field(metadata={"description": "can run inside a transaction block"})
    risk: Risk
    findings: list[Finding]


@dataclass(kw_only=True)
class Summary:
    files: int
    statements: int
    errors: int
    warnings: int
    infos: int
    ignored: int = field(metadata={"description": "findings silenced by agent19:ignore comments"})
    by_rule: dict[str, int]
    risk: Risk = field(metadata={"description": "the highest risk of any statement"})
    pg_version: int
    live: bool = field(metadata={"description": "true when a live database supplied the catalog and server version"})
    fail_on: Threshold
    failed: bool = field(metadata={"description": "a finding at or above fail_on remains: the CLI exits 1"})
    disabled: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class LintReport:
    statements: list[StatementReport]
    summary: Summary


@dataclass(kw_only=True)
class LintStopped:
    """What stopped a streamed lint part-way (``agent19 lint --format json``'s ``error``, in place of the summary):
    the reports before it were written, the statements from it on were not linted."""

    message: str = field(metadata={"description": "the error, as agent19 prints it on stderr"})
    file: str | None = field(default=None, metadata={"description": "the file of the statement it stopped at"})
    line: int | None = field(default=None, metadata={"description": "that statement's first line"})
