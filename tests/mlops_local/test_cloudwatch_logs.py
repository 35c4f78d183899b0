"""The shared CloudWatch Logs writer: batches within PutLogEvents' limits, written as a role (a denial is
recorded, not raised), a followed file, and the export of every stream to files."""
from __future__ import annotations

import pytest

from mlops_local import cloudwatch_logs
from mlops_local.cloudwatch_logs import (EVENT_OVERHEAD, MAX_BATCH_BYTES, MAX_EVENT_BYTES, LogWriter, batches,
                                         export_groups, follow_file, stream_messages)
from mlops_local.gateway import Gateway, LocalAws
from mlops_local.runtime import Runtime
from tests.conftest import ROOT
from tests.mlops_local.sagemaker_requests import create_role

NOW = cloudwatch_logs.now_ms()


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    with LocalAws(Gateway()) as aws:
        yield aws, Runtime(aws=aws, workdir=tmp_path_factory.mktemp("logs-runtime"), source_root=ROOT)


def writer_as(stand_in, role_name: str, actions: list[str], group: str, stream: str) -> LogWriter:
    aws, runtime = stand_in
    group_arn = f"arn:aws:logs:us-east-1:123456789012:log-group:{group}"
    statements = [{"Sid": "Logs", "Effect": "Allow", "Action": actions, "Resource": [group_arn, f"{group_arn}:*"]}]
    role = create_role(aws.client("iam"), role_name, statements)
    session = runtime.session(role, "SageMaker", "sagemaker.amazonaws.com",
                              source_arn=f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{role_name}")
    return LogWriter(runtime.client_as("logs", session), group, stream)


@pytest.mark.parametrize("events, sizes", [
    ([(1, "a")] * 10_001, [10_000, 1]),
    ([(1, "x" * (MAX_EVENT_BYTES // 2))] * 9, [7, 2]),  # 1,048,576 bytes hold 7 of these
    ([(1, "")], []),
    ([(1, "é" * MAX_EVENT_BYTES + "x")], [3]),  # 2 bytes a character: three events, one batch
    ([(0, "day one"), (25 * 3600 * 1000, "a day later")], [1, 1]),
], ids=["event-count", "batch-bytes", "empty-message", "event-too-large", "batch-spans-over-24h"])
def test_batches_keep_within_put_log_events_limits(events, sizes):
    found = batches(events)
    assert [len(batch) for batch in found] == sizes
    for batch in found:
        assert sum(len(e["message"].encode()) + EVENT_OVERHEAD for e in batch) <= MAX_BATCH_BYTES
        assert all(len(e["message"].encode()) + EVENT_OVERHEAD <= 256 * 1024 for e in batch)


def test_batches_are_chronological_and_keep_the_order_of_equal_timestamps():
    found = batches([(3, "c"), (1, "a1"), (2, "b"), (1, "a2")])
    assert [e["message"] for e in found[0]] == ["a1", "a2", "b", "c"]


def test_a_writer_creates_the_group_and_stream_and_the_events_read_back(stand_in):
    aws, _ = stand_in
    writer = writer_as(stand_in, "logs-writer", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                       "/aws/sagemaker/TrainingJobs", "job-1/algo-1-1700000000")
    assert writer.write_lines(["first", "second"]) and writer.write_lines(["third"])
    assert writer.written == 3 and not writer.failed
    logs = aws.client("logs")
    assert stream_messages(logs, "/aws/sagemaker/TrainingJobs", "job-1/algo-1-1700000000") == [
        "first", "second", "third"]
    filtered = logs.filter_log_events(logGroupName="/aws/sagemaker/TrainingJobs", filterPattern="second")
    assert [e["message"] for e in filtered["events"]] == ["second"]


def test_a_role_without_put_log_events_loses_its_logs_and_the_denial_is_recorded(stand_in):
    aws, runtime = stand_in
    writer = writer_as(stand_in, "logs-no-put", ["logs:CreateLogGroup", "logs:CreateLogStream"],
                       "/aws/sagemaker/TrainingJobs", "job-2/algo-1-1700000000")
    assert writer.write_lines(["lost"]) is False
    assert writer.denied is not None and "is not authorized to perform: logs:PutLogEvents" in writer.denied
    assert writer.write_lines(["also lost"]) is False and writer.written == 0
    assert stream_messages(aws.client("logs"), "/aws/sagemaker/TrainingJobs", "job-2/algo-1-1700000000") == []


def test_a_role_without_create_log_group_cannot_write_to_a_new_group(stand_in):
    writer = writer_as(stand_in, "logs-no-group", ["logs:CreateLogStream", "logs:PutLogEvents"],
                       "/aws/sagemaker/NoSuchGroup", "stream")
    assert writer.write_lines(["lost"]) is False
    assert "logs:CreateLogGroup" in (writer.denied or "")


def test_follow_file_copies_appended_lines_and_the_last_partial_line_on_close(stand_in, tmp_path):
    aws, _ = stand_in
    output = tmp_path / "job.log"
    output.write_text("from an earlier run\n")
    writer = LogWriter(aws.client("logs"), "/test/follow", "stream")
    aws.client("logs").create_log_group(logGroupName="/test/follow")
    follower = follow_file(output, writer, poll=0.05)
    with output.open("a") as out:
        out.write("line 1\nline 2\npartial")
    follower.close()
    assert stream_messages(aws.client("logs"), "/test/follow", "stream") == ["line 1", "line 2", "partial"]


def test_export_groups_writes_each_stream_under_its_group_path(stand_in, tmp_path):
    aws, _ = stand_in
    logs = aws.client("logs")
    logs.create_log_group(logGroupName="/aws/lambda/fn")
    LogWriter(logs, "/aws/lambda/fn", "2026/12/02/[$LATEST]" + "0" * 32).write([(NOW, "START"), (NOW + 1, "END")])
    written = export_groups(logs, tmp_path)
    exported = tmp_path / ("aws/lambda/fn/2026/12/02/[$LATEST]" + "0" * 32 + ".log")
    assert exported in written
    assert exported.read_text() == "START\nEND\n"
    assert all(tmp_path in path.parents for path in written)


def test_stream_messages_follows_the_forward_token(stand_in):
    aws, _ = stand_in
    logs = aws.client("logs")
    logs.create_log_group(logGroupName="/test/many")
    LogWriter(logs, "/test/many", "s").write((NOW + i, f"m{i}") for i in range(1, 12_001))
    assert len(stream_messages(logs, "/test/many", "s")) == 12_000
    assert cloudwatch_logs.MAX_BATCH_EVENTS == 10_000
