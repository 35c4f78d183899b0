"""The run's console: plain lines off a terminal (whole messages), a live view of one row per action on one."""
from __future__ import annotations

import io

import pytest
from rich.console import Console as RichConsole

from mlops_local.console import Console, LiveConsole, console_for

LONG = "SageMaker training job job-1 Failed: " + "y" * 250 + " [log: s3://mlops-data/runs/e/training/job-1.log]"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream, live, kind", [
    (io.StringIO(), None, Console),
    (Terminal(), None, LiveConsole),
    (Terminal(), False, Console),
    (io.StringIO(), True, LiveConsole),
], ids=["pipe-plain", "terminal-live", "terminal-no-live", "pipe-forced-live"])
def test_the_console_is_live_on_a_terminal_only_unless_told(stream, live, kind):
    assert type(console_for(stream, live=live)) is kind


def test_plain_lines_keep_the_whole_message():
    lines: list[str] = []
    console = Console(lines.append)

    console.action("Training", "MonitorTraining", "Failed", 12.34, LONG)
    console("results: runs/e/summary.json")

    assert lines == [f"  Training/MonitorTraining: Failed (12.3 s) - {LONG}", "results: runs/e/summary.json"]


def rendered(console: LiveConsole) -> str:
    terminal = RichConsole(file=io.StringIO(), width=400, record=True)
    terminal.print(console.table())
    return terminal.export_text()


def test_the_live_view_keeps_one_row_per_action_updated_in_place():
    console = LiveConsole(io.StringIO())
    try:
        console.action("Build", "BuildTrainingImage", "InProgress", 0.0)
        console.action("Training", "MonitorTraining", "InProgress", 1.0, "InProgress: Training")
        console.action("Training", "MonitorTraining", "Failed", 20.5, LONG)
        assert console.live is not None  # started by the first action
    finally:
        console.close()

    text = rendered(console)
    rows = [line for line in text.splitlines() if line.strip()]
    assert len(rows) == 2 and console.live is None
    assert "MonitorTraining" in rows[1] and "Failed" in rows[1] and "20.5 s" in rows[1]
    assert "InProgress: Training" not in text
    assert " ".join(text.split()).endswith("[log: s3://mlops-data/runs/e/training/job-1.log]")  # not cut


def test_a_live_console_says_other_lines_on_its_stream_only():
    stream = io.StringIO()
    console = LiveConsole(stream)

    console("deployed stack mlops-pipeline with scripts/deploy.sh")
    console.close()

    assert "deployed stack mlops-pipeline with scripts/deploy.sh" in stream.getvalue()
