#!/usr/bin/env python3
"""Benchmark: workload index advice on TPC-H — agent19's ``advise_workload`` beside Postgres MCP Pro's DTA.

    .venv/bin/python tools/bench/bench_workload.py [--sf 0.1] [--budget-mb 500] [--peer-python PATH]

1. TPC-H at scale factor ``--sf`` and its 22 queries are generated offline by DuckDB's ``tpch``
   extension (``CALL dbgen``, ``tpch_queries()``), exported to CSV once (cached in ``--data-dir``),
   and loaded into a throwaway system PostgreSQL (``start_system()``) with primary keys only, then
   ANALYZEd; ``CREATE EXTENSION hypopg``.
2. agent19: ``advise()`` — what the ``advise_workload`` tool runs — on the 22 queries, each weight 1,
   with the storage budget and the tool's default ``min_gain`` (1 %).
3. The peer: Postgres MCP Pro's ``DatabaseTuningAdvisor.analyze_workload`` — the engine behind its
   ``analyze_workload_indexes`` tool — with the same 22 queries (``query_list``) and the same budget,
   run in-process in the peer's own venv (a subprocess of this script). Its MCP tool reads the
   workload from pg_stat_statements with ``min_calls=50, min_avg_time_ms=5``, which a one-off TPC-H
   run cannot fill; the query list gives both advisors the same workload. Its defaults are kept
   (``max_runtime_seconds=30``, ``max_index_width=3``).
4. Each advisor's index set is measured the same way, here: hypothetical indexes (HypoPG), plain
   EXPLAIN of every query, the sum of the planner's total costs before and after. Printed side by
   side: total cost before/after, reduction %, number and estimated size of the indexes, wall time of
   each advisor and the ratio.

Not a test, nothing here is committed but this script. The tools live outside the repository:

    # Python 3.12 (pyenv has it), a venv outside the repo
    /root/.pyenv/versions/3.12.1/bin/python -m venv /tmp/pgmcp-venv
    # DuckDB and its TPC-H extension as a wheel (loaded from the wheel's file: no download at run time)
    /tmp/pgmcp-venv/bin/pip install duckdb==1.5.5 duckdb-extension-tpch==1.5.5
    # the peer, with pglast 7.22 in place of its pinned 7.2.0 (which has no wheel for 3.12 here)
    /tmp/pgmcp-venv/bin/pip install --no-deps postgres-mcp==0.3.0
    /tmp/pgmcp-venv/bin/pip install 'attrs>=25.3.0' 'humanize>=4.8.0' 'instructor>=1.7.9' 'mcp[cli]>=1.5,<2' \\
        pglast==7.22 'psycopg-pool>=3.2.6' 'psycopg[binary]>=3.2.6'

``--peer-python`` (default ``/tmp/pgmcp-venv/bin/python``) runs both the generator and the peer.
Without the peer, agent19's numbers are printed with a ``peer unavailable: <reason>`` line.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import sqlglot
from sqlglot.optimizer.qualify import qualify

from agent19.config import Settings
from agent19.db import Database

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tools.throwaway
from agent19.optimize.advisor import advise
from tools.throwaway import start_system  # noqa: E402

PRIMARY_KEYS = {
    "region": "r_regionkey", "nation": "n_nationkey", "part": "p_partkey", "supplier": "s_suppkey",
    "partsupp": "ps_partkey, ps_suppkey", "customer": "c_custkey", "orders": "o_orderkey",
    "lineitem": "l_orderkey, l_linenumber",
}

GENERATE = textwrap.dedent("""
    import json, os, sys, duckdb, duckdb_extension_tpch
    sf, out = float(sys.argv[1]), sys.argv[2]
    ext_dir = os.path.join(os.path.dirname(duckdb_extension_tpch.__file__), "extensions")
    ext = [os.path.join(r, f) for r, _, fs in os.walk(ext_dir) for f in fs if f == "tpch.duckdb_extension"]
    con = duckdb.connect()
    con.execute(f"LOAD '{ext[0]}'")
    con.execute(f"CALL dbgen(sf={sf})")
    tables = {}
    for (name,) in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall():
        cols = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_name = ? ORDER BY ordinal_position", [name]).fetchall()
        con.execute(f"COPY {name} TO '{out}/{name}.csv' (HEADER false, DELIMITER '|')")
        tables[name] = cols
    queries = [q for _, q in con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()]
    json.dump({"tables": tables, "queries": queries, "duckdb": duckdb.__version__}, open(f"{out}/meta.json", "w"))
