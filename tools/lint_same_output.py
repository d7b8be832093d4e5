#!/usr/bin/env python3
"""Prove a lint speed-up changed no finding: `agent19 lint --format json` from two copies of the code, same input.

    cp -r agent19 /tmp/before/ && \
      git show HEAD:agent19/migrate/lint/engine.py > /tmp/before/agent19/migrate/lint/engine.py
    .venv/bin/python tools/lint_same_output.py /tmp/before    # exit 1 and the runs that differ, if any

``/tmp/before`` holds a copy of the ``agent19`` package with the files you changed put back as they were
(copy the tree rather than check out an old commit: others' concurrent edits then count on both sides).

Lints, through the real CLI and as JSON, every statement of the test corpora (tests/corpus: the observed
lock corpus and the cases written after other linters' docs), every rule's bad/good example, all of them
again as one file, with the style group on, for PostgreSQL 10 and 15, and the 10,000-statement file
tools/bench/bench_lint.py generates. Fields that are not findings (none today) would be dropped by
``_normal``. Not a test: it compares two versions of the code, which one checkout cannot hold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools" / "bench"))


def _inputs(d: Path) -> list[Path]:
    from bench_lint import generate

    from agent19.migrate.lint.rules import all_rules
    from tests.corpus.authors_cases import CASES
    from tests.corpus.classify_corpus import CORPUS

    sqls = [sql.rstrip(";") + ";" for sql, *_ in CORPUS] + [sql for _, _, sql in CASES]
    sqls += [s for r in all_rules() for s in (r.bad, r.good) if s]
    files = []
    for i, sql in enumerate(sqls):
        files.append(d / f"case{i:04d}.sql")
        files[-1].write_text(sql + "\n")
    (d / "all.sql").write_text("\n".join(sqls) + "\n")
    generate(d / "bench10k.sql", 10_000)
    return [*files, d / "all.sql", d / "bench10k.sql"]


def _normal(doc: Any) -> Any:
    return doc


def run(d: Path, files: list[Path], code: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    env = {**os.environ, "PYTHONPATH": str(code)}
    for version in ("10", "15"):
        for extra in ([], ["--style"]):
            for group in (files[:-2], files[-2:-1], files[-1:]):
                cmd = [sys.executable, "-m", "agent19", "lint", *(g.name for g in group), "--pg-version", version,
                       "--format", "json", *extra]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=d, check=False,
                                      env=env)
                key = f"pg{version}{''.join(extra)} {group[0].name}..{group[-1].name} ({len(group)} files)"
                try:
                    out[key] = {"rc": proc.returncode, "out": _normal(json.loads(proc.stdout))}
                except json.JSONDecodeError:
                    out[key] = {"rc": proc.returncode, "stdout": proc.stdout[-2000:], "stderr": proc.stderr[-2000:]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path, help="directory holding the 'before' copy of the agent19 package")
    ns = ap.parse_args()
    if not (ns.before / "agent19" / "__main__.py").is_file():
        print(f"{ns.before}/agent19/__main__.py not found: copy the agent19 package there first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as t:
        files = _inputs(Path(t))
        before = run(Path(t), files, ns.before.resolve())
        after = run(Path(t), files, ROOT)
    differ = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    for k in differ:
        print(f"DIFFERENT: {k}")
    print(f"{len(after) - len(differ)} of {len(after)} lint runs identical (before: {ns.before})")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
