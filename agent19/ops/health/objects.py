"""Health checks on objects: sequences near exhaustion, integer columns fed by wider sequences, indexes.

Every sequence is read (pg_sequence, not only those named in column defaults), and judged against the
smaller of its own range and the range of each column it feeds — found through ownership (serial,
``OWNED BY``), identity, or a column default that calls ``nextval`` on it. Reading a sequence needs
USAGE or SELECT on it (pg_monitor does not give that): sequences this role cannot read are listed, and
the check is ``unknown`` for them. Indexes come from :func:`agent19.optimize.hygiene.index_health`.
"""

from __future__ import annotations

import shlex

from agent19.ops.health.model import Check, grade, worst
from agent19.ops.health.probe import Probe
from agent19.optimize.hygiene import index_health

INT_MAX = {"smallint": 32767, "integer": 2147483647, "bigint": 9223372036854775807}
INT_MIN = {"smallint": -32768, "integer": -2147483648, "bigint": -9223372036854775808}

Q_SEQUENCES = """
WITH uses AS (
  SELECT d.objid AS seq, d.refobjid AS rel, d.refobjsubid AS att
    FROM pg_depend d
   WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
     AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
  UNION
  SELECT d.refobjid, ad.adrelid, ad.adnum
    FROM pg_depend d JOIN pg_attrdef ad ON ad.oid = d.objid
   WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass)
SELECT format('%I.%I', n.nspname, c.relname) AS sequence, format_type(s.seqtypid, NULL) AS type,
       s.seqmin::numeric AS min, s.seqmax::numeric AS max, s.seqincrement AS increment, s.seqcycle AS cycle,
       has_sequence_privilege(c.oid, 'SELECT,USAGE') AS readable,
       CASE WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE') THEN pg_sequence_last_value(c.oid)::numeric END
         AS last_value,
       coalesce(json_agg(json_build_object('column', format('%I.%I.%I', tn.nspname, t.relname, a.attname),
                                           'table', format('%I.%I', tn.nspname, t.relname), 'name', a.attname,
                                           'type', format_type(a.atttypid, NULL), 'identity', a.attidentity <> ''))
                FILTER (WHERE a.attname IS NOT NULL), '[]') AS columns
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN uses u ON u.seq = c.oid
  LEFT JOIN pg_class t ON t.oid = u.rel LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = u.rel AND a.attnum = u.att
 WHERE NOT pg_is_other_temp_schema(n.oid)
 GROUP BY n.nspname, c.relname, c.oid, s.seqtypid, s.seqmin, s.seqmax, s.seqincrement, s.seqcycle
 ORDER BY 1"""


