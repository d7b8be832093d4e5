"""A hostile review of `agent19 capacity`: growth fitted from odd samples.

Two samples a minute apart (a bulk load between them) were extrapolated to terabytes a year with
"error 0.0 %" and no word of doubt; a sample dated after the server's clock (the clock went back, or a
file from another server) was fitted as the newest point. Now minutes of samples give no projection (growth
is not known yet, with how to get enough history), and samples from the future are left out, saying so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).parent.parent


def _agent19(dsn: str, data_dir: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "--data-dir", str(data_dir), *args,
                           "--format", "json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _at(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def test_minutes_of_samples_project_nothing_and_future_samples_are_left_out(dsn: str, tmp_path: Path) -> None:
    first = _agent19(dsn, tmp_path, "capacity", "sample")
    path = Path(first["path"])
    base = first["sample"]
    with psycopg.connect(dsn) as c:
        now = c.execute("SELECT now()").fetchone()[0].astimezone(UTC)
    earlier = {**base, "at": _at(now - timedelta(minutes=2)), "database_bytes": base["database_bytes"] // 3}
    future = {**base, "at": _at(now + timedelta(days=365)), "database_bytes": base["database_bytes"] * 50}
    path.write_text("".join(json.dumps(s) + "\n" for s in (earlier, base, future)))
    growth = _agent19(dsn, tmp_path, "capacity", "--window", "0", "--disk-size", "10GB")["growth"]
    assert growth["source"] == "samples"
    assert [o["bytes"] for o in growth["observed"]] == [earlier["database_bytes"], base["database_bytes"]]
    notes = " ".join(growth["notes"])
    assert "dated after the server's time" in notes and "1 sample(s)" in notes
    assert growth["fit"] is None and growth["projections"] == [] and growth["days_to_80_pct"] is None
    assert "not known yet" in growth["not_known_yet"] and "agent19 capacity sample" in growth["not_known_yet"]
    text = subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "--data-dir", str(tmp_path), "capacity",
                           "--window", "0"], capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    assert "growth is not known yet" in text and "Fit:" not in text  # the human-readable plan says it too


def test_compound_growth_seconds_apart_does_not_crash_the_plan(dsn: str, tmp_path: Path) -> None:
    """Three samples a minute apart, tripling each time: the compound fit's monthly factor overflowed a float
    and `agent19 capacity` died with a traceback (OverflowError)."""
    first = _agent19(dsn, tmp_path, "capacity", "sample")
    path, base = Path(first["path"]), first["sample"]
    with psycopg.connect(dsn) as c:
        now = c.execute("SELECT now()").fetchone()[0].astimezone(UTC)
    size = base["database_bytes"]
    samples = [{**base, "at": _at(now - timedelta(minutes=k)), "database_bytes": size // 3 ** k} for k in (2, 1, 0)]
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    growth = _agent19(dsn, tmp_path, "capacity", "--window", "0", "--disk-size", "10GB")["growth"]
    assert growth["source"] == "samples" and len(growth["observed"]) == 3 and growth["fit"] is None
    assert "3 observed point(s) over 0.00 days" in growth["not_known_yet"]
