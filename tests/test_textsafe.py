"""Every text rendering shows what a database value could hide: an ANSI escape in a row cannot clear the screen or
recolour a verdict, a bidi override cannot reorder what a person reads (agent19.textsafe, applied by the registry to
every tool's text output — CLI and MCP alike)."""

from __future__ import annotations

import os
import subprocess
import sys

from agent19.textsafe import printable, visible


def test_a_value_with_terminal_escapes_is_printed_escaped(dsn):
    done = subprocess.run([sys.executable, "-m", "agent19", "sql", "--dsn", dsn,
                           "SELECT E'\\x1b[2J\\x1b[32mverified\\u202e' AS v"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "DATABASE_URL": ""})
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\u202e" not in done.stdout
    assert "\\x1b[2J" in done.stdout and "\\u202e" in done.stdout


def test_layout_is_kept_and_single_values_cannot_forge_a_line():
    assert printable("a\tb\nc\x1b[0m\rd") == "a\tb\nc\\x1b[0m\\rd"
    assert visible("key\nverified: yes") == "key\\nverified: yes"
