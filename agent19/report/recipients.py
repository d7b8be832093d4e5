"""The recipients' views of a migration: application engineers, QA and security.

Each is derived from the statements themselves (:mod:`agent19.report.sqlfacts`) and, when a
database was given, its catalog. The personal-data heuristics are a data table (:data:`PII_NAMES`)
flagging columns by name and type for a human to review; they decide nothing on their own.
"""

from __future__ import annotations

import re

from agent19.db.models import SchemaSnapshot
from agent19.migrate.patterns.live import find_table
from agent19.migrate.patterns.sqlnames import ident
from agent19.report.model import (
    AppChange,
    ApplicationHandoff,
    DeployPhase,
    PiiFlag,
    QaCase,
    QaHandoff,
    SecurityHandoff,
    Step,
)
from agent19.report.sqlfacts import StatementFact, statement_facts

PII_NAMES: tuple[tuple[str, str], ...] = (
    (r"e_?mail", "looks like an email address"),
    (r"phone|mobile|msisdn", "looks like a phone number"),
    (r"(first|last|full|given|family|middle|sur|maiden)_?name", "looks like a person's name"),
    (r"birth|(^|_)dob($|_)", "looks like a date of birth"),
    (r"ssn|social_security|national_id|tax_?id|passport|licen[cs]e_?(no|number)", "looks like a government id"),
    (r"address|street|(^|_)city($|_)|zip|postal|postcode", "looks like a postal address"),
    (r"(^|_)ip(_|$)|ip_?addr|user_agent", "looks like a network identifier"),
    (r"iban|account_?(no|number)|card_?(no|number)|credit_?card|cvv", "looks like a financial account"),
    (r"salary|income", "looks like financial data about a person"),
    (r"gender|ethnic|religio|health|diagnos|disabilit", "looks like special-category personal data"),
    (r"password|passwd|secret|token|api_?key", "looks like a credential"),
    (r"latitude|longitude|(^|_)geo", "looks like a location"),
)
PII_TYPES = {"inet": "network address type", "cidr": "network address type", "macaddr": "hardware address type",
             "macaddr8": "hardware address type"}

EXPAND = {"add_column", "create_table", "create_index", "add_constraint", "validate_constraint",
          "create_extension", "set_default", "drop_not_null", "grant", "policy", "rls", "function", "other"}
"""Fact kinds old application code keeps working with; the rest need the application to change first."""


def step_facts(steps: list[Step]) -> list[tuple[Step, StatementFact]]:
    return [(s, f) for s in steps for f in statement_facts(s.sql)]


def _app_change(f: StatementFact) -> AppChange | None:  # noqa: C901 — one branch per kind
    col = f.column.name if f.column else None
    t = f.table
    if f.kind == "add_column" and f.column:
        c = f.column
        if not c.nullable and c.default is None:
            return AppChange(table=t, change=f"column {col} {c.type} NOT NULL added without a default",
                             impact="inserts that do not set it fail", writes_can_fail=True)
        dflt = f", default {c.default}" if c.default else ""
        return AppChange(table=t, change=f"column {col} {c.type}{dflt} added",
                         impact="existing reads and writes keep working; new code may read and write it",
                         writes_can_fail=False)
    if f.kind == "set_not_null":
        return AppChange(table=t, change=f"column {col} becomes NOT NULL",
                         impact=f"writes that set {col} to NULL (or omit it without a default) now fail",
                         writes_can_fail=True)
    if f.kind == "drop_not_null":
        return AppChange(table=t, change=f"column {col} becomes nullable",
                         impact="readers must handle NULL", writes_can_fail=False)
    if f.kind == "drop_column":
        return AppChange(table=t, change=f"column {col} dropped",
                         impact=f"any query naming {col} fails: deploy code that no longer reads or writes it "
                         "before this step", writes_can_fail=True)
    if f.kind == "alter_type" and f.column:
        return AppChange(table=t, change=f"column {col} changes type to {f.column.type}",
                         impact="values the new type cannot hold are rejected; check the ORM mapping",
                         writes_can_fail=True)
    if f.kind == "add_constraint":
        return AppChange(table=t, change=f"{f.constraint_type} constraint {f.name or ''} added".replace("  ", " "),
                         impact="writes that violate it fail", writes_can_fail=True)
    if f.kind == "create_index":
        if f.unique:
            return AppChange(table=t, change=f"unique index {f.name or ''} added",
                             impact="writes creating duplicates fail", writes_can_fail=True)
        return AppChange(table=t, change=f"index {f.name or ''} added",
                         impact="no application change; queries on its columns may get faster", writes_can_fail=False)
    if f.kind in ("rename_column", "rename_table"):
        old = col if f.kind == "rename_column" else t
        return AppChange(table=t, change=f"{f.kind.split('_')[1]} {old} renamed to {f.name}",
                         impact="code using the old name fails: use expand/contract (view or both names) "
                         "or deploy in lockstep", writes_can_fail=True)
    impact = {"create_table": ("new table; nothing existing changes", False),
              "drop_table": ("any query on it fails; its data is gone", True),
              "truncate": ("all its rows are deleted", True)}.get(f.kind)
    if impact is not None:
        return AppChange(table=t, change=f.kind.replace("_", " "), impact=impact[0], writes_can_fail=impact[1])
    return None


