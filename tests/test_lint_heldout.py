"""Issue 14's bar on held-out material (tests/corpus/heldout_cases.py), linted as a user lints files without a
database: recall >= 95 % of unsafe cases draw an error or warning, >= 80 % of the recommended safe forms draw
neither. Every miss is printed. One case is also run through the real ``agent19 lint`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent19.migrate.lint.config import LintConfig
from agent19.migrate.lint.engine import LintReport, lint_paths
from tests.corpus.heldout_cases import CASES, Case

BLOCKING = ("error", "warning")


def _write(case: Case, root: Path) -> Path:
    d = root / case.id
    d.mkdir()
    for name, sql in (case.files or {"migration.sql": case.sql}).items():
        (d / name).write_text(sql + "\n")
    return d


def _lint(case: Case, root: Path) -> LintReport:
    config = LintConfig(pg_version=case.pg, assume=list(case.assume))
    return lint_paths([_write(case, root)], config=config)


def _said(report: LintReport) -> str:
    said = [f"{Path(s.file or '').name}:{s.line} {f.severity} {f.rule}" for s in report.statements
            for f in s.findings]
    return "; ".join(said) or "nothing"


def test_heldout_bar(tmp_path: Path) -> None:
    unsafe = [c for c in CASES if c.label == "unsafe"]
    safe = [c for c in CASES if c.label == "safe"]
    assert len(unsafe) >= 80 and len(safe) >= 40
    missed, blocked = [], []
    for case in CASES:
        report = _lint(case, tmp_path)
        flagged = any(f.severity in BLOCKING for s in report.statements for f in s.findings)
        if case.label == "unsafe" and not flagged:
            missed.append(f"MISS unsafe {case.id} ({case.cls}, pg{case.pg}, {case.source}): lint said {_said(report)}")
        if case.label == "safe" and flagged:
            blocked.append(f"MISS safe {case.id} (pg{case.pg}, {case.source}): lint said {_said(report)}")
    recall = 1 - len(missed) / len(unsafe)
    passed = 1 - len(blocked) / len(safe)
    print(f"\nrecall {recall:.1%} of {len(unsafe)} unsafe; safe forms passing {passed:.1%} of {len(safe)}")
    print("\n".join(missed + blocked))
    assert recall >= 0.95, "\n".join(missed)
    assert passed >= 0.80, "\n".join(blocked)


def test_cli_on_a_heldout_set(tmp_path: Path) -> None:
    """The command a user runs: the CHECK added in V1 and validated in V2 lets V3 set NOT NULL without an error,
    while the same set without V2 fails the lint (exit 1) at V2's SET NOT NULL."""
    case = next(c for c in CASES if c.id == "flyway-check-validate-notnull")
    run = [sys.executable, "-m", "agent19", "lint", "--pg-version", "15", "--format", "json"]
    ok = subprocess.run([*run, str(_write(case, tmp_path))], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = next(c for c in CASES if c.id == "flyway-check-not-validated-notnull")
    res = subprocess.run([*run, str(_write(bad, tmp_path))], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    report = json.loads(res.stdout)
    errors = [(Path(s["file"]).name, s["sql"]) for s in report["statements"]
              for f in s["findings"] if f["severity"] == "error"]
    assert errors and all(name == "V2__not_null.sql" and "SET NOT NULL" in sql for name, sql in errors), errors
