"""What `mlops-local run` shows while it works: lines, and a live view of the stages on a terminal.

`follow()` (pipeline_run) feeds a Console each action's status; a Console is also the `say` callable
for every other line. PlainConsole prints a line per change (what a log file or a pipe gets);
LiveConsole keeps one row per action, updated in place, with `rich`. Messages are never cut: the
cause is often at the end of one (a path, a log location).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO, Callable

from rich.console import Console as RichConsole
from rich.live import Live
from rich.table import Table
from rich.text import Text

STYLES = {"Succeeded": "green", "Failed": "bold red", "InProgress": "yellow", "Stopped": "magenta",
          "Abandoned": "magenta"}
REFRESH_PER_SECOND = 4


@dataclass
class ActionRow:
    stage: str
    action: str
    status: str
    seconds: float
    message: str
    seen: float = field(default_factory=time.monotonic)  # when this status was reported


class Console:
    """The plain console: every line as is, one line per action status change."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self.write = write or (lambda line: print(line, flush=True))

    def __call__(self, line: str) -> None:
        self.say(line)

    def say(self, line: str) -> None:
        self.write(line)

    def action(self, stage: str, action: str, status: str, seconds: float, message: str = "") -> None:
        suffix = f" - {message}" if message else ""
        self.say(f"  {stage}/{action}: {status} ({seconds:.1f} s){suffix}")

    def close(self) -> None:
        """The live view ends (its last state stays on screen); a plain console has nothing to end."""


class LiveConsole(Console):
    """One row per stage/action with its status and elapsed time, redrawn in place; other lines
    print above the live rows."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.console = RichConsole(file=stream or sys.stdout)
        super().__init__(lambda line: self.console.print(Text(line)))
        self.rows: dict[tuple[str, str], ActionRow] = {}
        self.live: Live | None = None

    def action(self, stage: str, action: str, status: str, seconds: float, message: str = "") -> None:
        self.rows[(stage, action)] = ActionRow(stage, action, status, seconds, message)
        if self.live is None:
            stream = self.console.file  # only that stream's writes go above the rows: --json's stdout stays clean
            self.live = Live(get_renderable=self.table, console=self.console, refresh_per_second=REFRESH_PER_SECOND,
                             transient=False, redirect_stdout=stream is sys.stdout,
                             redirect_stderr=stream is sys.stderr)
            self.live.start()
        self.live.refresh()

    def table(self) -> Table:
        table = Table(box=None, show_header=False, pad_edge=False, expand=False)
        for column in ("stage", "action", "status", "seconds", "message"):
            table.add_column(column, overflow="fold", no_wrap=False)
        now = time.monotonic()
        for row in self.rows.values():
            seconds = row.seconds + (now - row.seen if row.status == "InProgress" else 0.0)
            table.add_row(row.stage, row.action, Text(row.status, style=STYLES.get(row.status, "")),
                          f"{seconds:.1f} s", Text(row.message))
        return table

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def console_for(stream: IO[str], live: bool | None = None) -> Console:
    """A live console when `stream` is a terminal, else plain lines on it."""
    if live is None:
        live = stream.isatty()
    if live:
        return LiveConsole(stream)
    return Console(lambda line: print(line, file=stream, flush=True))
