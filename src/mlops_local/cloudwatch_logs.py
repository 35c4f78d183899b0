"""CloudWatch Logs as the services write them: a job's or function's output put into its log group.

A writer signs as the role that writes on AWS (a Lambda function's execution role, a Glue job's
role, a SageMaker job's or model's execution role: `runtime.client_as("logs", session)`), so the
stand-in judges logs:CreateLogGroup / CreateLogStream / PutLogEvents as AWS does. On AWS a role
without them loses its logs silently: the job or function runs on. So a denial is recorded on the
writer (and in the access log), never raised. `export_groups` copies every stream to files, for
runs/<id>/logs/ after the stand-in has stopped.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

# PutLogEvents limits (CloudWatch Logs API Reference, PutLogEvents): at most 10,000 events and
# 1,048,576 bytes per batch, counted as each message's UTF-8 bytes plus 26 bytes per event; an event
# of at most 256 KB; events in chronological order; a batch spans at most 24 hours.
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD  # the message, so the event with its overhead fits 256 KB
MAX_BATCH_SPAN_MS = 24 * 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def split_message(message: str) -> list[str]:
    """A message as events of at most MAX_EVENT_BYTES each, cut on character boundaries."""
    data = message.encode("utf-8")
    if len(data) <= MAX_EVENT_BYTES:
        return [message]
    parts, start = [], 0
    while start < len(data):
        end = min(start + MAX_EVENT_BYTES, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # not inside a multi-byte character
            end -= 1
        parts.append(data[start:end].decode("utf-8"))
        start = end
    return parts


def batches(events: Iterable[tuple[int, str]]) -> list[list[dict[str, Any]]]:
    """(timestamp ms, message) pairs as PutLogEvents batches within AWS's limits: empty messages dropped
    (InputLogEvent.message has a minimum length of 1), long ones split, chronological (stable sort)."""
    ordered = sorted(((stamp, part) for stamp, message in events for part in split_message(message) if part),
                     key=lambda event: event[0])
    found: list[list[dict[str, Any]]] = []
    batch: list[dict[str, Any]] = []
    size = 0
    for stamp, message in ordered:
        event_size = len(message.encode("utf-8")) + EVENT_OVERHEAD
        if batch and (len(batch) >= MAX_BATCH_EVENTS or size + event_size > MAX_BATCH_BYTES
                      or stamp - batch[0]["timestamp"] > MAX_BATCH_SPAN_MS):
            found.append(batch)
            batch, size = [], 0
        batch.append({"timestamp": stamp, "message": message})
        size += event_size
    if batch:
        found.append(batch)
    return found


class LogWriter:
    """One log stream, written as one role. `write` never raises for an AWS error: `denied` keeps the
    first denial (AWS's message), `error` the first other failure; writing stops after either, as the
    service's log agent would lose the rest."""

    def __init__(self, client: Any, group: str, stream: str) -> None:
        self.client = client
        self.group = group
        self.stream = stream
        self.denied: str | None = None
        self.error: str | None = None
        self.written = 0
        self._ready = False
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        """How a failure message names the log: CloudWatch Logs group and stream."""
        return f"CloudWatch Logs group {self.group}, stream {self.stream}"

    @property
    def failed(self) -> bool:
        return self.denied is not None or self.error is not None

    def write(self, events: Iterable[tuple[int, str]]) -> bool:
        """Put (timestamp ms, message) events; False once the stream cannot be written."""
        with self._lock:
            if self.failed:
                return False
            try:
                for batch in batches(events):
                    self._ensure_stream()
                    self.client.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=batch)
                    self.written += len(batch)
            except ClientError as error:
                self._record(error)
            except BotoCoreError as error:
                self.error = str(error)
                log.warning("logs for %s/%s not written: %s", self.group, self.stream, error)
            return not self.failed

    def write_lines(self, lines: Iterable[str], timestamp: int | None = None) -> bool:
        """Lines that happened now (or at `timestamp`)."""
        stamp = now_ms() if timestamp is None else timestamp
        return self.write((stamp, line.rstrip("\n")) for line in lines)

    def _ensure_stream(self) -> None:
        """CreateLogStream; the group first when it does not exist, as a service creates its log group
        on its first write (with logs:CreateLogGroup; the templates create the Lambda groups)."""
        if self._ready:
            return
        try:
            self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code == "ResourceNotFoundException":
                self._create_group()
                self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
            elif code != "ResourceAlreadyExistsException":
                raise
        self._ready = True

    def _create_group(self) -> None:
        try:
            self.client.create_log_group(logGroupName=self.group)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceAlreadyExistsException":  # a parallel writer made it
                raise

    def _record(self, error: ClientError) -> None:
        code, message = error.response["Error"]["Code"], error.response["Error"].get("Message", "")
        if code in ("AccessDeniedException", "AccessDenied"):
            self.denied = message
        else:
            self.error = f"{code}: {message}"
        log.warning("logs for %s/%s not written: %s", self.group, self.stream, self.denied or self.error)