def sequences(probe: Probe) -> list[Check]:
    t = probe.thresholds
    rows = probe.rows(Q_SEQUENCES)
    used, unreadable, mismatched = [], [], []
    parts: dict[str, tuple[str, str]] = {}  # column as SQL -> (its table as SQL, its raw name): for shell commands
    for r in rows:
        if not r["readable"]:
            unreadable.append(r["sequence"])
            continue
        up = r["increment"] > 0
        limit = int(r["max"] if up else r["min"])
        for col in r["columns"]:
            parts[col["column"]] = (col.pop("table"), col.pop("name"))
            bound = (INT_MAX if up else INT_MIN).get(col["type"])
            if bound is not None and abs(bound) < abs(limit):
                limit = bound
                mismatched.append({"sequence": r["sequence"], "sequence_type": r["type"], **col,
                                   "column_limit": bound, "sequence_limit": int(r["max"] if up else r["min"])})
        if r["last_value"] is None or r["cycle"] or limit == 0:
            continue  # never used, or wraps around by design
        pct = round(100 * int(r["last_value"]) / limit, 2)
        if pct > 0:
            used.append({"sequence": r["sequence"], "type": r["type"], "last_value": int(r["last_value"]),
                         "limit": limit, "pct": pct, "columns": [c["column"] for c in r["columns"]]})
    used.sort(key=lambda u: -u["pct"])
    flagged = [u for u in used if grade(u["pct"], t.sequence_warning_pct, t.sequence_critical_pct) != "ok"]
    status = worst([grade(u["pct"], t.sequence_warning_pct, t.sequence_critical_pct) for u in flagged])
    fixes = []
    for u in flagged[:10]:
        cols = u["columns"]
        fixes.append(f"{u['sequence']}: " + (
            "; ".join(f"widen {c} to bigint (agent19 pattern change_column_type {shlex.quote(parts[c][0])} "
                      f"--column {shlex.quote(parts[c][1])} --type bigint), then ALTER SEQUENCE {u['sequence']} "
                      "AS bigint"
                      for c in cols) if cols else
            (f"ALTER SEQUENCE {u['sequence']} AS bigint (no column depends on it; find who calls nextval on it)"
             if u["type"] != "bigint" else
             "it is already bigint: raise MAXVALUE only if nothing stores its values in a narrower column")))
    check = Check(
        check="sequences", status=status, evidence=Q_SEQUENCES.strip(),
        value={"nearest": used[:20], "unreadable": unreadable},
        threshold={"warning_pct": t.sequence_warning_pct, "critical_pct": t.sequence_critical_pct},
        objects=[u["sequence"] for u in flagged],
        message=("; ".join(f"{u['sequence']} at {u['pct']} % ({u['last_value']:,} of {u['limit']:,}"
                           + (f", feeds {', '.join(u['columns'])}" if u["columns"] else "") + ")" for u in flagged)
                 if flagged else f"{len(rows) - len(unreadable)} sequence(s) read, none >= {t.sequence_warning_pct} % "
                 "of its range"
                 + (f" (highest: {used[0]['sequence']} at {used[0]['pct']} %)" if used else "")),
        fix="; ".join(fixes) or None,
    )
    if unreadable:
        check.needs = "USAGE or SELECT on the sequences (GRANT SELECT ON ALL SEQUENCES IN SCHEMA ... TO ..., or " \
            "pg_read_all_data on PostgreSQL 14+)"
        check.message += f"; {len(unreadable)} sequence(s) not readable by {probe.facts.user}: " \
            + ", ".join(unreadable[:10])
        if check.status == "ok":
            check.status = "unknown"
    mismatch = Check(
        check="sequence_column_type", status="warning" if mismatched else "ok", value=mismatched,
        evidence=Q_SEQUENCES.strip(), objects=[m["column"] for m in mismatched],
        threshold="the column's integer type holds every value the sequence can give",
        message="; ".join(f"{m['column']} ({m['type']}) is fed by {m['sequence']} ({m['sequence_type']}): inserts "
                          f"fail once it passes {m['column_limit']:,}" for m in mismatched)
        or "every sequence-fed integer column is as wide as its sequence",
        fix=None if not mismatched else "; ".join(
            f"widen {m['column']} to {m['sequence_type']} (agent19 pattern change_column_type) - or, to fail "
            f"visibly at the column's limit, ALTER SEQUENCE {m['sequence']} AS {m['type']}" for m in mismatched[:10]),
    )
    return [check, mismatch]


def indexes(probe: Probe) -> list[Check]:
    probe.last_sql = "index_health (agent19 index-health): pg_index, pg_stat_all_indexes, pg_relation_size"
    health = index_health(probe.db)
    invalid = [f for f in health.findings if f.kind == "invalid"]
    other = [f for f in health.findings if f.kind != "invalid"]
    window = f"since {health.stats_since}" if health.stats_since else "now"
    evidence = ("agent19 index-health --format json  "
                "(SELECT ... FROM pg_index JOIN pg_class ... WHERE NOT indisvalid ...)")
    return [
        Check(check="invalid_indexes", status="warning" if invalid else "ok", evidence=evidence,
              value=[f.model_dump() for f in invalid], objects=[f.index or f.table for f in invalid],
              threshold="any index with pg_index.indisvalid = false",
              message="; ".join(f"{f.index} on {f.table}: {f.detail}" for f in invalid) or "no invalid index",
              fix="\n".join(f.fix for f in invalid) or None, untrusted_data=bool(invalid)),
        Check(check="index_health", status="warning" if other else "ok", evidence=evidence, window=window,
              value=[f.model_dump() for f in other], objects=sorted({f.index or f.table for f in other}),
              threshold="index_health's rules: unused >= 10 MB, duplicate, foreign key without index, bigger than "
              "its table, bloat >= 100 MB",
              message="; ".join(f"[{f.kind}] {f.index or f.table}: {f.detail}" for f in other[:10])
              or "no unused, duplicate, missing or bloated index",
              fix="\n".join(f.fix for f in other[:10]) or None, untrusted_data=bool(other)),
    ]