_PRISMA_TYPES = {"text": "String", "varchar": "String", "character varying": "String", "uuid": "String @db.Uuid",
                 "integer": "Int", "int": "Int", "int4": "Int", "bigint": "BigInt", "int8": "BigInt",
                 "boolean": "Boolean", "bool": "Boolean", "timestamptz": "DateTime @db.Timestamptz",
                 "timestamp": "DateTime", "date": "DateTime @db.Date", "numeric": "Decimal", "jsonb": "Json",
                 "json": "Json", "double precision": "Float", "real": "Float", "bytea": "Bytes"}


def _prisma_line(f: StatementFact) -> str | None:
    model = (f.table or "").split(".")[-1].strip('"')
    if f.kind == "add_column" and f.column:
        base = f.column.type.split("(")[0].strip().lower()
        ptype = _PRISMA_TYPES.get(base, f'Unsupported("{f.column.type}")')
        opt = "" if not f.column.nullable else "?"
        first, _, attr = ptype.partition(" ")
        return f"model {model}: add `{f.column.name} {first}{opt}{(' ' + attr) if attr else ''}`"
    if f.kind == "drop_column" and f.column:
        return f"model {model}: remove the field `{f.column.name}`"
    if f.kind == "set_not_null" and f.column:
        return f"model {model}: `{f.column.name}` loses its `?` (required)"
    if f.kind == "create_index" and f.columns:
        cols = ", ".join(c.name for c in f.columns)
        return f"model {model}: add `@@{'unique' if f.unique else 'index'}([{cols}])`"
    return None


def application_handoff(steps: list[Step], prisma: bool | None) -> ApplicationHandoff:
    pairs = step_facts(steps)
    changes = [c for c in (_app_change(f) for _, f in pairs) if c is not None]
    expand = sorted({s.order for s, f in pairs if f.kind in EXPAND})
    contract = sorted({s.order for s, f in pairs if f.kind not in EXPAND} - set(expand))
    phases = []
    if expand:
        phases.append(DeployPhase(
            name="expand", steps=expand, deploy_after=bool(contract),
            note="old and new application code both work with the database after these steps"))
    if contract:
        interleaved = bool(expand) and min(contract) < max(expand)
        note = ("needs the application deployed first: it must stop using what these steps remove and write "
                "what they make required")
        if interleaved:
            note += (f"; the migration as written mixes them (step {min(contract)} comes before step "
                     f"{max(expand)}): split it so the expand steps run, the application is deployed, then these")
        phases.append(DeployPhase(name="contract", steps=contract, deploy_after=False, note=note))
    if prisma:
        lines = [x for x in (_prisma_line(f) for _, f in pairs) if x]
        note = ("the project uses Prisma (a _prisma_migrations table exists): edit schema.prisma as below, or run "
                "`prisma db pull` after the migration and review the diff")
    else:
        lines = []
        note = ("no Prisma migrations table was found in the database" if prisma is False else
                "unknown whether the project uses Prisma (no database was given): if it does, run `prisma db pull` "
                "after the migration and review the schema.prisma diff")
    return ApplicationHandoff(changes=changes, phases=phases, prisma=lines, prisma_note=note)


