"""The job boundary: one result per invocation, failures a person can act on, no secrets logged."""
from __future__ import annotations

import io
import json
import logging
import zipfile

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from lambdas.errors import ConfigurationError, JobFailed
from lambdas.job import (
    MAX_FAILURE_MESSAGE, Done, InProgress, JobEvent, Param, job_name, parse_s3_uri, parse_user_parameters,
    read_artifact_file,
    run_job, write_artifact_files)

from tests.lambdas.pipeline_stubs import JOB_ID, expect_success, expect_failure
from tests.conftest import SECRETS, load_event


def test_event_parses_into_typed_fields():
    job = JobEvent.from_event(load_event(user_parameters={"a": 1}, continuation_token={"n": 1}))
    assert job.job_id == JOB_ID and job.account_id == "123456789012"
    assert job.user_parameters == '{"a": 1}'
    assert job.input_artifact().bucket == "mlops-artifacts"
    assert job.output_artifact("DeployConfig").key == "mlops-pipeline/DeployConf/def456"
    assert job.state() == {"n": 1}
    assert job.kms_key_id.endswith("key/1234abcd-12ab-34cd-56ef-1234567890ab")
    assert not any(secret in repr(job) for secret in SECRETS)


def test_done_reports_success_with_variables(codepipeline):
    client, stub = codepipeline
    expect_success(stub, outputVariables={"JobName": "j1", "Rows": "3"},
                   executionDetails={"summary": "done"})
    result = run_job(load_event(), lambda job: Done("done", {"JobName": "j1", "Rows": 3}), client)
    assert result["result"] == "success"


def test_in_progress_reports_a_continuation_token(codepipeline):
    client, stub = codepipeline
    expect_success(stub, continuationToken='{"job":"j1","started":1.0}',
                   executionDetails={"summary": "running", "percentComplete": 40})
    result = run_job(load_event(), lambda job: InProgress("running", {"job": "j1", "started": 1.0}, 40),
                     client)
    assert result["result"] == "continue"


def token_limit(client) -> int:
    """AWS's limit for PutJobSuccessResult's continuationToken, from botocore's CodePipeline model."""
    return int(client.meta.service_model.shape_for("ContinuationToken").metadata["max"])


def padded_state(length: int) -> dict[str, str]:
    """Continuation state whose compact JSON is exactly `length` characters: {"pad":"yyy..."}."""
    state = {"pad": "y" * (length - len('{"pad":""}'))}
    assert len(json.dumps(state, separators=(",", ":"))) == length
    return state


def test_a_token_of_exactly_the_limit_is_reported(codepipeline):
    client, stub = codepipeline
    limit = token_limit(client)
    assert limit == 2048
    state = padded_state(limit)
    expect_success(stub, continuationToken=json.dumps(state, separators=(",", ":")),
                   executionDetails={"summary": "x"})
    assert run_job(load_event(), lambda job: InProgress("x", state), client)["result"] == "continue"


def test_a_token_one_over_the_limit_fails_instead_of_hanging(codepipeline):
    client, stub = codepipeline
    limit = token_limit(client)
    message = f"internal error: continuation state is {limit + 1} characters (max {limit})"
    expect_failure(stub, "JobFailed", message)
    result = run_job(load_event(), lambda job: InProgress("x", padded_state(limit + 1)), client)
    assert (result["result"], result["message"]) == ("failure", message)


def _raise(exc):
    def work(job):
        raise exc
    return work


def _client_error(code, message="nope", operation="StartJobRun"):
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize("exc, failure_type, message", [
    (ConfigurationError("UserParameters is missing required key 'x'"), "ConfigurationError",
     "UserParameters is missing required key 'x'"),
    (JobFailed("Glue job run jr_1 FAILED: boom"), "JobFailed", "Glue job run jr_1 FAILED: boom"),
    (_client_error("AccessDeniedException", "not allowed"), "PermissionError",
     "StartJobRun was denied: not allowed (AccessDeniedException); check the function's role"),
    (_client_error("ThrottlingException", "slow down"), "SystemUnavailable",
     "StartJobRun kept failing after retries: slow down (ThrottlingException)"),
    (_client_error("ValidationException", "bad name"), "JobFailed",
     "StartJobRun failed: bad name (ValidationException)"),
    (KeyError("boom"), "JobFailed", "unexpected error (KeyError): 'boom'"),
], ids=["configuration", "job-failed", "access-denied", "throttled", "aws-validation", "bug"])
def test_every_error_becomes_one_failure_result(codepipeline, exc, failure_type, message):
    client, stub = codepipeline
    expect_failure(stub, failure_type, message)
    result = run_job(load_event(), _raise(exc), client)
    assert result == {"result": "failure", "type": failure_type, "message": message}


def test_failure_message_is_cut_to_the_api_limit(codepipeline):
    client, stub = codepipeline
    expect_failure(stub, "JobFailed", "x" * MAX_FAILURE_MESSAGE)
    run_job(load_event(), _raise(JobFailed("x" * 6000)), client)


def test_event_without_job_is_refused_loudly():
    with pytest.raises(ConfigurationError, match="not a CodePipeline job event"):
        run_job({"hello": "world"}, lambda job: Done("x"), codepipeline=object())


def test_secrets_never_reach_the_logs(codepipeline, caplog):
    client, stub = codepipeline
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        expect_failure(stub, "JobFailed")
    event = load_event(user_parameters={"x": 1})
    run_job(event, _raise(RuntimeError(f"bad event {JobEvent.from_event(event)}")), client)
    run_job(event, _raise(JobFailed("failed")), client)
    run_job(event, _raise(ValueError("x")), client)
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert JOB_ID in logged
    assert not any(secret in logged for secret in SECRETS)