class FileFollower:
    """Copies the complete lines appended to a file (a process's output) to a writer, every `poll`
    seconds, until `close()`, which copies the rest (a last line without a newline included)."""

    def __init__(self, path: Path, writer: LogWriter, poll: float = 1.0, offset: int = 0) -> None:
        self.path = path
        self.writer = writer
        self.poll = poll
        self._offset = offset
        self._pending = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"logs-{writer.stream}", daemon=True)

    def start(self) -> "FileFollower":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._copy(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self._copy(final=False)

    def _copy(self, final: bool) -> None:
        try:
            with self.path.open("rb") as source:
                source.seek(self._offset)
                data = source.read()
        except OSError:
            data = b""
        self._offset += len(data)
        data = self._pending + data
        lines = data.split(b"\n")
        self._pending = b"" if final else lines.pop()
        text = [line.decode("utf-8", errors="replace") for line in lines]
        if any(text):
            self.writer.write_lines(text)


def follow_file(path: Path, writer: LogWriter, poll: float = 1.0) -> FileFollower:
    """Start copying what is appended to `path` from its current end (a log opened in append mode may
    hold an earlier run's output)."""
    offset = path.stat().st_size if path.exists() else 0
    return FileFollower(path, writer, poll, offset).start()


def export_groups(logs_client: Any, out_dir: Path) -> list[Path]:
    """Every stream of every log group as out_dir/<group path>/<stream path>.log, one message a line;
    the files written. Names are used as paths below out_dir ('..' and empty parts dropped)."""
    written = []
    for group_page in logs_client.get_paginator("describe_log_groups").paginate():
        for group in group_page.get("logGroups", []):
            name = group["logGroupName"]
            for stream_page in logs_client.get_paginator("describe_log_streams").paginate(logGroupName=name):
                for stream in stream_page.get("logStreams", []):
                    target = out_dir / _relative(name) / (str(_relative(stream["logStreamName"])) + ".log")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with target.open("w", encoding="utf-8") as out:
                        for message in stream_messages(logs_client, name, stream["logStreamName"]):
                            out.write(message.rstrip("\n") + "\n")
                    written.append(target)
    return written


def stream_messages(logs_client: Any, group: str, stream: str) -> list[str]:
    """A stream's messages from its first, following GetLogEvents' forward token until it repeats."""
    messages: list[str] = []
    token = None
    while True:
        options: dict[str, str] = {"nextToken": token} if token else {}
        page = logs_client.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True, **options)
        messages.extend(event["message"] for event in page.get("events", []))
        if not page.get("events") or page.get("nextForwardToken") in (None, token):
            return messages
        token = page["nextForwardToken"]


def _relative(name: str) -> Path:
    parts = [part for part in name.split("/") if part not in ("", ".", "..")]
    return Path(*parts) if parts else Path("_")
