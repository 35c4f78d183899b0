"""The lifecycle of the stand-in's child processes: Glue runs, SageMaker jobs, model servers.

A child starts in a process group of its own with its output in a log file, so a stop ends it and
everything it started (Spark's JVM, data loaders) and nothing else. `last_error` reads back the
line of a log a person wants first.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Mapping

STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL, as a container stop gives


def start(argv: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """The child in a session of its own (pgid == pid), stdout and stderr appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env), cwd=cwd, start_new_session=True)


def stop(process: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """SIGTERM to the child's process group, SIGKILL after the grace; returns once it exited."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)  # the child leads its own session: pgid == pid
        except ProcessLookupError:
            process.wait()
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*:")


def last_error(log: Path, limit: int = 1024) -> str:
    """The last Python exception line of the log, else the last line that mentions an error, else
    the last line."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no log"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if EXCEPTION_LINE.match(line):
            return line[:limit]
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:limit]
    return lines[-1][:limit] if lines else "no output"