SCHEMA = {"name": Param(str), "threshold": Param((int, float)), "count": Param(int, False, 1),
          "enabled": Param(bool, False, True)}


@pytest.mark.parametrize("raw, expected", [
    ('{"name": "a", "threshold": 600}', {"name": "a", "threshold": 600, "count": 1, "enabled": True}),
    ('{"name": "a", "threshold": "550.5", "count": 3}', {"name": "a", "threshold": 550.5, "count": 3,
                                                         "enabled": True}),
    ('{"name": "a", "threshold": 1, "count": "4"}', {"name": "a", "threshold": 1, "count": 4,
                                                     "enabled": True}),
], ids=["defaults", "number-from-variable-string", "whole-number-from-variable-string"])
def test_user_parameters_parse(raw, expected):
    assert parse_user_parameters(raw, SCHEMA) == expected


@pytest.mark.parametrize("raw, message", [
    ("{name: a}", "UserParameters is not valid JSON"),
    ("[1, 2]", "UserParameters must be a JSON object, got list"),
    ('{"threshold": 1}', "missing required key 'name'"),
    ('{"name": "a", "threshold": 1, "colour": 2}', "unknown key(s) ['colour']; allowed: ['count', 'enabled', "
                                                   "'name', 'threshold']"),
    ('{"name": 5, "threshold": 1}', "'name' must be str, got int"),
    ('{"name": "a", "threshold": 1, "count": true}', "'count' must be int, got bool"),
    ('{"name": "a", "threshold": "high"}', "'threshold' must be a number, got 'high'"),
    ('{"name": "a", "threshold": 1, "count": "2.5"}', "'count' must be a whole number, got '2.5'"),
    ('{"name": "#{Build.ImageUri}", "threshold": 1}',
     "'name' holds an unresolved variable #{Build.ImageUri}"),
], ids=["invalid-json", "not-object", "missing", "unknown", "wrong-type", "bool-for-int", "not-number",
        "fraction-for-int", "unresolved-variable"])
def test_user_parameter_errors_name_the_key(raw, message):
    with pytest.raises(ConfigurationError) as caught:
        parse_user_parameters(raw, SCHEMA)
    assert message in str(caught.value)


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="mlops-artifacts")
        yield client


def test_artifacts_round_trip_with_kms(s3):
    job = JobEvent.from_event(load_event())
    write_artifact_files(job, job.output_artifact(), {"config.json": '{"a": 1}'}, s3_client=s3)
    head = s3.head_object(Bucket="mlops-artifacts", Key=job.output_artifact().key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == job.kms_key_id
    assert read_artifact_file(job, job.output_artifact(), "config.json", s3_client=s3) == b'{"a": 1}'


@pytest.mark.parametrize("body, message", [
    (b"not a zip", "is not a zip archive"),
    (None, "has no file 'config.json'"),
])
def test_bad_input_artifacts_are_configuration_errors(s3, body, message):
    job = JobEvent.from_event(load_event())
    if body is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("other.json", "{}")
        body = buffer.getvalue()
    s3.put_object(Bucket="mlops-artifacts", Key=job.input_artifact().key, Body=body)
    with pytest.raises(ConfigurationError, match=message):
        read_artifact_file(job, job.input_artifact(), "config.json", s3_client=s3)


def test_artifact_client_uses_the_event_credentials():
    """Artifacts are read with the credentials CodePipeline put in the event, not the function's."""
    from lambdas.job import artifact_s3

    client = artifact_s3(JobEvent.from_event(load_event()))
    credentials = client._request_signer._credentials  # no public accessor; read-only check
    assert (credentials.access_key, credentials.secret_key, credentials.token) == SECRETS
    assert client.meta.config.signature_version == "s3v4"
    assert client.meta.config.retries["mode"] == "standard"


UUID = "2d6b0c50-6f3a-4d8e-9f1a-1234567890ab"


@pytest.mark.parametrize("prefix, kind, expected", [
    ("mlops-diamonds", "train", f"mlops-diamonds-train-{UUID}"),
    ("a-very-long-project-name-that-goes-on", "evaluate", f"a-very-long-proje-evaluate-{UUID}"),
    ("my_project", "etl", f"my-project-etl-{UUID}"),
], ids=["fits", "long-prefix-cut-kind-kept", "underscores"])
def test_job_names_are_stable_and_valid(prefix, kind, expected):
    import re

    name = job_name(prefix, kind, UUID)
    assert name == expected == job_name(prefix, kind, UUID)
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name)


def test_job_name_needs_an_execution_id():
    with pytest.raises(ConfigurationError, match="no usable characters"):
        job_name("p", "train", "__")


@pytest.mark.parametrize("uri, expected", [("s3://b/k/x.csv", ("b", "k/x.csv")), ("s3://b", ("b", ""))])
def test_parse_s3_uri(uri, expected):
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["b/k", "s3:///k", 5])
def test_parse_s3_uri_errors(uri):
    with pytest.raises(ConfigurationError, match="input_uri"):
        parse_s3_uri(uri, "input_uri")


def test_mutable_defaults_are_not_shared():
    schema = {"tags": Param(dict, required=False, default={})}
    first = parse_user_parameters("{}", schema)
    first["tags"]["x"] = "1"
    assert parse_user_parameters("{}", schema) == {"tags": {}}
