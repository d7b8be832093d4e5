"""A backfill that overwrites every row is destructive: it runs only through the confirmation
protocol (report, exact phrase, single-use token), on a real server through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.test_backfill import _make_big

ROOT = Path(__file__).parent.parent


def backfill(dsn: str, data_dir: Path, *args: str, opt_in: bool = True) -> tuple[int, dict]:
    """The CLI without a terminal; ``opt_in``: the operator accepts phrases as arguments (a program approves)."""
    out = subprocess.run(
        [sys.executable, "-m", "agent19", "backfill", "big", "--set", "v = 0", "--dsn", dsn, "--mode", "execute",
         "--data-dir", str(data_dir), "--format", "json", *args, *(["--allow-model-confirmation"] if opt_in else [])],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout)


def state(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT count(*) FILTER (WHERE v = 0), sum(updates) FROM big").fetchone()


def test_full_table_backfill_needs_the_exact_phrase(dsn: str, tmp_path: Path) -> None:
    _make_big(dsn, 3000)
    code, first = backfill(dsn, tmp_path)
    report = first["confirmation"]["report"]
    assert code == 1 and first["confirmation"]["outcome"] == "challenge"
    assert report["impact"] and "3000" in report["phrase"].replace(",", "")
    assert state(dsn) == (0, 0)  # nothing ran

    # by default the phrase is not accepted as an argument: a human confirms out of band
    code, default = backfill(dsn, tmp_path, "--confirm-token", report["token"], "--confirm-phrase", report["phrase"],
                             opt_in=False)
    assert code == 1 and "not accepted" in default["confirmation"]["reasons"][0]
    assert state(dsn) == (0, 0)

    code, near = backfill(dsn, tmp_path, "--confirm-token", report["token"],
                          "--confirm-phrase", report["phrase"].rstrip("."))
    assert code == 1 and near["confirmation"]["outcome"] == "refused"
    assert "does not match exactly" in near["confirmation"]["reasons"][0]
    assert state(dsn) == (0, 0)

    code, replay = backfill(dsn, tmp_path, "--confirm-token", report["token"], "--confirm-phrase", report["phrase"])
    assert code == 1 and "already used" in replay["confirmation"]["reasons"][0]
    assert state(dsn) == (0, 0)

    _, fresh = backfill(dsn, tmp_path)
    token, phrase = fresh["confirmation"]["report"]["token"], fresh["confirmation"]["report"]["phrase"]
    code, done = backfill(dsn, tmp_path, "--confirm-token", token, "--confirm-phrase", phrase)
    assert code == 0, done
    assert done["rows_updated"] == 3000 and done["confirmation"]["outcome"] == "executed"
    assert state(dsn) == (3000, 3000)  # every row, exactly once
    outcomes = [json.loads(line)["outcome"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert outcomes == ["challenged", "refused", "refused", "refused", "challenged", "executed"]


def test_a_selective_backfill_runs_without_confirmation(dsn: str, tmp_path: Path) -> None:
    _make_big(dsn, 3000)
    code, out = backfill(dsn, tmp_path, "--where", "v <> 0 AND id <= 100")
    assert code == 0 and out["rows_updated"] == 100 and out["confirmation"] is None
    assert state(dsn) == (100, 100)


def test_a_human_at_a_terminal_confirms_a_full_table_backfill(dsn: str, tmp_path: Path) -> None:
    from tests.terminal import at_terminal

    _make_big(dsn, 500)
    code, first = backfill(dsn, tmp_path, opt_in=False)
    token = first["confirmation"]["report"]["token"]
    status, shown = at_terminal(["confirm", "--token", token, "--mode", "execute", "--dsn", dsn,
                                 "--data-dir", str(tmp_path)], lambda phrase: phrase)
    assert status == 0 and "outcome: approved" in shown, shown
    assert state(dsn) == (0, 0)  # approving runs nothing
    code, done = backfill(dsn, tmp_path, "--confirm-token", token, opt_in=False)
    assert code == 0 and done["rows_updated"] == 500 and done["confirmation"]["channel"] == "terminal", done
    assert state(dsn) == (500, 500)
