"""What the fault-matrix tests share: docs/FAULTS.md's table read as data, its `…` patterns, process checks
(test_signals.py uses them too), S3 snapshots and the
one CodePipeline job-worker call whose failure result the user sees as the action's message."""
from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tests.conftest import ROOT

TABLE = ROOT / "docs" / "FAULTS.md"
ELLIPSIS = "…"
CODE_SPAN = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Row:
    id: str
    fault: str
    sees: tuple[str, ...]     # the code spans of "what the user sees", in order
    outcome: tuple[str, ...]  # the code spans of "exit code / status"


def read_table(path: Path = TABLE) -> dict[str, Row]:
    """The table's rows by id: every line `| id | fault | what the user sees | exit code / status |` after
    the header's separator line."""
    rows: dict[str, Row] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"\|(\s*:?-+:?\s*\|){4}", line.strip()))
    for line in lines[start + 1:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        assert len(cells) == 4, f"{path.name}: a row needs 4 cells: {line}"
        row_id = cells[0].strip("`")
        assert row_id not in rows, f"{path.name}: row {row_id} twice"
        rows[row_id] = Row(row_id, cells[1], spans(cells[2]), spans(cells[3]))
    return rows


def spans(cell: str) -> tuple[str, ...]:
    return tuple(span.replace("\\|", "|") for span in CODE_SPAN.findall(cell))


def pattern(text: str) -> re.Pattern[str]:
    """A quoted text as a regex matching a whole observed text: `…` stands for any run of characters."""
    return re.compile(".*?".join(re.escape(part) for part in text.split(ELLIPSIS)), re.DOTALL)


def assert_seen(row: Row, observed: list[str]) -> None:
    """The observed texts, in order, are those the row quotes: its "what the user sees" spans, then its
    "exit code / status" spans, each matched whole."""
    expected = [*row.sees, *row.outcome]
    assert len(observed) == len(expected), f"{row.id}: the row quotes {expected}, the scenario saw {observed}"
    for quoted, seen in zip(expected, observed):
        assert pattern(quoted).fullmatch(seen), f"{row.id}: quoted {quoted!r}, saw {seen!r}"


# -- processes (shared with tests/mlops_local/test_signals.py) ---------------------------------------------
def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that does not reap (a container's PID 1 may not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
    return state != "Z"


def survivors(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout  # SIGKILL is delivered asynchronously
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def descendants(root: int) -> list[int]:
    """Every live process below `root` (jobs run in sessions of their own, but stay its descendants)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_until(probe: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (answer := probe()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.05)
    return answer


# -- S3 ---------------------------------------------------------------------------------------------------
def snapshot(s3: Any, bucket: str) -> dict[str, str]:
    """Every object of the bucket: key -> ETag."""
    found: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update({item["Key"]: item["ETag"] for item in page.get("Contents", [])})
    return found


def assert_nothing_lost(before: dict[str, str], after: dict[str, str]) -> None:
    """Every object there before the fault is still there, unchanged."""
    changed = {key: etag for key, etag in before.items() if after.get(key) != etag}
    assert not changed, f"lost or changed in S3: {sorted(changed)}"


# -- the action ---------------------------------------------------------------------------------------------
def action_failure(work: Callable[[Any], Any], user_parameters: dict[str, Any]) -> dict[str, Any]:
    """One job-worker invocation as CodePipeline makes it, expected to fail the action: its PutJobFailureResult
    (checked against CodePipeline's model) as {"result", "type", "message"}."""
    from botocore.stub import ANY

    from lambdas.job import run_job
    from tests.conftest import load_event
    from tests.lambdas.pipeline_stubs import JOB_ID, stubbed_codepipeline

    codepipeline, stub = stubbed_codepipeline()
    stub.add_response("put_job_failure_result", {},
                      {"jobId": JOB_ID, "failureDetails": {"type": ANY, "message": ANY}})
    with stub:
        outcome: dict[str, Any] = run_job(load_event(user_parameters=user_parameters), work,
                                          codepipeline=codepipeline)
    stub.assert_no_pending_responses()
    return outcome


# "CloudWatch Logs group G, stream S" (the stand-in's Lambda actions) or "CloudWatch log group G, stream S" /
# "..., streams <job>/*" (the Monitor workers, which name the log as they would on AWS).
LOG_NAMED = re.compile(r"CloudWatch [Ll]ogs? group (\S+), streams? ([^;\s]+)")


def assert_log_exists(logs: Any, message: str) -> None:
    """The CloudWatch Logs stream a failure message names (or one stream of a `<prefix>*` it names) exists and
    holds events."""
    named = LOG_NAMED.search(message)
    assert named, f"no CloudWatch Logs stream named in {message!r}"
    group, stream = named.groups()
    if stream.endswith("*"):
        found = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=stream[:-1])["logStreams"]
        assert len(found) == 1, f"{message!r} names {group} {stream}: found {found}"
        stream = found[0]["logStreamName"]
    events = logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]
    assert events, f"the stream {group} {stream} that {message!r} names is empty"
