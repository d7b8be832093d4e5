"""A statement nested deeper than Python can read (``SELECT 1+1+…`` of hundreds of terms: pglast parses it, its JSON
tree is too deep for the decoder) is an input error naming its line — in a small file, where trees are decoded at
parse, and past the first megabyte, where they are decoded when linted — never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent19.errors import InputError
from agent19.migrate.lint.engine import lint_sql

DEEP = "SELECT " + "+".join(["1"] * 900) + ";\n"
PAD = "".join(f"ALTER TABLE t{i} ADD COLUMN c int;\n" for i in range(6000))  # past the 1 MB of JSON kept decoded


def test_the_library_says_which_statement() -> None:
    with pytest.raises(InputError, match=r"line 2: the statement is nested too deeply"):
        lint_sql("ALTER TABLE t ADD COLUMN c int;\n" + DEEP)


@pytest.mark.parametrize("padding", ["", PAD], ids=["small file", "past 1 MB"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_cli_says_which_statement_and_exits_2(tmp_path: Path, padding: str, fmt: str) -> None:
    migration = tmp_path / "deep.sql"
    migration.write_text(padding + DEEP)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN")}
    env["AGENT19_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.run([sys.executable, "-m", "agent19", "lint", str(migration), "--format", fmt],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    line = padding.count("\n") + 1
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"deep.sql:{line}: the statement is nested too deeply" in proc.stderr
    assert "split the expression" in proc.stderr
