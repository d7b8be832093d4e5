"""Compare two catalog snapshots: what a migration (or its rollback) changed in the schema.

Used by the verified rollback (start vs after up+down must be equal) and by the dry run (the
target's catalog before vs after must be equal). Compared: schemas, extensions, tables (kind,
persistence, partitioning), columns (type, default, nullability, identity, generated,
collation, order), constraints (definition, validity, deferrability), indexes (definition,
validity), triggers, views, sequences (type, increment, maximum) and enum values.

Not compared, because they are statistics rather than schema: sizes, row estimates, index scans.
A sequence's position (``last_value``, ``is_called``) is reported: moved forward as ``info`` (``nextval``
is not transactional; gaps are normal) — for a dry run on the target, as an effect it left there, with the amount
and the share of the range used (an error when it reached the end) —, moved backward as an error when the caller
asks (a dry run:
``setval`` or a restart that reached the target outside the transaction; a rollback check: up+down left it set
back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent19.db.models import SchemaSnapshot, Sequence

Change = Literal["added", "removed", "changed"]


class Difference(BaseModel):
    kind: str = Field(description="table, column, constraint, index, trigger, view, sequence, enum, schema, extension")
    object: str = Field(description="schema-qualified name (table.column for a column)")
    change: Change
    detail: str = Field(description="what differs, in words: before -> after")
    severity: Literal["error", "warning", "info"] = Field(
        default="error", description="info: not a schema difference (column order, a sequence's position); "
        "warning: an effect a dry run left on the target that the rollback cannot undo, measured (a sequence "
        "advanced, a table grown: :mod:`agent19.migrate.dryrun.lasting`)"
    )

    def __str__(self) -> str:
        return f"{self.kind} {self.object} {self.change}: {self.detail}"


def _keyed(items: Iterable[Any], key: Callable[[Any], str]) -> dict[str, Any]:
    return {key(i): i for i in items}


def _compare(
    kind: str, before: dict[str, Any], after: dict[str, Any], fields: tuple[str, ...], out: list[Difference],
    describe: Callable[[Any], str] = lambda x: "",
) -> list[str]:
    """Added/removed/changed objects of one kind; returns the keys present in both."""
    for name in sorted(before.keys() - after.keys()):
        text = describe(before[name])
        detail = f"missing: {text}" if text else "missing"
        out.append(Difference(kind=kind, object=name, change="removed", detail=detail))
    for name in sorted(after.keys() - before.keys()):
        text = describe(after[name])
        out.append(Difference(kind=kind, object=name, change="added", detail=f"extra: {text}" if text else "extra"))
    common = sorted(before.keys() & after.keys())
    for name in common:
        changes = []
        for f in fields:
            a, b = getattr(before[name], f), getattr(after[name], f)
            if a != b:
                changes.append(f"{f} {a!r} -> {b!r}")
        if changes:
            out.append(Difference(kind=kind, object=name, change="changed", detail="; ".join(changes)))
    return common


SHARE_ERROR = 0.01
"""A trial that used this share of what was left of a sequence's range (or reached its end) is an error."""


def advanced(a: Sequence, b: Sequence) -> tuple[str, bool]:
    """How far ``nextval`` moved a sequence from ``a`` to ``b`` (forward), in words with its numbers, and whether
    that is an error: it reached the end of the range (the application's next ``nextval`` fails), or used at least
    :data:`SHARE_ERROR` of what was left of it."""
    assert b.last_value is not None
    if a.last_value is None:  # not called before: from its start, which the snapshot does not hold
        return f"first called: last_value now {b.last_value:,}", False
    amount = abs(b.last_value - a.last_value)
    text = f"advanced by {amount:,} ({a.last_value:,} -> {b.last_value:,})"
    if b.increment <= 0:  # a descending sequence: its minimum is not in the snapshot
        return text, False
    left = b.max_value - a.last_value
    if b.last_value + b.increment > b.max_value:
        return text + f": it reached its maximum ({b.max_value:,}): the next nextval fails", True
    used = 100 * b.last_value / b.max_value if b.max_value > 0 else 0.0
    text += f"; {used:.2f} % of {b.data_type}'s range now used" if used >= 0.01 else \
        f"; less than 0.01 % of {b.data_type}'s range now used"
    return text, left > 0 and amount / left >= SHARE_ERROR


def position(name: str, a: Sequence, b: Sequence, backward_is_error: bool, cause: str,
             measured: bool = False) -> list[Difference]:
    """A sequence's position, compared: ``last_value`` is None when ``is_called`` is false (never called, or set
    back to its start: ``setval(s, v, false)``, ``RESTART``) or when the login may not read it (then it is None
    both times). Forward — ``nextval`` handed numbers out and PostgreSQL does not roll that back; gaps are
    normal — is ``info``. Backward (against the increment, or to not-called) hands out numbers again: an error
    when ``backward_is_error`` (a dry run: the target must stay as it was; a rollback check: up+down must leave
    it where it was); ``cause``: the likely cause, in the detail. ``measured`` (a dry run on the target, whose
    result says what it left there): forward is a ``warning`` with the amount and the share of the range used,
    an ``error`` when it reached the end or used a noticeable share of what was left (:func:`advanced`)."""
    if a.last_value == b.last_value:
        return []
    step = 1 if b.increment >= 0 else -1
    backward = b.last_value is None or (a.last_value is not None and (b.last_value - a.last_value) * step < 0)
    shown = {None: "not called"}
    detail = f"last_value {shown.get(a.last_value, a.last_value)} -> {shown.get(b.last_value, b.last_value)}"
    if backward:
        return [Difference(kind="sequence", object=name, change="changed",
                           severity="error" if backward_is_error else "info",
                           detail=f"{detail}: moved backward ({cause}), so nextval will hand out numbers already used")]
    if measured:
        text, serious = advanced(a, b)
        return [Difference(kind="sequence", object=name, change="changed", severity="error" if serious else "warning",
                           detail=f"{text} (nextval is not rolled back by PostgreSQL)")]
    return [Difference(kind="sequence", object=name, change="changed", severity="info",
                       detail=f"{detail} (nextval is not rolled back by PostgreSQL; gaps are normal)")]


