"""When the output cannot be written — an encoding that cannot spell a name, a full disk — the command says so and
exits 2 (unusable configuration), never with a traceback nor with 1, which for lint means "problems found". An
encoding without agent19's own typographic characters (— → ×) gets ASCII stand-ins for them, and JSON escapes what
the encoding lacks (agent19.cli_output): neither needs a UTF-8 terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _agent19(tmp_path: Path, *args: str, stdout: object = subprocess.PIPE,
             **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN")}
    environ.update(AGENT19_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run([sys.executable, "-m", "agent19", *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          cwd=tmp_path, env=environ, encoding="utf-8")


def _lint(tmp_path: Path, stdout: object, fmt: str = "json", table: str = "tablé",
          **env: str) -> subprocess.CompletedProcess[str]:
    migration = tmp_path / "m.sql"
    migration.write_text(f'ALTER TABLE "{table}" ADD COLUMN c integer;\n', encoding="utf-8")
    return _agent19(tmp_path, "lint", str(migration), "--format", fmt, "--pg-version", "15", stdout=stdout, **env)


def test_an_output_encoding_that_cannot_write_a_name_is_a_clear_error(tmp_path: Path) -> None:
    proc = _lint(tmp_path, subprocess.DEVNULL, "text", PYTHONIOENCODING="ascii")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cannot write" in proc.stderr and "PYTHONIOENCODING=utf-8" in proc.stderr and "'\\xe9'" in proc.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        proc = _lint(tmp_path, full)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "could not write the output: No space left on device" in proc.stderr


def test_the_same_lint_written_where_it_can_be_is_read_whole(tmp_path: Path) -> None:
    proc = _lint(tmp_path, subprocess.PIPE, PYTHONIOENCODING="utf-8")
    assert proc.returncode == 0, proc.stderr
    assert 'tablé' in proc.stdout and proc.stdout.rstrip().endswith("}")


def _same_in_ascii(ascii_text: str, utf8_text: str) -> None:
    """``ascii_text`` is ``utf8_text`` with agent19's typographic characters as their ASCII stand-ins."""
    from agent19.cli_output import STAND_INS

    assert ascii_text.isascii()
    assert any(c in utf8_text for c in STAND_INS)  # else the test proves nothing
    assert ascii_text == utf8_text.translate(str.maketrans(STAND_INS))


def test_a_lint_of_ascii_names_reads_the_same_in_an_ascii_encoding(tmp_path: Path) -> None:
    ascii_run = _lint(tmp_path, subprocess.PIPE, "text", table="orders", PYTHONIOENCODING="ascii")
    utf8_run = _lint(tmp_path, subprocess.PIPE, "text", table="orders", PYTHONIOENCODING="utf-8")
    assert ascii_run.returncode == utf8_run.returncode == 0, ascii_run.stderr  # warnings only: 0, as in UTF-8
    assert " - PostgreSQL 15" in ascii_run.stdout  # the summary's "—"
    _same_in_ascii(ascii_run.stdout, utf8_run.stdout)


@pytest.mark.parametrize("args", [("rules",), ("--help",), ("lint", "--help")], ids=" ".join)
def test_other_text_reads_the_same_in_an_ascii_encoding(tmp_path: Path, args: tuple[str, ...]) -> None:
    ascii_run = _agent19(tmp_path, *args, PYTHONIOENCODING="ascii")
    utf8_run = _agent19(tmp_path, *args, PYTHONIOENCODING="utf-8")
    assert ascii_run.returncode == utf8_run.returncode == 0, ascii_run.stderr
    _same_in_ascii(ascii_run.stdout, utf8_run.stdout)


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_json_escapes_what_an_ascii_encoding_lacks(tmp_path: Path, fmt: str) -> None:
    """JSON's own escape (\\u00e9) is the same character to any reader: the name is not changed, nor refused."""
    ascii_run = _lint(tmp_path, subprocess.PIPE, fmt, PYTHONIOENCODING="ascii")
    utf8_run = _lint(tmp_path, subprocess.PIPE, fmt, PYTHONIOENCODING="utf-8")
    assert ascii_run.returncode == utf8_run.returncode, ascii_run.stderr
    assert ascii_run.stdout.isascii() and "tabl\\u00e9" in ascii_run.stdout
    assert json.loads(ascii_run.stdout) == json.loads(utf8_run.stdout)
