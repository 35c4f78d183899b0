"""RegisterModel: one Approved package per execution, found again on a retry, set-up mistakes named."""
from __future__ import annotations

import logging

import boto3
import pytest
from botocore.stub import ANY
from moto import mock_aws

from lambdas.registry import (
    REALTIME_INSTANCE_TYPES, TRANSFORM_INSTANCE_TYPES, client_token, find_package, register)
from lambdas.job import run_job

from tests.lambdas.pipeline_stubs import JOB_ID, expect_failure
from tests.conftest import SECRETS, load_event

EXECUTION = "2d6b0c50-6f3a-4d8e-9f1a-1234567890ab"
GROUP = "mlops-diamonds"
ARN = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-training:c0ffee0"
MODEL = f"s3://mlops-data/runs/{EXECUTION}/training/job/output/model.tar.gz"
EVALUATION = f"s3://mlops-data/runs/{EXECUTION}/evaluation/evaluation.json"
COMMITS = {"ModelSource": "c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffe",
           "EtlSource": "beefbeefbeefbeefbeefbeefbeefbeefbeefbeef"}
PARAMS = {"execution_id": EXECUTION, "model_package_group": GROUP, "image_uri": IMAGE,
          "model_data_uri": MODEL, "evaluation_uri": EVALUATION, "source_commits": COMMITS}


@pytest.fixture
def sagemaker():
    """A moto SageMaker with the group, and the list of (operation, params) it was sent."""
    with mock_aws():
        client = boto3.client("sagemaker", region_name="us-east-1")
        client.create_model_package_group(ModelPackageGroupName=GROUP)
        calls: list[tuple[str, dict]] = []
        client.meta.events.register("provide-client-params.sagemaker.*",
                                    lambda params, model, **_: calls.append((model.name, dict(params))))
        yield client, calls


def expect_success(stub, summary, arn):
    stub.add_response("put_job_success_result", {}, {
        "jobId": JOB_ID, "executionDetails": {"summary": summary},
        "outputVariables": {"ModelPackageArn": arn}})


def invoke(codepipeline_client, sagemaker_client, params=PARAMS):
    return run_job(load_event(user_parameters=params), lambda job: register(job, sagemaker=sagemaker_client),
                   codepipeline_client)


def expected_request(**overrides):
    request = {
        "ModelPackageGroupName": GROUP,
        "ModelPackageDescription": f"Approved by pipeline execution {EXECUTION}",
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL}],
            "SupportedContentTypes": ["text/csv", "application/json"],
            "SupportedResponseMIMETypes": ["text/csv", "application/json"],
            "SupportedRealtimeInferenceInstanceTypes": REALTIME_INSTANCE_TYPES,
            "SupportedTransformInstanceTypes": TRANSFORM_INSTANCE_TYPES,
        },
        "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                         "S3Uri": EVALUATION}}},
        "ModelApprovalStatus": "Approved",
        "CustomerMetadataProperties": {"ExecutionId": EXECUTION, "Decision": "APPROVED",
                                       "Commit.EtlSource": COMMITS["EtlSource"],
                                       "Commit.ModelSource": COMMITS["ModelSource"]},
        "ClientToken": client_token(GROUP, EXECUTION),
    }
    request.update(overrides)
    return request


def test_registers_an_approved_package(codepipeline, sagemaker):
    cp, stub = codepipeline
    sm, calls = sagemaker
    expect_success(stub, f"Registered model package {ARN}/1 (Approved) in group '{GROUP}' "
                         f"for execution {EXECUTION}", f"{ARN}/1")
    result = invoke(cp, sm)

    assert result["variables"] == {"ModelPackageArn": f"{ARN}/1"}
    assert [name for name, _ in calls] == ["DescribeModelPackageGroup", "ListModelPackages",
                                           "CreateModelPackage"]
    assert calls[1][1] == {"ModelPackageGroupName": GROUP, "SortBy": "CreationTime",
                           "SortOrder": "Descending", "MaxResults": 50}
    assert calls[2][1] == expected_request()
    package = sm.describe_model_package(ModelPackageName=f"{ARN}/1")
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["CustomerMetadataProperties"]["ExecutionId"] == EXECUTION
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == EVALUATION


def test_client_token_is_stable_per_execution_and_valid():
    import re

    token = client_token(GROUP, EXECUTION)
    assert token == client_token(GROUP, EXECUTION) != client_token(GROUP, "another-execution")
    assert re.fullmatch(r"[a-zA-Z0-9-]{1,36}", token)