def diff_snapshots(before: SchemaSnapshot, after: SchemaSnapshot, *, backward_is_error: bool = False,
                   backward_cause: str = "setval outside the transaction?", measured: bool = False) -> list[Difference]:
    """Every schema difference from ``before`` to ``after``; ``[]`` when they are equal. ``backward_is_error``:
    a sequence set back is an error, not ``info`` (:func:`position`); ``backward_cause`` says why, in its detail;
    ``measured``: a sequence moved forward is an effect left on the target (:func:`position`)."""
    out: list[Difference] = []
    for name in sorted(set(before.schemas) - set(after.schemas)):
        out.append(Difference(kind="schema", object=name, change="removed", detail="missing"))
    for name in sorted(set(after.schemas) - set(before.schemas)):
        out.append(Difference(kind="schema", object=name, change="added", detail="extra"))
    _compare("extension", _keyed(before.extensions, lambda e: e.name), _keyed(after.extensions, lambda e: e.name),
             ("installed_version",), out)

    tables_a = _keyed(before.tables, lambda t: t.qualified_name)
    tables_b = _keyed(after.tables, lambda t: t.qualified_name)
    common = _compare("table", tables_a, tables_b, ("kind", "persistence", "partition_of", "partition_key"), out)
    for qname in common:
        ta, tb = tables_a[qname], tables_b[qname]
        cols_a = _keyed(ta.columns, lambda c, q=qname: f"{q}.{c.name}")
        cols_b = _keyed(tb.columns, lambda c, q=qname: f"{q}.{c.name}")
        _compare("column", cols_a, cols_b, ("type", "nullable", "default", "identity", "generated", "collation"),
                 out, describe=lambda c: f"{c.type}{'' if c.nullable else ' not null'}")
        order_a = [c.name for c in ta.columns if c.name in {x.name for x in tb.columns}]
        order_b = [c.name for c in tb.columns if c.name in {x.name for x in ta.columns}]
        if order_a != order_b:
            out.append(Difference(kind="column", object=qname, change="changed", severity="info",
                                  detail=f"column order {', '.join(order_a)} -> {', '.join(order_b)}"))
        _compare("constraint", _keyed(ta.constraints, lambda c, q=qname: f"{q}.{c.name}"),
                 _keyed(tb.constraints, lambda c, q=qname: f"{q}.{c.name}"),
                 ("type", "definition", "validated", "deferrable"), out, describe=lambda c: c.definition)
        _compare("index", _keyed(ta.indexes, lambda i, s=ta.schema_name: f"{s}.{i.name}"),
                 _keyed(tb.indexes, lambda i, s=tb.schema_name: f"{s}.{i.name}"),
                 ("definition", "valid"), out, describe=lambda i: i.definition)
        _compare("trigger", _keyed(ta.triggers, lambda t, q=qname: f"{q}.{t.name}"),
                 _keyed(tb.triggers, lambda t, q=qname: f"{q}.{t.name}"),
                 ("definition", "enabled"), out, describe=lambda t: t.definition)

    views_a = _keyed(before.views, lambda v: f"{v.schema_name}.{v.name}")
    views_b = _keyed(after.views, lambda v: f"{v.schema_name}.{v.name}")
    for name in _compare("view", views_a, views_b, ("materialized", "definition"), out):
        schema = name.split(".")[0]
        _compare("index", _keyed(views_a[name].indexes, lambda i, s=schema: f"{s}.{i.name}"),
                 _keyed(views_b[name].indexes, lambda i, s=schema: f"{s}.{i.name}"),
                 ("definition", "valid"), out, describe=lambda i: i.definition)

    seq_a = _keyed(before.sequences, lambda s: f"{s.schema_name}.{s.name}")
    seq_b = _keyed(after.sequences, lambda s: f"{s.schema_name}.{s.name}")
    for name in _compare("sequence", seq_a, seq_b, ("data_type", "increment", "max_value", "owned_by"), out):
        out += position(name, seq_a[name], seq_b[name], backward_is_error, backward_cause, measured)
    enums_a = _keyed(before.enums, lambda e: f"{e.schema_name}.{e.name}")
    enums_b = _keyed(after.enums, lambda e: f"{e.schema_name}.{e.name}")
    _compare("enum", enums_a, enums_b, ("values",), out, describe=lambda e: ", ".join(e.values))
    return out


def errors_only(differences: list[Difference]) -> list[Difference]:
    return [d for d in differences if d.severity == "error"]


def left_behind(differences: list[Difference]) -> list[Difference]:
    """What makes the target not as it was: errors and the effects measured (``warning``)."""
    return [d for d in differences if d.severity in ("error", "warning")]
