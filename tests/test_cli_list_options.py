"""A list option written before the files (`agent19 lint --assume x file.sql`) takes the files as its own values
in argparse: the CLI says so and what to do, instead of linting nothing; `--` ends the option's values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", "lint", *args], capture_output=True, text=True,
                          timeout=120)


def test_a_list_option_that_swallowed_the_files_is_named(tmp_path: Path) -> None:
    f = tmp_path / "m.sql"
    f.write_text("ALTER TABLE t ALTER COLUMN a TYPE text;\n")
    bad = _lint("--assume", "type-changes-widen", str(f))
    assert bad.returncode == 2 and "--assume took" in bad.stderr and "end its values with --" in bad.stderr
    good = _lint("--format", "json", "--assume", "type-changes-widen", "--", str(f))
    assert good.returncode == 0, good.stderr
    assert str(f) in good.stdout or "m.sql" in good.stdout
