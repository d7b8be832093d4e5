"""The step-1 report's human parts: the phrase to type, the checklist, the alternatives.

The phrase names what is at stake (the table and its row count, the database and its size, the
dependents), so typing it is a statement about this exact impact, not a ritual: when the row count
changes, the phrase changes too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from agent19.errors import InputError
from agent19.migrate.patterns.sqlnames import ident, qname, split_name
from agent19.safety.detect import Finding
from agent19.safety.impact import Impact, TargetImpact
from agent19.units import human_size

QUALIFIED_SQL = True  # no SQL of its own: any it gets is read like the rest of the confirmation path's

ACTIONS = {
    "drop_table": "drop", "truncate": "truncate", "delete_all": "delete", "update_all": "update",
    "drop_column": "drop column", "alter_column_type": "type change", "drop_database": "drop database",
    "unverifiable": "running it", "not_known_safe": "running it", "mass_delete": "delete", "mass_update": "update",
}


class ChecklistItem(BaseModel):
    item: str
    status: Literal["known", "unknown", "to confirm"]
    detail: str = ""


class Alternative(BaseModel):
    title: str
    sql: str
    why: str


def _subject(finding: Finding) -> str:
    parts = []
    for t in finding.targets:
        parts.append(f"{t.name}.{t.column}" if t.column else t.name)
    return ", ".join(parts)


def phrase(finding: Finding, impact: Impact) -> str:
    """The exact sentence the human types to confirm ``finding`` with ``impact``."""
    action = ACTIONS.get(finding.kind, finding.kind.replace("_", " "))
    targets = impact.targets
    subject = _subject(finding)
    if targets and all(t.rows_touched is not None for t in targets):
        parts = [f"{t.name} has {t.rows_text} rows and the statement {action}s {t.rows_touched} of them"
                 for t in targets]
        return f"Confirmed: {', '.join(parts)}, data is archived/not needed, proceed with {action}."
    if finding.kind in {"unverifiable", "not_known_safe"}:
        what = f" calling {subject}" if subject else ""
        return f"Confirmed: agent19 cannot verify what this statement{what} changes, proceed with running it."
    if finding.kind == "drop_database":
        return (f"Confirmed: database {subject} ({human_size(targets[0].size_bytes if targets else None)}), "
                f"data is archived/not needed, proceed with drop database.")
    if targets and all(t.rows is not None for t in targets):
        rows = sum(t.rows or 0 for t in targets)
        cascade = sum(t.cascade_rows for t in targets)
        exact = all(t.rows_exact for t in targets)
        verb = "has" if len(finding.targets) == 1 else "have"
        # a policy hides rows from this login: what it counted is a lower bound, and the phrase says so
        count = f"at least {rows}" if any(t.rows_lower_bound for t in targets) else rows if exact else f"about {rows}"
        least = "at least " if any(t.cascade_lower_bound for t in targets) else ""
        also = f" (and {least}{cascade} rows in referencing tables)" if cascade or least else ""
        return (f"Confirmed: {subject} {verb} {count} rows{also}, data is archived/not needed, proceed with {action}.")
    deps = sum(len(t.dependents) for t in targets)
    return f"Confirmed: {subject} with {deps} dependent objects, proceed with {action}."


def _window(finding: Finding) -> str:
    """What the statement locks, as far as its text says, and what confirming locks before it (the tables at stake:
    :func:`agent19.safety.execution._lock`); a called function's locks are its code's, unknown before it runs."""
    row_level = {"delete_all", "update_all", "mass_delete", "mass_update"}
    lock = "ACCESS EXCLUSIVE" if finding.kind not in row_level else "ROW EXCLUSIVE (row locks)"
    functions = [t.name for t in finding.targets if t.kind == "function"]
    named = [t for t in finding.targets if t.kind != "function"]
    tables = list(dict.fromkeys(t.name for t in named if t.kind in {"table", "column"}))
    parts = [f"the statement calls function {', '.join(functions)}: what its code locks (ACCESS EXCLUSIVE on "
             "anything it drops or alters) is known only when it runs"] if functions else []
    if named or not functions:
        subject = ", ".join(f"{t.name}.{t.column}" if t.column else t.name for t in named)
        parts.append(f"the statement takes {lock} locks on {subject or 'what it touches'}")
    if tables:
        parts.append(f"before it, confirming locks {'that table' if len(tables) == 1 else 'those tables'} in SHARE "
                     "mode (writes wait, reads go on) while it counts their rows exactly")
    return "; ".join(parts)


def checklist(finding: Finding, impact: Impact) -> list[ChecklistItem]:
    hidden = [ChecklistItem(item="every row counted", status="unknown", detail=note)
              for t in impact.targets for note in t.hidden_notes]
    return hidden + [
        ChecklistItem(item="a recent backup exists", status="known" if impact.backup.known else "unknown",
                      detail=impact.backup.detail),
        ChecklistItem(item="tested in staging", status="to confirm",
                      detail="run the same statement on a copy of this database first"),
        ChecklistItem(item="rollback plan", status="to confirm",
                      detail="after COMMIT this cannot be undone by PostgreSQL; the archive option keeps a copy "
                      "of the rows in this database, pg_dump keeps one outside it"),
        ChecklistItem(item="approval", status="to confirm", detail="the owner of the data has agreed"),
        ChecklistItem(item="maintenance window", status="to confirm", detail=_window(finding)),
    ]


def alternatives(finding: Finding, targets: list[TargetImpact]) -> list[Alternative]:
    raw = finding.targets[0].name if finding.targets else ""
    try:  # a name is written quoted: never statement text, whatever it holds (r27-k14)
        name = qname(raw) if raw else ""
        col = ident(finding.targets[0].column) if finding.targets and finding.targets[0].column else None
        renamed = ident(split_name(raw)[1] + "_deprecated") if raw else ""
    except InputError:  # a name with a line break: no statement is suggested
        return []
    if finding.kind in {"delete_all", "mass_delete"}:
        return [
            Alternative(title="delete only some rows", sql=f"DELETE FROM {name} WHERE <condition>",
                        why="did you mean to remove only the rows that match a condition?"),
            Alternative(title="TRUNCATE", sql=f"TRUNCATE {name}",
                        why="removes every row much faster and returns the space at once, but fires no row "
                        "triggers and takes an ACCESS EXCLUSIVE lock"),
            Alternative(title="DROP TABLE", sql=f"DROP TABLE {name}", why="if the table itself is no longer needed"),
        ]
    if finding.kind in {"update_all", "mass_update"}:
        return [Alternative(title="update only some rows", sql=f"UPDATE {name} SET ... WHERE <condition>",
                            why="did you mean to change only the rows that match a condition?")]
    if finding.kind == "drop_table":
        return [Alternative(title="rename first", sql=f"ALTER TABLE {name} RENAME TO {renamed}",
                            why="a reversible step: drop later, once nothing has missed it")]
    if finding.kind == "drop_column" and col:
        return [Alternative(title="stop writing it first", sql=f"ALTER TABLE {name} ALTER COLUMN {col} DROP NOT NULL",
                            why="deploy code that no longer uses the column, then drop it")]
    return []
