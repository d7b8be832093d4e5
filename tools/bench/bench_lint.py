#!/usr/bin/env python3
"""Lint a generated 10,000-statement migration with `agent19 lint` and with squawk; print the ratio.

    .venv/bin/pip install squawk-cli      # the peer; not a dependency of agent19
    .venv/bin/python tools/bench/bench_lint.py [--statements 10000] [--runs 3]

Both are timed as whole processes (start-up, parsing, classification, rules, output), best of
``--runs``, on the same file in the same run. Not a test.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATES = (
    "ALTER TABLE t{i} ADD COLUMN c{i} integer;",
    "CREATE INDEX t{i}_idx ON t{i} (a);",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS t{i}_b_idx ON t{i} (b);",
    "ALTER TABLE t{i} ALTER COLUMN a TYPE bigint;",
    "ALTER TABLE t{i} ADD CONSTRAINT t{i}_fk FOREIGN KEY (a) REFERENCES p (id) NOT VALID;",
    "ALTER TABLE t{i} ALTER COLUMN b SET NOT NULL;",
    "CREATE TABLE n{i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body jsonb NOT NULL);",
    "UPDATE t{i} SET a = a + 1 WHERE id < 100;",
    "ALTER TABLE t{i} ADD COLUMN d{i} timestamptz DEFAULT now();",
    "DROP INDEX IF EXISTS t{i}_old;",
)


def generate(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            f.write(TEMPLATES[i % len(TEMPLATES)].format(i=i) + "\n")


def best(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--statements", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ns = ap.parse_args()
    squawk = shutil.which("squawk") or str(Path(sys.executable).parent / "squawk")
    if not Path(squawk).exists():
        print("squawk not found: .venv/bin/pip install squawk-cli", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "migration.sql"
        generate(path, ns.statements)
        agent = best([sys.executable, "-m", "agent19", "lint", str(path), "--format", "json",
                      "--pg-version", "15"], ns.runs)
        peer = best([squawk, str(path)], ns.runs)
    print(f"{ns.statements} statements, best of {ns.runs}: agent19 lint {agent:.2f} s, squawk {peer:.2f} s, "
          f"ratio agent19/squawk = {agent / peer:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
