"""The gateway: moto answers what it does well; registered handlers answer the rest."""
from __future__ import annotations

import json
import logging

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


# Each case: a call the pipeline makes over a REST protocol, and the operation and IAM checks the gateway
# records for it (mlops_local.iam.actions) once it has told the operation from method, path, query and headers.
ARN = "arn:aws:s3:::rest-bucket"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:rest-fn"
REST_CASES = {
    "put-object": ("s3", "put_object", {"Bucket": "rest-bucket", "Key": "a/b c.txt", "Body": b"x",
                                        "ServerSideEncryption": "AES256"},
                   "PutObject", [("s3:PutObject", f"{ARN}/a/b c.txt")]),
    "get-object": ("s3", "get_object", {"Bucket": "rest-bucket", "Key": "a/b c.txt"},
                   "GetObject", [("s3:GetObject", f"{ARN}/a/b c.txt")]),
    "get-object-tagging": ("s3", "get_object_tagging", {"Bucket": "rest-bucket", "Key": "a/b c.txt"},
                           "GetObjectTagging", [("s3:GetObjectTagging", f"{ARN}/a/b c.txt")]),
    "head-object": ("s3", "head_object", {"Bucket": "rest-bucket", "Key": "a/b c.txt"},
                    "HeadObject", [("s3:GetObject", f"{ARN}/a/b c.txt")]),
    "list-objects-v2": ("s3", "list_objects_v2", {"Bucket": "rest-bucket", "Prefix": "a/"},
                        "ListObjectsV2", [("s3:ListBucket", ARN)]),
    "list-objects": ("s3", "list_objects", {"Bucket": "rest-bucket"}, "ListObjects", [("s3:ListBucket", ARN)]),
    "copy-object": ("s3", "copy_object", {"Bucket": "rest-bucket", "Key": "copy",
                                          "CopySource": {"Bucket": "rest-bucket", "Key": "a/b c.txt"}},
                    "CopyObject", [("s3:GetObject", f"{ARN}/a/b c.txt"), ("s3:PutObject", f"{ARN}/copy")]),
    "delete-objects": ("s3", "delete_objects", {"Bucket": "rest-bucket", "Delete": {"Objects": [
        {"Key": "copy"}, {"Key": "gone", "VersionId": "v1"}]}},
        "DeleteObjects", [("s3:DeleteObject", f"{ARN}/copy"), ("s3:DeleteObjectVersion", f"{ARN}/gone")]),
    "get-function": ("lambda", "get_function", {"FunctionName": "rest-fn"},
                     "GetFunction", [("lambda:GetFunction", FUNCTION)]),
    "get-function-configuration": ("lambda", "get_function_configuration",
                                   {"FunctionName": "rest-fn", "Qualifier": "$LATEST"},
                                   "GetFunctionConfiguration", [("lambda:GetFunctionConfiguration",
                                                                 f"{FUNCTION}:$LATEST")]),
    "invoke-endpoint": ("sagemaker-runtime", "invoke_endpoint", {"EndpointName": "rest-ep", "Body": b"1"},
                        "InvokeEndpoint", [("sagemaker:InvokeEndpoint",
                                            "arn:aws:sagemaker:us-east-1:123456789012:endpoint/rest-ep")]),
}


@pytest.mark.parametrize("service, method, params, operation, checks", REST_CASES.values(), ids=REST_CASES.keys())
def test_the_access_log_tells_rest_operations(aws, service, method, params, operation, checks):
    aws.client("s3").create_bucket(Bucket="rest-bucket")
    aws.client("s3").put_object(Bucket="rest-bucket", Key="a/b c.txt", Body=b"x")
    mark = len(aws.gateway.access_log)
    try:
        getattr(aws.client(service, config=Config(retries={"total_max_attempts": 1})), method)(**params)
    except ClientError:
        pass  # moto's answer does not matter here (no such function or endpoint): the record does
    record = aws.gateway.access_log.records(mark)[0].as_dict()
    assert (record["service"], record["operation"]) == (service, operation)
    assert record["decision"] == "allowed (administrator)"
    assert [(check["action"], check["resource"]) for check in record["checks"]] == checks
    assert record["principal"] == {"kind": "user", "arn": "arn:aws:iam::123456789012:user/mlops-local"}


