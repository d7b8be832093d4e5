"""A team switching from squawk keeps its config: squawk's rule names for the safety rules (not only the style
group) are accepted wherever a rule is named — disable, severity, agent19:ignore — through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SQL = (
    "CREATE INDEX users_a_idx ON users (a);\n"
    "ALTER TABLE users ALTER COLUMN b TYPE bigint;\n"
    "ALTER TABLE users RENAME COLUMN c TO d;\n"
    "ALTER TABLE users DROP COLUMN e;\n"
)


def _lint(cwd: Path, *extra: str) -> tuple[int, dict]:
    run = subprocess.run([sys.executable, "-m", "agent19", "lint", "m.sql", "--pg-version", "15",
                          "--format", "json", *extra], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert run.returncode in (0, 1), run.stderr
    return run.returncode, json.loads(run.stdout)


def _rules(report: dict) -> set[str]:
    return {f["rule"] for s in report["statements"] for f in s["findings"]}


def test_squawk_names_in_config_and_cli(tmp_path: Path) -> None:
    (tmp_path / "m.sql").write_text(SQL)
    code, before = _lint(tmp_path)
    assert code == 1 and {"A19001", "A19005", "A19012", "A19013", "A19014"} <= _rules(before)
    (tmp_path / "agent19.toml").write_text(
        '[lint]\ndisable = ["require-concurrent-index-creation", "changing-column-type", "renaming-column", '
        '"require-timeout-settings"]\nseverity = {"ban-drop-column" = "info"}\n')
    code, after = _lint(tmp_path)
    assert code == 0, after
    assert not {"A19001", "A19005", "A19012", "A19013"} & _rules(after)
    assert [f["severity"] for s in after["statements"] for f in s["findings"] if f["rule"] == "A19014"] == ["info"]
    (tmp_path / "agent19.toml").unlink()
    (tmp_path / "m.sql").write_text("-- agent19:ignore require-concurrent-index-deletion\nDROP INDEX users_a_idx;\n")
    _, ignored = _lint(tmp_path)
    assert "A19002" not in _rules(ignored) and ignored["summary"]["ignored"] >= 1
