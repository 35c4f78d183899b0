"""A model server's output in CloudWatch Logs: group /aws/sagemaker/Endpoints/<endpoint>, stream
<variant>/<instance-id>, written as the model's execution role."""
from __future__ import annotations

import re

import pytest

from mlops_local.cloudwatch_logs import stream_messages

from tests.mlops_local.endpoint_stand import BUCKET, ROLE_NAME, deploy, endpoint_stand, in_service, wait_for
from tests.mlops_local.sagemaker_requests import create_role, execution_statements
from tests.training.model_files import CSV_BODY

STREAM = re.compile(r"^AllTraffic/i-[0-9a-f]{17}$")


@pytest.fixture(scope="module")
def stand(tmp_path_factory):
    with endpoint_stand(tmp_path_factory.mktemp("logs"), health_interval=0.1, capture_interval=None) as local:
        yield local


def streams(logs, group: str) -> dict[str, list[str]]:
    try:
        listed = logs.describe_log_streams(logGroupName=group)["logStreams"]
    except logs.exceptions.ResourceNotFoundException:
        return {}
    return {s["logStreamName"]: stream_messages(logs, group, s["logStreamName"]) for s in listed}


def serving(found: dict[str, list[str]]) -> list[str]:
    """The streams whose server said it is serving."""
    return [name for name, lines in found.items() if any("serving on http://127.0.0.1:" in x for x in lines)]


def test_the_server_output_goes_to_the_endpoint_log_group_one_stream_per_instance(stand):
    aws, runtime, endpoints = stand
    sm, logs = aws.client("sagemaker"), aws.client("logs")
    deploy(sm, "lg-out")
    in_service(runtime, sm, "lg-out")
    aws.client("sagemaker-runtime").invoke_endpoint(EndpointName="lg-out", Body=CSV_BODY, ContentType="text/csv")
    group = "/aws/sagemaker/Endpoints/lg-out"
    first = wait_for(runtime, lambda: serving(streams(logs, group)), "the server's first lines")
    assert len(first) == 1 and STREAM.match(first[0])

    process = endpoints.served("lg-out").process
    process.kill()
    process.wait()
    both = wait_for(runtime, lambda: (lambda s: s if len(s) == 2 else None)(serving(streams(logs, group))),
                    "the replacement's stream")
    assert all(STREAM.match(name) for name in both) and first[0] in both  # a new instance, a new stream


def test_a_role_without_logs_permissions_serves_and_its_output_is_lost_with_the_denial_recorded(stand):
    aws, runtime, endpoints = stand
    sm, logs = aws.client("sagemaker"), aws.client("logs")
    role = create_role(aws.client("iam"), f"{ROLE_NAME}-no-logs", execution_statements(BUCKET))
    deploy(sm, "lg-denied", role=role)
    in_service(runtime, sm, "lg-denied")
    writer = endpoints._endpoints["lg-denied"].server.follower.writer
    wait_for(runtime, lambda: writer.denied, "the denied write")
    assert "logs:CreateLogStream" in writer.denied and f"assumed-role/{ROLE_NAME}-no-logs/" in writer.denied
    assert streams(logs, "/aws/sagemaker/Endpoints/lg-denied") == {}
