"""Run ``agent19`` at a real pseudo-terminal, as a person at a terminal would (for out-of-band confirmation)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).parent.parent
PROMPT = "type the confirmation phrase exactly as shown:"


def at_terminal(args: list[str], answer: Callable[[str], str], timeout: float = 90) -> tuple[int, str]:
    """Run ``agent19 ARGS`` on a new pty; when it asks for the phrase, reply ``answer(phrase shown)``.

    Returns (exit status, everything the terminal showed)."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "AGENT19_ALLOW_MODEL_CONFIRMATION"}
    proc = subprocess.Popen([sys.executable, "-m", "agent19", *args], stdin=slave, stdout=slave, stderr=slave,
                            cwd=ROOT, env=env, start_new_session=True)
    os.close(slave)
    shown = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            text = shown.decode(errors="replace").replace("\r\n", "\n")
            if not answered and PROMPT in text:
                lines = text.split("\n")
                phrase = lines[lines.index("To proceed, type exactly:") + 1].strip()
                os.write(master, (answer(phrase) + "\n").encode())
                answered = True
            if proc.poll() is not None and not ready:
                break
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return status, shown.decode(errors="replace").replace("\r\n", "\n")