""")

PEER = textwrap.dedent("""
    import asyncio, json, logging, sys, time
    logging.disable(logging.CRITICAL)
    from postgres_mcp.sql import DbConnPool, SqlDriver
    from postgres_mcp.index.dta_calc import DatabaseTuningAdvisor

    async def main():
        args = json.load(sys.stdin)
        pool = DbConnPool(args["dsn"])
        await pool.pool_connect()
        dta = DatabaseTuningAdvisor(SqlDriver(conn=pool))
        t = time.perf_counter()
        session = await dta.analyze_workload(query_list=args["queries"], max_index_size_mb=args["budget_mb"])
        wall = time.perf_counter() - t
        recs = [{"table": r.table, "columns": list(r.columns), "using": r.using,
                 "size": r.estimated_size_bytes} for r in session.recommendations]
        print(json.dumps({"wall": wall, "error": session.error, "recommendations": recs}))
        await pool.close()

    asyncio.run(main())
""")


def generate(python: str, sf: float, data_dir: Path) -> dict:
    meta = data_dir / "meta.json"
    if not meta.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([python, "-c", GENERATE, str(sf), str(data_dir)], check=True)
    return json.loads(meta.read_text())


def load(dsn: str, meta: dict, data_dir: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, cols in meta["tables"].items():
            body = ", ".join(f"{c} {t}" for c, t in cols)
            conn.execute(f"CREATE TABLE {name} ({body}, PRIMARY KEY ({PRIMARY_KEYS[name]}))")
            with conn.cursor().copy(f"COPY {name} FROM STDIN (FORMAT csv, DELIMITER '|')") as copy, \
                    open(data_dir / f"{name}.csv", "rb") as f:
                while chunk := f.read(1 << 20):
                    copy.write(chunk)
        conn.execute("VACUUM ANALYZE")
        conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")


def workload_cost(dsn: str, queries: list[str], indexes: list[str]) -> tuple[float, int]:
    """Sum of the planner's total costs of the queries with ``indexes`` as hypothetical indexes."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT hypopg_reset()")
        for ddl in indexes:
            conn.execute("SELECT hypopg_create_index(%s)", (ddl,))
        total = 0.0
        for q in queries:
            plan = conn.execute(f"EXPLAIN (FORMAT JSON) {q}").fetchone()[0]  # type: ignore[index]
            total += float(plan[0]["Plan"]["Total Cost"])
        size = conn.execute("SELECT coalesce(sum(hypopg_relation_size(indexrelid)), 0) FROM hypopg_list_indexes"
                            ).fetchone()[0]  # type: ignore[index]
        conn.execute("SELECT hypopg_reset()")
    return total, int(size)


def run_agent19(dsn: str, queries: list[str], budget_mb: float) -> dict:
    db = Database(Settings.load(dsn=dsn, mode="read-only"))
    try:
        t = time.perf_counter()
        advice = advise(db, [(q, 1.0, None) for q in queries], budget_bytes=int(budget_mb * 1048576), min_gain=0.01)
        wall = time.perf_counter() - t
    finally:
        db.close()
    ddl = [r.sql.replace(" CONCURRENTLY", "") for r in advice.recommendations]
    return {"wall": wall, "indexes": ddl, "notes": advice.notes}


def run_peer(python: str, dsn: str, queries: list[str], budget_mb: float) -> dict:
    """The peer on the workload; when its analysis aborts on a column it cannot place (``column "x" does not
    exist``, or a relation), once more without the queries that name it — said in the output."""
    dropped: list[int] = []
    wall = 0.0
    out: dict = {}
    while True:
        kept = [q for i, q in enumerate(queries) if i + 1 not in dropped]
        if not kept:  # an empty list would make it read pg_stat_statements instead
            return {"unavailable": f"its analysis aborted on every query (last: {out['unavailable']})"}
        out = _run_peer_once(python, dsn, kept, budget_mb)
        wall += out.get("wall", 0.0)
        failing = re.search(r'(?:column|relation) "(\w+)" does not exist', out.get("unavailable", ""))
        if not failing:
            break
        more = [i + 1 for i, q in enumerate(queries) if i + 1 not in dropped and failing[1] in q]
        if not more:
            break
        print(f"postgres-mcp: analysis aborted ({out['unavailable']}); retrying without Q{', Q'.join(map(str, more))}")
        dropped += more
    out["wall_total"], out["dropped"] = wall, dropped
    return out


