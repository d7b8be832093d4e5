"""Plan diagnostics of scans: sequential scans that keep few rows, filters no index can serve, index scans
that read too much, lossy bitmaps and index-only scans that still visit the table.

Each check is listed in :data:`agent19.optimize.diagnostics.CHECKS`.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent19.optimize.diagnostics_model import Context, Diagnostic, _diag, _mem, _pct
from agent19.optimize.exprs import FilterProblem, filter_columns, unusable_filters
from agent19.tool_names import tool

MIN_SCAN_ROWS = 10_000


def check_seq_scan(ctx: Context) -> Iterator[Diagnostic]:
    for n in ctx.plan.nodes():
        if n.node_type != "Seq Scan" or not n.filter:
            continue
        if n.rows_read is not None:
            read, removed = n.rows_read, (n.rows_removed_by_filter or 0) * n.loops
            share = removed / read if read else 0
            if read < MIN_SCAN_ROWS or share <= 0.5:
                continue
            yield _diag(
                ctx, n, "seq_scan_selective", f"Sequential scan of {n.relation} keeps {_pct(1 - share)} of its rows",
                "medium" if share > 0.9 else "low",
                evidence={"rows_read": read, "rows_removed_by_filter": removed,
                          "rows_returned": (n.actual_rows or 0) * n.loops, "removed_share": round(share, 4),
                          "filter": n.filter},
                threshold="rows removed by the filter > 50 % (90 %) of at least 10,000 rows read",
                advice=f"an index on the filtered columns of {n.relation} lets PostgreSQL read only the rows it keeps; "
                f"run {tool('advise_indexes')} on this query to get one verified with HypoPG",
                saving_ms=(n.exclusive_time_ms or 0) * share,
            )
        else:
            facts = ctx.facts(n)
            if not facts or facts.row_estimate < MIN_SCAN_ROWS or n.plan_rows / facts.row_estimate > 0.1:
                continue
            yield _diag(
                ctx, n, "seq_scan_selective", f"Sequential scan of {n.relation} to keep an estimated few rows", "low",
                evidence={"table_rows_estimate": facts.row_estimate, "rows_estimate": n.plan_rows,
                          "filter": n.filter},
                threshold="estimated rows kept < 10 % of a table of at least 10,000 rows",
                advice="an index on the filtered columns would avoid reading the whole table; run "
                f"{tool('advise_indexes')}",
            )


def check_unusable_index(ctx: Context) -> Iterator[Diagnostic]:
    for n in ctx.plan.nodes():
        if n.node_type != "Seq Scan" or not n.filter:
            continue
        facts = ctx.facts(n)
        if not facts or max(facts.row_estimate, facts.live_rows or 0) < MIN_SCAN_ROWS:
            continue
        problems: list[FilterProblem] = unusable_filters(n.filter, facts.indexes)
        share = 0.0
        if n.rows_read:
            share = (n.rows_removed_by_filter or 0) * n.loops / n.rows_read
        for p in problems:
            if p.kind == "leading_wildcard":
                advice = (f"a btree index cannot serve LIKE '%...'; a trigram index can: CREATE EXTENSION pg_trgm; "
                          f"CREATE INDEX CONCURRENTLY ON {facts.relation} USING gin ({p.column} gin_trgm_ops) - "
                          "or full-text search (tsvector + GIN) for word searches")
            elif p.kind == "function":
                advice = (f"the index {p.index} is on {p.column}, not on {p.expression}: index the expression "
                          f"(CREATE INDEX CONCURRENTLY ON {facts.relation} (({p.expression}))) or rewrite the "
                          "predicate on the bare column")
            else:
                advice = (f"{p.column} is cast ({p.expression}), so the index {p.index} on it cannot be used: compare "
                          "with a value of the column's own type (fix the parameter's or literal's type)")
            yield _diag(
                ctx, n, "index_unusable", f"The filter on {facts.name}.{p.column} cannot use an index",
                "medium" if share > 0.9 else "low",
                evidence={"column": p.column, "index": p.index, "expression": p.expression, "problem": p.kind,
                          "rows_removed_by_filter": (n.rows_removed_by_filter or 0) * n.loops if n.rows_read else None},
                threshold="a predicate no btree index can serve (a leading-wildcard LIKE), on a table of at least "
                "10,000 rows" if p.kind == "leading_wildcard" else "a predicate on an indexed column that the "
                "index cannot serve, on a table of at least 10,000 rows",
                advice=advice,
                saving_ms=(n.exclusive_time_ms or 0) * share if n.rows_read else None,
            )


def check_wasteful_index_scan(ctx: Context) -> Iterator[Diagnostic]:
    for n in ctx.plan.nodes():
        if n.node_type not in {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"} or n.rows_read is None:
            continue
        removed = (n.rows_removed_by_filter or 0) * n.loops
        share = removed / n.rows_read if n.rows_read else 0
        if removed < 1000 or share <= 0.9:
            continue
        cols = ", ".join(filter_columns(n.filter or ""))
        yield _diag(
            ctx, n, "index_scan_reads_too_much",
            f"{n.node_type} on {n.relation} reads {n.rows_read:,.0f} rows to return {n.rows_read - removed:,.0f}",
            "medium" if share > 0.98 else "low",
            evidence={"rows_read": n.rows_read, "rows_removed_by_filter": removed, "removed_share": round(share, 4),
                      "index": n.index, "index_cond": n.index_cond or n.recheck_cond, "filter": n.filter},
            threshold="rows removed by the filter > 90 % of rows the index returned (and >= 1,000)",
            advice=f"the index is not selective for this query: a composite index with the equality columns first "
            f"({cols or 'the filtered columns'}) and then the range column would return only the rows kept",
            saving_ms=(n.exclusive_time_ms or 0) * share,
        )


def check_lossy_bitmap(ctx: Context) -> Iterator[Diagnostic]:
    for n in ctx.plan.nodes():
        if not n.lossy_heap_blocks:
            continue
        pages = n.lossy_heap_blocks + (n.exact_heap_blocks or 0)
        yield _diag(
            ctx, n, "lossy_bitmap", f"Bitmap heap scan on {n.relation} went lossy", "medium",
            evidence={"lossy_heap_blocks": n.lossy_heap_blocks, "exact_heap_blocks": n.exact_heap_blocks,
                      "rows_removed_by_index_recheck": n.rows_removed_by_index_recheck},
            threshold="any lossy heap blocks (the bitmap did not fit in work_mem)",
            advice=f"every row of a lossy page is rechecked; a work_mem of about {_mem(pages * 64 / 1024)} keeps "
            "the bitmap exact (SET work_mem for this session or role, not globally)",
            saving_ms=(n.exclusive_time_ms or 0) * 0.5,
        )


def check_heap_fetches(ctx: Context) -> Iterator[Diagnostic]:
    for n in ctx.plan.nodes():
        if n.node_type != "Index Only Scan" or n.heap_fetches is None or n.actual_rows is None:
            continue
        fetches, rows = n.heap_fetches * n.loops, max(n.actual_rows * n.loops, 1)
        share = fetches / rows
        if fetches < 1000 or share < 0.1:
            continue
        yield _diag(
            ctx, n, "index_only_heap_fetches", f"Index-only scan on {n.relation} still visits the table",
            "medium" if share >= 0.5 else "low",
            evidence={"heap_fetches": fetches, "rows": rows, "fetch_share": round(share, 4)},
            threshold="heap fetches >= 10 % of the rows returned (and >= 1,000)",
            advice=f"the visibility map of {n.relation} is out of date: VACUUM (ANALYZE) {n.relation}, and check that "
            "autovacuum keeps up with it (autovacuum_vacuum_scale_factor / insert thresholds for append-only tables)",
            saving_ms=(n.exclusive_time_ms or 0) * min(share, 1) * 0.5,
        )