def test_optional_keys_can_be_left_out_or_given(codepipeline, sagemaker):
    cp, stub = codepipeline
    sm, calls = sagemaker
    params = {k: v for k, v in PARAMS.items() if k != "source_commits"}
    expect_success(stub, ANY, f"{ARN}/1")
    invoke(cp, sm, {**params, "description": "diamonds price model, carat+cut"})
    assert calls[-1][1] == expected_request(ModelPackageDescription="diamonds price model, carat+cut",
                                            CustomerMetadataProperties={"ExecutionId": EXECUTION,
                                                                        "Decision": "APPROVED"})


def test_a_retry_finds_the_package_instead_of_registering_twice(codepipeline, sagemaker):
    cp, stub = codepipeline
    sm, calls = sagemaker
    expect_success(stub, ANY, f"{ARN}/1")
    expect_success(stub, f"Model package {ARN}/1 was already registered (Approved) for execution {EXECUTION}",
                   f"{ARN}/1")
    first = invoke(cp, sm)
    calls.clear()
    second = invoke(cp, sm)

    assert first["variables"] == second["variables"] == {"ModelPackageArn": f"{ARN}/1"}
    assert [name for name, _ in calls] == ["DescribeModelPackageGroup", "ListModelPackages",
                                           "DescribeModelPackage"]
    packages = sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    assert len(packages) == 1


def _register_other(sm, execution_id, status="Approved"):
    metadata = {"ExecutionId": execution_id} if execution_id else {"Owner": "someone"}
    return sm.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status, CustomerMetadataProperties=metadata,
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL}],
                                "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]


def test_packages_of_other_executions_are_left_alone(codepipeline, sagemaker):
    cp, stub = codepipeline
    sm, calls = sagemaker
    _register_other(sm, "an-earlier-execution")
    _register_other(sm, None)
    calls.clear()
    expect_success(stub, ANY, f"{ARN}/3")
    invoke(cp, sm)
    assert [name for name, _ in calls] == ["DescribeModelPackageGroup", "ListModelPackages",
                                           "DescribeModelPackage", "DescribeModelPackage",
                                           "CreateModelPackage"]


def test_a_rejected_candidate_of_this_execution_is_not_registered_as_approved(codepipeline, sagemaker):
    cp, stub = codepipeline
    sm, calls = sagemaker
    _register_other(sm, EXECUTION, status="Rejected")
    calls.clear()
    expect_failure(stub, "JobFailed",
                   f"model package {ARN}/1 in group '{GROUP}' for pipeline execution {EXECUTION} is "
                   "Rejected, not Approved; this execution's candidate was not approved (see the evaluation "
                   "action), so it is not registered again")
    invoke(cp, sm)
    assert "CreateModelPackage" not in [name for name, _ in calls]


def test_a_missing_group_is_a_configuration_error(codepipeline, sagemaker):
    cp, stub = codepipeline
    sm, calls = sagemaker
    expect_failure(stub, "ConfigurationError",
                   "model package group 'no-such-group' does not exist in this account and region; create it "
                   "(the pipeline stack defines it) or fix UserParameters 'model_package_group'")
    invoke(cp, sm, {**PARAMS, "model_package_group": "no-such-group"})
    assert [name for name, _ in calls] == ["DescribeModelPackageGroup"]


def test_lookup_pages_through_the_group(stubbed_sagemaker):
    sm, stub = stubbed_sagemaker  # every queued response must be asked for
    summary = {"ModelPackageArn": f"{ARN}/2", "CreationTime": 0, "ModelPackageStatus": "Completed"}
    base = {"ModelPackageGroupName": GROUP, "SortBy": "CreationTime", "SortOrder": "Descending",
            "MaxResults": 50}
    stub.add_response("list_model_packages", {"ModelPackageSummaryList": [summary], "NextToken": "t"}, base)
    stub.add_response("describe_model_package",
                      {"ModelPackageName": GROUP, "ModelPackageArn": f"{ARN}/2", "CreationTime": 0,
                       "ModelPackageStatus": "Completed", "CustomerMetadataProperties": {"x": "y"},
                       "ModelPackageStatusDetails": {"ValidationStatuses": []}},
                      {"ModelPackageName": f"{ARN}/2"})
    stub.add_response("list_model_packages", {"ModelPackageSummaryList": []}, {**base, "NextToken": "t"})
    assert find_package(sm, GROUP, EXECUTION) is None


