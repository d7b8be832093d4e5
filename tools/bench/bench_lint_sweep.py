#!/usr/bin/env python3
"""`agent19 lint` over growing migrations (100 KB … 5 MB): time and peak memory should grow linearly.

    .venv/bin/python tools/bench/bench_lint_sweep.py [--sizes-kb 100 500 1000 2500 5000] [--format json] [--block 10]

Each size is one whole process (start-up, parsing, rules, output to /dev/null) on a file of the statements
of tools/bench/bench_lint.py; the table shows wall and CPU seconds (user + system: on a shared, loaded machine
the steadier of the two) and peak RSS per size and per MB, so a quadratic step (a per-statement rescan of the
file) shows as a per-MB column that climbs. Not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lint import TEMPLATES  # noqa: E402


def write(path: Path, size: int, block: int = 0) -> int:
    """Statements until ``size`` bytes, in ``BEGIN; … COMMIT;`` blocks of ``block`` statements when given;
    returns how many."""
    n = written = 0
    with path.open("w") as f:
        while written < size:
            line = TEMPLATES[n % len(TEMPLATES)].format(i=n) + "\n"
            if block and n % block == 0:
                line = ("COMMIT;\n" if n else "") + "BEGIN;\n" + line
            f.write(line)
            written += len(line)
            n += 1
        if block:
            f.write("COMMIT;\n")
    return n


def run(cmd: list[str], cwd: str) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (KB) of one process, run in ``cwd`` (not the checkout: ``python -m``
    puts the current directory first on sys.path, so a checkout's agent19 would shadow the one on PYTHONPATH)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-kb", type=int, nargs="+", default=[100, 500, 1000, 2500, 5000])
    ap.add_argument("--format", default="json", choices=["json", "text", "sarif"])
    ap.add_argument("--block", type=int, default=0, help="wrap every N statements in BEGIN … COMMIT (rules about "
                    "transactions then compare statements with their transaction's)")
    ns = ap.parse_args()
    print(f"{'size':>8} {'statements':>11} {'seconds':>8} {'s/MB':>6} {'CPU s':>6} {'peak MB':>8} {'MB/MB':>6}")
    with tempfile.TemporaryDirectory() as d:
        for kb in ns.sizes_kb:
            path = Path(d) / f"m{kb}.sql"
            n = write(path, kb * 1000, ns.block)
            mb = path.stat().st_size / 1e6
            seconds, cpu, rss_kb = run([sys.executable, "-m", "agent19", "lint", str(path), "--format", ns.format,
                                   "--pg-version", "15"], d)
            print(f"{kb:>6}KB {n:>11,} {seconds:>8.2f} {seconds / mb:>6.2f} {cpu:>6.2f} {rss_kb / 1024:>8.0f} "
                  f"{rss_kb / 1024 / mb:>6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
