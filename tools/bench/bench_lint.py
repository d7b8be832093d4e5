#!/usr/bin/env python3
"""Lint a generated 10,000-statement migration with `agent19 lint` and with squawk; print the ratio.

    .venv/bin/pip install squawk-cli      # the peer; not a dependency of agent19
    .venv/bin/python tools/bench/bench_lint.py [--statements 10000] [--runs 3]

Both are timed as whole processes (start-up, parsing, classification, rules, output), best of
``--runs``, on the same file in the same run, for the same PostgreSQL version and the same kind of
output: machine-readable JSON from both (squawk ``--reporter json``) is the ratio that counts.
squawk's default tty reporter is many times slower than its JSON one, so comparing agent19's JSON
with squawk's text would flatter agent19; that pair is printed too, labelled, for reference.
Not a test.
"""

from __future__ import annotations

import argparse
import os
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


def best(cmd: list[str], runs: int, cwd: str | None = None) -> tuple[float, float]:
    """Best wall seconds and best CPU seconds (user + system) of ``runs`` whole-process runs. On a shared,
    loaded machine the CPU time is the steadier of the two (waiting for a core does not count)."""
    walls, cpus = [], []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
        _, _, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - start)
        cpus.append(usage.ru_utime + usage.ru_stime)
    return min(walls), min(cpus)


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
        agent19 = [sys.executable, "-m", "agent19", "lint", str(path), "--pg-version", "15"]
        peer_cmd = [squawk, str(path), "--pg-version", "15.0"]
        # run where no agent19.toml / .squawk.toml of this checkout applies
        agent_json = best([*agent19, "--format", "json"], ns.runs, cwd=d)
        peer_json = best([*peer_cmd, "--reporter", "json"], ns.runs, cwd=d)
        agent_text = best(agent19, ns.runs, cwd=d)
        peer_text = best(peer_cmd, ns.runs, cwd=d)
    print(f"{ns.statements} statements, best of {ns.runs}, PostgreSQL 15 (wall seconds; CPU seconds):")
    print(f"  JSON (like for like): agent19 lint {agent_json[0]:.2f}; {agent_json[1]:.2f}, squawk --reporter json "
          f"{peer_json[0]:.2f}; {peer_json[1]:.2f}, ratio agent19/squawk = {agent_json[0] / peer_json[0]:.1f}x wall, "
          f"{agent_json[1] / peer_json[1]:.1f}x CPU")
    print(f"  text (reference):     agent19 lint {agent_text[0]:.2f}; {agent_text[1]:.2f}, squawk (tty) "
          f"{peer_text[0]:.2f}; {peer_text[1]:.2f}, ratio = {agent_text[0] / peer_text[0]:.1f}x wall, "
          f"{agent_text[1] / peer_text[1]:.1f}x CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