def test_aws_errors_are_mapped_at_the_boundary(codepipeline, stubbed_sagemaker):
    cp, stub = codepipeline
    sm, sm_stub = stubbed_sagemaker
    sm_stub.add_client_error("describe_model_package_group", "AccessDeniedException", "not authorized",
                             expected_params={"ModelPackageGroupName": GROUP})
    expect_failure(stub, "PermissionError", "DescribeModelPackageGroup was denied: not authorized "
                                            "(AccessDeniedException); check the function's role")
    invoke(cp, sm)


LONG = "x" * 1025
BAD_PARAMETERS = [
    ("missing-key", {k: v for k, v in PARAMS.items() if k != "image_uri"},
     "UserParameters is missing required key 'image_uri'"),
    ("unknown-key", {**PARAMS, "approval": "Approved"},
     "UserParameters has unknown key(s) ['approval']; allowed: ['description', 'evaluation_uri', "
     "'execution_id', 'image_uri', 'model_data_uri', 'model_package_group', 'source_commits']"),
    ("wrong-type", {**PARAMS, "source_commits": ["c0ffee"]},
     "UserParameters 'source_commits' must be dict, got list"),
    ("unresolved-variable", {**PARAMS, "image_uri": "#{BuildTrainingImage.ImageUri}"},
     "UserParameters 'image_uri' holds an unresolved variable #{BuildTrainingImage.ImageUri}; "
     "check the namespace and variable name"),
    ("unresolved-commit", {**PARAMS, "source_commits": {"ModelSource": "#{ModelSource.CommitId}"}},
     "UserParameters 'source_commits' holds an unresolved variable #{ModelSource.CommitId}; "
     "check the namespace and variable name"),
    ("bad-group-name", {**PARAMS, "model_package_group": "mlops_diamonds"},
     "UserParameters 'model_package_group' 'mlops_diamonds' is not a model package group name "
     "(letters, digits, hyphens; at most 63) or group ARN"),
    ("model-not-s3", {**PARAMS, "model_data_uri": "/opt/ml/model.tar.gz"},
     "UserParameters 'model_data_uri' must be an s3:// URI, got '/opt/ml/model.tar.gz'"),
    ("evaluation-not-s3", {**PARAMS, "evaluation_uri": "evaluation.json"},
     "UserParameters 'evaluation_uri' must be an s3:// URI, got 'evaluation.json'"),
    ("empty-image", {**PARAMS, "image_uri": " "},
     "UserParameters 'image_uri' is empty; pass the built image URI"),
    ("commit-not-text", {**PARAMS, "source_commits": {"ModelSource": 7}},
     "UserParameters 'source_commits' value for 'ModelSource' must be str, got int"),
    ("commit-bad-characters", {**PARAMS, "source_commits": {"Model Source!": "c0ffee"}},
     "UserParameters source_commits key 'Model Source!' 'Commit.Model Source!' cannot be model package "
     "metadata: 1-128 characters of letters, digits, spaces and _.:/=+-@"),
    ("too-many-commits", {**PARAMS, "source_commits": {f"S{i}": "c" for i in range(49)}},
     "UserParameters 'source_commits' has 49 entries; at most 48 fit in the model package metadata"),
    ("description-too-long", {**PARAMS, "description": LONG},
     "UserParameters 'description' is 1025 characters (SageMaker allows 1024)"),
    ("execution-id-empty", {**PARAMS, "execution_id": ""},
     "UserParameters execution_id '' cannot be model package metadata: 1-256 characters of letters, digits, "
     "spaces and _.:/=+-@"),
]


@pytest.mark.parametrize("params, message", [c[1:] for c in BAD_PARAMETERS],
                         ids=[c[0] for c in BAD_PARAMETERS])
def test_bad_user_parameters_fail_before_any_aws_call(codepipeline, stubbed_sagemaker, params, message):
    cp, stub = codepipeline
    sm, _ = stubbed_sagemaker  # no responses queued: any SageMaker call would fail the action differently
    expect_failure(stub, "ConfigurationError", message)
    invoke(cp, sm, params)


def test_logs_name_the_job_and_never_the_credentials(codepipeline, sagemaker, caplog):
    cp, stub = codepipeline
    sm, _ = sagemaker
    caplog.set_level(logging.DEBUG)
    expect_success(stub, ANY, f"{ARN}/1")
    expect_success(stub, ANY, f"{ARN}/1")
    expect_failure(stub, "ConfigurationError", ANY)
    invoke(cp, sm)
    invoke(cp, sm)
    invoke(cp, sm, {**PARAMS, "model_package_group": "no-such-group"})
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert JOB_ID in logged and f"{ARN}/1" in logged
    assert all(JOB_ID in r.getMessage() for r in caplog.records if r.name.startswith("lambdas"))
    assert not any(secret in logged for secret in SECRETS)