def _run_peer_once(python: str, dsn: str, queries: list[str], budget_mb: float) -> dict:
    try:
        proc = subprocess.run([python, "-c", PEER], input=json.dumps({"dsn": dsn, "queries": queries,
                              "budget_mb": int(budget_mb)}), capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"unavailable": str(exc)}
    if proc.returncode != 0:
        return {"unavailable": (proc.stderr.strip().splitlines() or ["exit " + str(proc.returncode)])[-1]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["error"]:
        return {"unavailable": out["error"], "wall": out["wall"]}
    out["indexes"] = [f"CREATE INDEX ON {r['table']} USING {r['using']} ({', '.join(r['columns'])})"
                      for r in out["recommendations"]]
    return out


def qualified(queries: list[str], meta: dict) -> list[str]:
    """The queries with every column qualified by its table — help the peer needs (it attributes an unqualified
    column to the first table of the FROM list), given to it in a second run."""
    schema = {name: dict(cols) for name, cols in meta["tables"].items()}
    out = []
    for q in queries:
        tree = qualify(sqlglot.parse_one(q, read="postgres"), schema=schema, dialect="postgres",
                       validate_qualify_columns=False, quote_identifiers=False)
        out.append(tree.sql(dialect="postgres"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sf", type=float, default=0.1)
    ap.add_argument("--budget-mb", type=float, default=500)
    ap.add_argument("--peer-python", default="/tmp/pgmcp-venv/bin/python")
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()
    data_dir = args.data_dir or Path(f"/tmp/agent19-tpch-sf{args.sf}")
    try:
        meta = generate(args.peer_python, args.sf, data_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"cannot generate TPC-H with DuckDB via {args.peer_python}: {exc} (see the docstring's set-up)")
    queries = [q.strip().rstrip(";") for q in meta["queries"]]
    server = start_system()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE tpch")
        dsn = server.dsn_for("tpch")
        t = time.perf_counter()
        load(dsn, meta, data_dir)
        print(f"TPC-H sf={args.sf} (DuckDB {meta['duckdb']}) loaded into PostgreSQL {server.major} in "
              f"{time.perf_counter() - t:.1f} s; {len(queries)} queries; budget {args.budget_mb:g} MB; "
              "primary keys only")
        base, _ = workload_cost(dsn, queries, [])
        results = {"agent19": run_agent19(dsn, queries, args.budget_mb),
                   "postgres-mcp": run_peer(args.peer_python, dsn, queries, args.budget_mb)}
        if "unavailable" not in results["postgres-mcp"] and results["postgres-mcp"].get("dropped"):
            print("postgres-mcp once more, on the queries with every column qualified by its table (sqlglot):")
            results["postgres-mcp, qualified"] = run_peer(args.peer_python, dsn, qualified(queries, meta),
                                                          args.budget_mb)
        print(f"\n{'':24}" + "".join(f"{name:>26}" for name in results))
        rows: dict[str, list[str]] = {k: [] for k in ("indexes", "size", "before", "after", "reduction", "wall")}
        for r in results.values():
            if "unavailable" in r or "after" in r:
                for k in rows:
                    rows[k].append("—")
                continue
            after, size = workload_cost(dsn, queries, r["indexes"])
            r["after"] = after
            rows["indexes"].append(str(len(r["indexes"])))
            rows["size"].append(f"{size / 1048576:.1f} MB")
            rows["before"].append(f"{base:,.0f}")
            rows["after"].append(f"{after:,.0f}")
            rows["reduction"].append(f"{1 - after / base:.1%}")
            rows["wall"].append(f"{r['wall']:.2f} s")
        labels = {"indexes": "indexes recommended", "size": "estimated size (HypoPG)", "before": "workload cost before",
                  "after": "workload cost after", "reduction": "reduction", "wall": "advisor wall time"}
        for k, label in labels.items():
            print(f"{label:24}" + "".join(f"{v:>26}" for v in rows[k]))
        a = results["agent19"]
        print()
        for name, p in results.items():
            if name == "agent19":
                continue
            if "unavailable" in p:
                print(f"peer unavailable: {p['unavailable']}")
                continue
            print(f"{name} / agent19: wall time {p['wall'] / a['wall']:.2f}× (the peer stops itself at 30 s), "
                  f"workload cost after {p['after'] / a['after']:.2f}×")
            if p.get("dropped"):
                print(f"  {name} analysed {len(queries) - len(p['dropped'])} of the {len(queries)} queries (without "
                      f"Q{', Q'.join(map(str, p['dropped']))}, on which its analysis aborts; {p['wall_total']:.2f} s "
                      "including the aborted runs); every index set is costed on all the queries")
        for name, r in results.items():
            for ddl in r.get("indexes", []):
                print(f"  {name}: {ddl}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