def _qa_for(step: Step, f: StatementFact) -> QaCase | None:
    col = f.column.name if f.column else ""
    if f.kind == "set_not_null":
        sql = (f"DO $$\nBEGIN\n  UPDATE {f.table} SET {ident(col)} = NULL\n"
               f"   WHERE ctid = (SELECT ctid FROM {f.table} LIMIT 1);\n"
               "  IF NOT FOUND THEN\n    RAISE NOTICE 'no row to test with: insert one row and run again';\n"
               "    RETURN;\n  END IF;\n"
               f"  RAISE EXCEPTION 'NULL was accepted in {f.table}.{col}';\n"
               "EXCEPTION WHEN not_null_violation THEN\n"
               f"  RAISE NOTICE 'ok: NULL rejected in {f.table}.{col}';\nEND $$")
        return QaCase(name=f"NULL is rejected in {f.table}.{col} (step {step.order})", when="after", sql=sql,
                      expected="completes with NOTICE 'ok: NULL rejected...' (an ERROR means NULL was accepted; "
                      "nothing is changed either way)")
    if f.kind == "drop_column":
        sql = (f"DO $$\nBEGIN\n  PERFORM {ident(col)} FROM {f.table} LIMIT 1;\n"
               f"  RAISE EXCEPTION '{f.table}.{col} still exists';\n"
               f"EXCEPTION WHEN undefined_column THEN\n  RAISE NOTICE 'ok: {f.table}.{col} is gone';\nEND $$")
        return QaCase(name=f"queries naming {f.table}.{col} fail (step {step.order})", when="after", sql=sql,
                      expected="completes with NOTICE 'ok: ... is gone'; run the application's test suite to find "
                      "code that still names the column")
    return None


def qa_handoff(steps: list[Step]) -> QaHandoff:
    pairs = step_facts(steps)
    created = {f.table for _, f in pairs if f.kind == "create_table"}
    cases: list[QaCase] = []
    seen: set[str] = set()
    for s, f in pairs:
        t = f.table
        # the step loses the table's rows themselves (DROP TABLE, TRUNCATE), as the plan's classification says
        rows_gone = s.data_loss and f.column is None and f.kind != "data_change"
        if t and t not in created and t not in seen and not rows_gone and f.kind not in ("grant", "revoke") \
                and "," not in t:
            seen.add(t)
            cases.append(QaCase(name=f"rows of {t} survive the migration", when="before_and_after",
                                sql=f"SELECT count(*) AS rows FROM {t}",
                                expected="the same count before and after the migration (note it before)"))
    for s, f in pairs:
        case = _qa_for(s, f)
        if case:
            cases.append(case)
    for s in steps:
        if s.verification:
            cases.append(QaCase(name=f"schema: {s.verification.name}", when="after", sql=s.verification.sql,
                                expected=s.verification.expected))
    return QaHandoff(cases=cases)


def _pii(name: str, type_: str) -> str | None:
    low = name.lower()
    for pattern, reason in PII_NAMES:
        if re.search(pattern, low):
            return reason
    base = type_.split("(")[0].strip().lower()
    return PII_TYPES.get(base)


def security_handoff(steps: list[Step], catalog: SchemaSnapshot | None) -> SecurityHandoff:
    pairs = step_facts(steps)
    pii: list[PiiFlag] = []
    for _, f in pairs:
        cols = f.columns if f.kind == "create_table" else [f.column] if f.column and f.kind in (
            "add_column", "drop_column", "alter_type", "rename_column") else []
        for c in cols:
            if c is None:
                continue
            type_ = c.type
            if not type_:
                table = find_table(catalog, f.table) if f.table else None
                known = table.column(c.name) if table else None
                type_ = known.type if known else "unknown"
            reason = _pii(c.name if f.kind != "rename_column" else (f.name or c.name), type_)
            if reason:
                change = {"drop_column": "dropped (its values remain in backups)", "create_table": "new table",
                          "add_column": "added", "alter_type": "type changed", "rename_column": "renamed"}[f.kind]
                pii.append(PiiFlag(table=f.table, column=c.name, type=type_, change=change, reason=reason))
    grants = [f"{f.kind.upper()} {', '.join(f.privileges)} ON {f.table or 'objects'} "
              f"{'TO' if f.kind == 'grant' else 'FROM'} {', '.join(f.grantees)}"
              for _, f in pairs if f.kind in ("grant", "revoke")]
    rls = [f"{f.sql}" for _, f in pairs if f.kind in ("rls", "policy")]
    definer = [f"function {f.name} is SECURITY DEFINER: check its search_path is set and who may EXECUTE it"
               for _, f in pairs if f.kind == "function" and f.security_definer]
    extensions = [f"extension {f.name} (CREATE EXTENSION runs its install script as the current user)"
                  for _, f in pairs if f.kind == "create_extension"]
    found = [f"{len(x)} {label}" for x, label in ((pii, "column(s) that look like personal data"),
                                                  (grants, "grant change(s)"), (rls, "row-level security change(s)"),
                                                  (definer, "SECURITY DEFINER function(s)"),
                                                  (extensions, "extension(s) added")) if x]
    summary = ("review: " + ", ".join(found)) if found else (
        f"nothing to flag in the {len(steps)} step(s): no personal-data-looking columns, grants, row-level "
        "security, SECURITY DEFINER functions or extensions")
    return SecurityHandoff(personal_data=pii, grants=grants, row_level_security=rls, security_definer=definer,
                           extensions=extensions, summary=summary)

