"""The gateway: moto answers what it does well; registered handlers answer the rest."""
from __future__ import annotations

import json

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from werkzeug.wrappers import Response

from mlops_local.gateway import AwsError, Gateway, LocalAws, loopback_template_urls


@pytest.fixture(scope="module")
def aws():
    with LocalAws(Gateway()) as local:
        yield local


def test_moto_serves_what_is_not_overridden(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="gw-bucket")
    s3.put_object(Bucket="gw-bucket", Key="k", Body=b"v")
    assert s3.get_object(Bucket="gw-bucket", Key="k")["Body"].read() == b"v"


def test_json_operation_override_and_its_errors(aws):
    calls = []

    def get_job_run(params):
        calls.append(params)
        if params["RunId"] == "missing":
            raise AwsError("EntityNotFoundException", "run missing not found")
        return {"JobRun": {"Id": params["RunId"], "JobName": params["JobName"], "JobRunState": "RUNNING",
                           "StartedOn": 1_700_000_000.0}}

    aws.gateway.operation("AWSGlue.GetJobRun", get_job_run)
    glue = aws.client("glue")
    run = glue.get_job_run(JobName="etl", RunId="jr_1")["JobRun"]
    assert run["JobRunState"] == "RUNNING" and run["StartedOn"].timestamp() == 1_700_000_000.0
    with pytest.raises(ClientError) as caught:
        glue.get_job_run(JobName="etl", RunId="missing")
    assert caught.value.response["Error"]["Code"] == "EntityNotFoundException"
    assert calls[0] == {"JobName": "etl", "RunId": "jr_1"}


def test_a_failing_handler_is_an_internal_failure_not_a_hang(aws):
    def broken(params):
        raise RuntimeError("bug")

    aws.gateway.operation("AWSGlue.GetJobRuns", broken)
    glue = aws.client("glue", config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as caught:
        glue.get_job_runs(JobName="etl")
    assert caught.value.response["Error"]["Code"] == "InternalFailure"


def test_rest_route(aws):
    def invoke(request, name):
        return Response(f"{name}:{request.get_data().decode()}", content_type="text/csv")

    aws.gateway.route("POST", r"^/endpoints/(?P<name>[^/]+)/invocations$", invoke)
    answer = aws.client("sagemaker-runtime").invoke_endpoint(EndpointName="ep", Body=b"1,2",
                                                             ContentType="text/csv")
    assert answer["Body"].read() == b"ep:1,2"


def test_after_hook_sees_a_passed_through_operation(aws):
    seen = []
    aws.gateway.after("cloudformation", "CreateStack",
                      lambda params, status, body: seen.append((params, status)))
    cfn = aws.client("cloudformation")
    template = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}}}
    cfn.create_stack(StackName="hooked", TemplateBody=json.dumps(template))
    assert seen and seen[0][0]["StackName"] == "hooked" and seen[0][1] == 200
    assert cfn.describe_stacks(StackName="hooked")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_environment_points_children_here(aws):
    env = aws.environment()
    assert env["AWS_ENDPOINT_URL"] == aws.url and aws.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("body, expected", [
    (b"Action=CreateStack&TemplateURL=http%3A%2F%2F127.0.0.1%3A5123%2Fbucket%2Fkey.template",
     b"Action=CreateStack&TemplateURL=https%3A%2F%2Fs3.amazonaws.com%2Fbucket%2Fkey.template"),
    (b"TemplateURL=http%3A%2F%2Flocalhost%3A80%2Fb%2Fk", b"TemplateURL=https%3A%2F%2Fs3.amazonaws.com%2Fb%2Fk"),
    (b"TemplateURL=https%3A%2F%2Fs3.amazonaws.com%2Fb%2Fk", b"TemplateURL=https%3A%2F%2Fs3.amazonaws.com%2Fb%2Fk"),
    (b'{"Bucket": "x"}', b'{"Bucket": "x"}'),
], ids=["loopback-ip", "localhost", "already-s3", "not-cloudformation"])
def test_loopback_template_urls(body, expected):
    assert loopback_template_urls(body) == expected


def test_a_new_stand_in_starts_empty():
    with LocalAws(Gateway()) as first:
        first.client("s3").create_bucket(Bucket="left-over")
    with LocalAws(Gateway()) as second:
        assert second.client("s3").list_buckets()["Buckets"] == []