def test_the_access_log_keeps_request_conditions_and_skips_moto_control_requests(aws, tmp_path):
    log = aws.gateway.access_log
    mark = len(log)
    aws.client("s3").create_bucket(Bucket="cond-bucket")
    aws.client("s3").list_objects_v2(Bucket="cond-bucket", Prefix="runs/")
    aws.reset()
    records = [r.as_dict() for r in log.records(mark)]
    assert [r["operation"] for r in records] == ["CreateBucket", "ListObjectsV2"]
    assert records[1]["checks"][0]["conditions"] == {"s3:prefix": ["runs/"]}
    assert len(log.write_jsonl(tmp_path / "access.jsonl", mark)) == 2
    assert [json.loads(line) for line in (tmp_path / "access.jsonl").read_text().splitlines()] == records


def test_a_new_stand_in_starts_empty():
    with LocalAws(Gateway()) as first:
        first.client("s3").create_bucket(Bucket="left-over")
    with LocalAws(Gateway()) as second:
        assert second.client("s3").list_buckets()["Buckets"] == []


# Operations moto lacks (it raises NotImplementedError): AWS's answer to an unknown operation, which no SDK retries.
UNIMPLEMENTED = {
    "codepipeline ListRuleExecutions (JSON)": ("codepipeline", "list_rule_executions", {"pipelineName": "p"},
                                               "ListRuleExecutions", "UnknownOperationException"),
    "codecommit ListRepositories (JSON)": ("codecommit", "list_repositories", {}, "ListRepositories",
                                           "UnknownOperationException"),
    "cloudformation ListStackRefactors (query)": ("cloudformation", "list_stack_refactors", {},
                                                  "ListStackRefactors", "InvalidAction"),
}


@pytest.mark.parametrize("service, method, params, operation, code", UNIMPLEMENTED.values(), ids=UNIMPLEMENTED.keys())
def test_an_unimplemented_operation_is_refused_once_in_aws_form(aws, caplog, capfd, service, method, params, operation,
                                                                code):
    log = aws.gateway.access_log
    mark = len(log)
    client = aws.client(service, config=Config(retries={"mode": "standard", "max_attempts": 5}))
    with pytest.raises(ClientError) as caught:
        getattr(client, method)(**params)
    error = caught.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (code, 400)
    assert operation in error["Error"]["Message"] and "does not implement" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["RetryAttempts"] == 0
    assert [r.operation for r in log.records(mark)] == [operation]  # the stand-in saw exactly one attempt
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.exc_info) for r in lines] == [("mlops_local.gateway", None)]
    assert operation in lines[0].getMessage()
    assert "Traceback" not in capfd.readouterr().err


def test_a_moto_failure_is_one_line_and_an_aws_internal_failure(aws, caplog, capfd, monkeypatch):
    def broken(environ, start_response):
        raise KeyError("missing-member")

    monkeypatch.setattr(aws.gateway, "moto", broken)
    client = aws.client("codecommit", config=Config(retries={"mode": "standard", "max_attempts": 2}))
    with pytest.raises(ClientError) as caught:
        client.list_repositories()
    assert caught.value.response["Error"]["Code"] == "InternalFailure"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500  # retried, as AWS's 500 is
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # max_attempts counts the retries after the first attempt: 3 attempts, one line each
    assert [(r.name, r.exc_info) for r in lines] == [("mlops_local.gateway", None)] * 3
    assert "KeyError" in lines[0].getMessage() and "ListRepositories" in lines[0].getMessage()
    assert "Traceback" not in capfd.readouterr().err


def test_stop_ends_the_server_thread_and_frees_the_port():
    import socket

    from mlops_local import gateway

    local = LocalAws(Gateway()).start()
    assert local.client("sts").get_caller_identity()["Account"] == local.account_id
    local.stop()  # returns once serve_forever noticed the shutdown: one poll at most
    local.thread.join(timeout=5)
    assert not local.thread.is_alive() and gateway.SHUTDOWN_POLL <= 0.1
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", local.server.server_port)) != 0
