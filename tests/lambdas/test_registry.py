"""RegisterModel: one package per execution, PendingManualApproval until a person approves (PromoteModel),
found again on a retry, set-up mistakes named; what the package references is copied out of the expiring
runs/ prefix and its image tagged to be kept."""
from __future__ import annotations

import json
import logging

import boto3
import pytest
from botocore.stub import ANY
from moto import mock_aws

from lambdas.registry import (
    REALTIME_INSTANCE_TYPES, TRANSFORM_INSTANCE_TYPES, client_token, find_package, protect, protection_plan, register)
from lambdas.job import JobEvent, run_job

from tests.lambdas.pipeline_stubs import JOB_ID, expect_failure
from tests.conftest import SECRETS, load_event

EXECUTION = "2d6b0c50-6f3a-4d8e-9f1a-1234567890ab"
GROUP = "mlops-diamonds"
ARN = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}"
BUCKET = "mlops-data"
REPOSITORY = "mlops-training"
IMAGE = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{REPOSITORY}:c0ffee0"
MODEL = f"s3://{BUCKET}/runs/{EXECUTION}/training/job/output/model.tar.gz"
EVALUATION = f"s3://{BUCKET}/runs/{EXECUTION}/evaluation/evaluation.json"
KEPT_MODEL = f"s3://{BUCKET}/models/{GROUP}/{EXECUTION}/model.tar.gz"
KEPT_EVALUATION = f"s3://{BUCKET}/models/{GROUP}/{EXECUTION}/evaluation.json"
KEPT_TAG = f"approved-{EXECUTION}"
COMMITS = {"ModelSource": "c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffe",
           "EtlSource": "beefbeefbeefbeefbeefbeefbeefbeefbeefbeef"}
PARAMS = {"execution_id": EXECUTION, "model_package_group": GROUP, "image_uri": IMAGE,
          "model_data_uri": MODEL, "evaluation_uri": EVALUATION, "source_commits": COMMITS}
NEW_REGISTRATION = ["DescribeModelPackageGroup", "ListModelPackages", "CopyObject", "CopyObject",
                    "BatchGetImage", "PutImage", "CreateModelPackage"]


def manifest(layer: str) -> str:
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7,
                                  "digest": "sha256:" + "c" * 64},
                       "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 9,
                                   "digest": "sha256:" + layer * 64}]})


class Aws:
    """moto SageMaker (with the group), S3 (the data bucket, SSE-KMS by default, the run's outputs) and
    ECR (the image, tags immutable); `calls` lists the operations the worker sent, in order."""

    def __init__(self) -> None:
        self.sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        self.s3 = boto3.client("s3", region_name="us-east-1")
        self.ecr = boto3.client("ecr", region_name="us-east-1")
        self.sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        self.key = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        self.s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": self.key}}]})
        for uri, body in ((MODEL, b"model bytes"), (EVALUATION, b'{"regression_metrics": {}}')):
            self.s3.put_object(Bucket=BUCKET, Key=uri.split("/", 3)[3], Body=body)
        self.ecr.create_repository(repositoryName=REPOSITORY, imageTagMutability="IMMUTABLE")
        self.digest = self.ecr.put_image(repositoryName=REPOSITORY, imageManifest=manifest("a"),
                                         imageTag="c0ffee0")["image"]["imageId"]["imageDigest"]
        self.calls: list[tuple[str, dict]] = []
        for service in (self.sagemaker, self.s3, self.ecr):
            service.meta.events.register("provide-client-params",
                                         lambda params, model, **_: self.calls.append((model.name, dict(params))))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def request(self, operation: str) -> dict:
        (params,) = [params for name, params in self.calls if name == operation]
        return params

    def body(self, uri: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=BUCKET, Key=uri.split("/", 3)[3])["Body"].read())

    def tags(self, digest: str | None = None) -> list[str]:
        details = self.ecr.describe_images(repositoryName=REPOSITORY)["imageDetails"]
        return sorted(tag for d in details if d["imageDigest"] == (digest or self.digest) for tag in d["imageTags"])


@pytest.fixture
def aws():
    with mock_aws():
        yield Aws()


@pytest.fixture
def sagemaker(aws):
    """The moto SageMaker client, and the list of (operation, params) sent to any of the three services."""
    return aws.sagemaker, aws.calls


def expect_success(stub, summary, arn):
    stub.add_response("put_job_success_result", {}, {
        "jobId": JOB_ID, "executionDetails": {"summary": summary},
        "outputVariables": {"ModelPackageArn": arn}})


def invoke(codepipeline_client, sagemaker_client, params=PARAMS, aws=None):
    s3, ecr = (aws.s3, aws.ecr) if aws else (None, None)
    return run_job(load_event(user_parameters=params),
                   lambda job: register(job, sagemaker=sagemaker_client, s3=s3, ecr=ecr), codepipeline_client)


def expected_request(**overrides):
    request = {
        "ModelPackageGroupName": GROUP,
        "ModelPackageDescription": f"Approved by the evaluation gate of pipeline execution {EXECUTION}",
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE, "ModelDataUrl": KEPT_MODEL}],
            "SupportedContentTypes": ["text/csv", "application/json"],
            "SupportedResponseMIMETypes": ["text/csv", "application/json"],
            "SupportedRealtimeInferenceInstanceTypes": REALTIME_INSTANCE_TYPES,
            "SupportedTransformInstanceTypes": TRANSFORM_INSTANCE_TYPES,
        },
        "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                         "S3Uri": KEPT_EVALUATION}}},
        "ModelApprovalStatus": "PendingManualApproval",
        "CustomerMetadataProperties": {"ExecutionId": EXECUTION, "Decision": "APPROVED",
                                       "Commit.EtlSource": COMMITS["EtlSource"],
                                       "Commit.ModelSource": COMMITS["ModelSource"]},
        "ClientToken": client_token(GROUP, EXECUTION),
    }
    request.update(overrides)
    return request


def test_registers_a_package_pending_the_persons_approval(codepipeline, aws):
    """The gate's verdict is the metadata's Decision; the status waits for the person (PromoteModel)."""
    cp, stub = codepipeline
    expect_success(stub, f"Registered model package {ARN}/1 (PendingManualApproval) in group '{GROUP}' "
                         f"for execution {EXECUTION}", f"{ARN}/1")
    result = invoke(cp, aws.sagemaker, aws=aws)

    assert result["variables"] == {"ModelPackageArn": f"{ARN}/1"}
    assert aws.names() == NEW_REGISTRATION
    assert aws.calls[1][1] == {"ModelPackageGroupName": GROUP, "SortBy": "CreationTime",
                               "SortOrder": "Descending", "MaxResults": 50}
    assert aws.request("CreateModelPackage") == expected_request()
    package = aws.sagemaker.describe_model_package(ModelPackageName=f"{ARN}/1")
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["CustomerMetadataProperties"]["ExecutionId"] == EXECUTION
    assert package["CustomerMetadataProperties"]["Decision"] == "APPROVED"
    # not the champion yet: SubmitEvaluation asks for the newest Approved package
    assert aws.sagemaker.list_model_packages(ModelPackageGroupName=GROUP,
                                             ModelApprovalStatus="Approved")["ModelPackageSummaryList"] == []
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == KEPT_MODEL
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == KEPT_EVALUATION


def test_the_package_references_copies_under_models_and_a_kept_image_tag(codepipeline, aws):
    cp, stub = codepipeline
    expect_success(stub, ANY, f"{ARN}/1")
    invoke(cp, aws.sagemaker, aws=aws)

    assert aws.calls[2][1] == {"Bucket": BUCKET, "Key": f"models/{GROUP}/{EXECUTION}/model.tar.gz",
                               "CopySource": {"Bucket": BUCKET, "Key": MODEL.split("/", 3)[3]}}
    assert aws.calls[3][1] == {"Bucket": BUCKET, "Key": f"models/{GROUP}/{EXECUTION}/evaluation.json",
                               "CopySource": {"Bucket": BUCKET, "Key": EVALUATION.split("/", 3)[3]}}
    tagging = aws.request("PutImage")
    assert aws.body(KEPT_MODEL) == aws.body(MODEL) == b"model bytes"
    assert aws.body(KEPT_EVALUATION) == aws.body(EVALUATION)
    kept = aws.s3.head_object(Bucket=BUCKET, Key=KEPT_MODEL.split("/", 3)[3])
    assert (kept["ServerSideEncryption"], kept["SSEKMSKeyId"]) == ("aws:kms", aws.key)  # the bucket's key
    assert (tagging["imageTag"], tagging["imageDigest"]) == (KEPT_TAG, aws.digest)  # on the served image
    assert aws.tags() == sorted(["c0ffee0", KEPT_TAG])


def test_client_token_is_stable_per_execution_and_valid():
    import re

    token = client_token(GROUP, EXECUTION)
    assert token == client_token(GROUP, EXECUTION) != client_token(GROUP, "another-execution")
    assert re.fullmatch(r"[a-zA-Z0-9-]{1,36}", token)


def test_optional_keys_can_be_left_out_or_given(codepipeline, aws):
    cp, stub = codepipeline
    calls = aws.calls
    params = {k: v for k, v in PARAMS.items() if k != "source_commits"}
    expect_success(stub, ANY, f"{ARN}/1")
    invoke(cp, aws.sagemaker, {**params, "description": "diamonds price model, carat+cut"}, aws=aws)
    assert calls[-1][1] == expected_request(ModelPackageDescription="diamonds price model, carat+cut",
                                            CustomerMetadataProperties={"ExecutionId": EXECUTION,
                                                                        "Decision": "APPROVED"})


GATE = {"Rmse": "512.25", "Threshold": "600", "TolerancePercent": "2",
        "ChampionModelPackageArn": f"{ARN}/3", "ChampionRmse": "530.5",
        "DecisionReason": f"RMSE 512.25 is within threshold 600 champion {ARN}/3 RMSE 530.50 plus tolerance 2 "
                          "percent allows at most 541.11"}


def test_the_gate_record_goes_into_the_package_metadata(codepipeline, aws):
    """Both scores, the decision and its reason, as MonitorEvaluation exported them."""
    cp, stub = codepipeline
    expect_success(stub, ANY, f"{ARN}/1")
    invoke(cp, aws.sagemaker, {**PARAMS, "gate": GATE}, aws=aws)
    recorded = aws.sagemaker.describe_model_package(ModelPackageName=f"{ARN}/1")["CustomerMetadataProperties"]
    assert recorded == {**GATE, "ExecutionId": EXECUTION, "Decision": "APPROVED",
                        "Commit.EtlSource": COMMITS["EtlSource"], "Commit.ModelSource": COMMITS["ModelSource"]}


def test_a_retry_finds_the_package_instead_of_registering_twice(codepipeline, aws):
    cp, stub = codepipeline
    expect_success(stub, ANY, f"{ARN}/1")
    expect_success(stub, f"Model package {ARN}/1 was already registered (PendingManualApproval) for execution "
                         f"{EXECUTION}", f"{ARN}/1")
    first = invoke(cp, aws.sagemaker, aws=aws)
    aws.calls.clear()
    second = invoke(cp, aws.sagemaker, aws=aws)

    assert first["variables"] == second["variables"] == {"ModelPackageArn": f"{ARN}/1"}
    assert aws.names() == ["DescribeModelPackageGroup", "ListModelPackages", "DescribeModelPackage"]
    packages = aws.sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    assert len(packages) == 1


@pytest.mark.parametrize("status", ["PendingManualApproval", "Approved"], ids=["pending", "approved"])
def test_approval_status_is_a_parameter(codepipeline, aws, status):
    cp, stub = codepipeline
    expect_success(stub, f"Registered model package {ARN}/1 ({status}) in group '{GROUP}' for execution {EXECUTION}",
                   f"{ARN}/1")
    invoke(cp, aws.sagemaker, {**PARAMS, "approval_status": status}, aws=aws)
    assert aws.request("CreateModelPackage") == expected_request(ModelApprovalStatus=status)
    assert aws.sagemaker.describe_model_package(ModelPackageName=f"{ARN}/1")["ModelApprovalStatus"] == status


def test_a_retry_after_promotion_finds_the_approved_package(codepipeline, aws):
    """A retry of RegisterModel (a rerun of the Deployment stage) after PromoteModel approved the package."""
    cp, stub = codepipeline
    expect_success(stub, ANY, f"{ARN}/1")
    expect_success(stub, f"Model package {ARN}/1 was already registered (Approved) for execution {EXECUTION}",
                   f"{ARN}/1")
    invoke(cp, aws.sagemaker, aws=aws)
    kept = aws.sagemaker.describe_model_package(ModelPackageName=f"{ARN}/1")["CustomerMetadataProperties"]
    # SageMaker keeps the metadata an update leaves out; moto 5 drops it, so it is passed back here
    aws.sagemaker.update_model_package(ModelPackageArn=f"{ARN}/1", ModelApprovalStatus="Approved",
                                       CustomerMetadataProperties=kept)
    aws.calls.clear()
    invoke(cp, aws.sagemaker, aws=aws)
    assert "CreateModelPackage" not in aws.names()
    assert len(aws.sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]) == 1


def test_a_retry_after_copying_and_tagging_completes_the_registration(codepipeline, aws):
    """An attempt that copied and tagged, then ended before CreateModelPackage: the retry redoes both
    without failing on the tag it finds, and registers the copies."""
    cp, stub = codepipeline
    job = JobEvent.from_event(load_event(user_parameters=PARAMS))
    protect(job, protection_plan(PARAMS), s3=aws.s3, ecr=aws.ecr)
    aws.calls.clear()
    expect_success(stub, ANY, f"{ARN}/1")
    invoke(cp, aws.sagemaker, aws=aws)

    # the tag is there already: PutImage says so, and DescribeImages shows it is on the registered image
    assert aws.names() == [*NEW_REGISTRATION[:-1], "DescribeImages", "CreateModelPackage"]
    assert aws.request("CreateModelPackage") == expected_request()
    assert aws.tags() == sorted(["c0ffee0", KEPT_TAG])
    assert aws.body(KEPT_MODEL) == b"model bytes"


def test_an_image_named_by_digest_is_tagged(codepipeline, aws):
    cp, stub = codepipeline
    image = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{REPOSITORY}@{aws.digest}"
    expect_success(stub, ANY, f"{ARN}/1")
    invoke(cp, aws.sagemaker, {**PARAMS, "image_uri": image}, aws=aws)
    assert aws.request("BatchGetImage")["imageIds"] == [{"imageDigest": aws.digest}]
    assert aws.request("CreateModelPackage")["InferenceSpecification"]["Containers"][0]["Image"] == image
    assert aws.tags() == sorted(["c0ffee0", KEPT_TAG])


def test_a_missing_image_fails_before_anything_is_registered(codepipeline, aws):
    cp, stub = codepipeline
    expect_failure(stub, "JobFailed", "image {'imageTag': 'deadbee'} is not in ECR repository mlops-training "
                                      "(ImageNotFound: Requested image not found); the build pushes it before "
                                      "training, so check the Build stage and the repository")
    invoke(cp, aws.sagemaker, {**PARAMS, "image_uri": IMAGE.replace("c0ffee0", "deadbee")}, aws=aws)
    assert "CreateModelPackage" not in aws.names()


def test_the_kept_tag_on_another_image_fails_the_action(codepipeline, aws):
    """Tags are immutable: a stray approved-<execution> on another image cannot be moved, and the
    registered image would not be kept."""
    cp, stub = codepipeline
    other = aws.ecr.put_image(repositoryName=REPOSITORY, imageManifest=manifest("b"),
                              imageTag=KEPT_TAG)["image"]["imageId"]["imageDigest"]
    assert other != aws.digest
    expect_failure(stub, "JobFailed", f"tag {KEPT_TAG} in ECR repository {REPOSITORY} names image {other}, not "
                                      f"the registered image {aws.digest}; tags there are immutable, so remove "
                                      "the stray tag and retry")
    invoke(cp, aws.sagemaker, aws=aws)
    assert "CreateModelPackage" not in aws.names()


def test_a_missing_run_output_fails_before_anything_is_registered(codepipeline, aws):
    cp, stub = codepipeline
    aws.s3.delete_object(Bucket=BUCKET, Key=EVALUATION.split("/", 3)[3])
    expect_failure(stub, "JobFailed", ANY)
    result = invoke(cp, aws.sagemaker, aws=aws)
    assert result["message"].startswith("CopyObject failed:")
    assert "CreateModelPackage" not in aws.names()


def _register_other(sm, execution_id, status="Approved"):
    metadata = {"ExecutionId": execution_id} if execution_id else {"Owner": "someone"}
    return sm.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status, CustomerMetadataProperties=metadata,
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL}],
                                "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]


def test_packages_of_other_executions_are_left_alone(codepipeline, aws):
    cp, stub = codepipeline
    _register_other(aws.sagemaker, "an-earlier-execution")
    _register_other(aws.sagemaker, None)
    aws.calls.clear()
    expect_success(stub, ANY, f"{ARN}/3")
    invoke(cp, aws.sagemaker, aws=aws)
    assert aws.names() == ["DescribeModelPackageGroup", "ListModelPackages", "DescribeModelPackage",
                           "DescribeModelPackage", *NEW_REGISTRATION[2:]]


def test_a_rejected_candidate_of_this_execution_is_not_registered_as_approved(codepipeline, aws):
    cp, stub = codepipeline
    sm, calls = aws.sagemaker, aws.calls
    _register_other(sm, EXECUTION, status="Rejected")
    calls.clear()
    expect_failure(stub, "JobFailed",
                   f"model package {ARN}/1 in group '{GROUP}' for pipeline execution {EXECUTION} is "
                   "Rejected, not PendingManualApproval or Approved; this execution's candidate was not approved "
                   "(see the evaluation action), so it is not registered again")
    invoke(cp, sm, aws=aws)
    assert not {"CreateModelPackage", "CopyObject", "PutImage"} & set(aws.names())  # a Rejected one is not kept


def test_a_missing_group_is_a_configuration_error(codepipeline, aws):
    cp, stub = codepipeline
    sm, calls = aws.sagemaker, aws.calls
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
     "UserParameters has unknown key(s) ['approval']; allowed: ['approval_status', 'description', 'evaluation_uri', "
     "'execution_id', 'gate', 'image_uri', 'model_data_uri', 'model_package_group', 'source_commits']"),
    ("approval-status-rejected", {**PARAMS, "approval_status": "Rejected"},
     "UserParameters 'approval_status' 'Rejected' is not one of ['PendingManualApproval', 'Approved']; "
     "PendingManualApproval leaves the decision to a person (PromoteModel approves), Rejected candidates are "
     "registered by the evaluation action"),
    ("approval-status-wrong-case", {**PARAMS, "approval_status": "approved"},
     "UserParameters 'approval_status' 'approved' is not one of ['PendingManualApproval', 'Approved']; "
     "PendingManualApproval leaves the decision to a person (PromoteModel approves), Rejected candidates are "
     "registered by the evaluation action"),
    ("approval-status-not-text", {**PARAMS, "approval_status": True},
     "UserParameters 'approval_status' must be str, got bool"),
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
    ("image-not-in-ecr", {**PARAMS, "image_uri": "tensorflow/serving:2.16"},
     "UserParameters 'image_uri' 'tensorflow/serving:2.16' is not an image in a private ECR repository "
     "(<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> or @sha256:<digest>); the registry tags the "
     "image it registers so that the repository's lifecycle policy keeps it"),
    ("model-is-a-prefix", {**PARAMS, "model_data_uri": f"s3://{BUCKET}/runs/{EXECUTION}/training/"},
     f"UserParameters 'model_data_uri' 's3://{BUCKET}/runs/{EXECUTION}/training/' names no object; pass the "
     "s3:// URI of the file"),
    ("commit-not-text", {**PARAMS, "source_commits": {"ModelSource": 7}},
     "UserParameters 'source_commits' value for 'ModelSource' must be str, got int"),
    ("commit-bad-characters", {**PARAMS, "source_commits": {"Model Source!": "c0ffee"}},
     "UserParameters source_commits key 'Model Source!' 'Commit.Model Source!' cannot be model package "
     "metadata: 1-128 characters of letters, digits, spaces and _.:/=+-@"),
    ("too-many-commits", {**PARAMS, "source_commits": {f"S{i}": "c" for i in range(49)}},
     "UserParameters 'source_commits' has 49 entries; at most 48 fit in the model package metadata"),
    ("description-too-long", {**PARAMS, "description": LONG},
     "UserParameters 'description' is 1025 characters (SageMaker allows 1024)"),
    ("gate-unknown-key", {**PARAMS, "gate": {"Decision": "REJECTED"}},
     "UserParameters 'gate' has unknown key(s) ['Decision']; allowed: ['Rmse', 'Threshold', 'TolerancePercent', "
     "'ChampionModelPackageArn', 'ChampionRmse', 'DecisionReason']"),
    ("gate-not-metadata", {**PARAMS, "gate": {"DecisionReason": "RMSE 1 <= 2"}},
     "UserParameters gate['DecisionReason'] 'RMSE 1 <= 2' cannot be model package metadata: 1-256 characters of "
     "letters, digits, spaces and _.:/=+-@"),
    ("execution-id-empty", {**PARAMS, "execution_id": ""},
     "UserParameters 'execution_id' '' has no usable characters"),
]


@pytest.mark.parametrize("params, message", [c[1:] for c in BAD_PARAMETERS],
                         ids=[c[0] for c in BAD_PARAMETERS])
def test_bad_user_parameters_fail_before_any_aws_call(codepipeline, stubbed_sagemaker, params, message):
    cp, stub = codepipeline
    sm, _ = stubbed_sagemaker  # no responses queued: any SageMaker call would fail the action differently
    expect_failure(stub, "ConfigurationError", message)
    invoke(cp, sm, params)


def test_logs_name_the_job_and_never_the_credentials(codepipeline, aws, caplog):
    cp, stub = codepipeline
    sm = aws.sagemaker
    caplog.set_level(logging.DEBUG)
    expect_success(stub, ANY, f"{ARN}/1")
    expect_success(stub, ANY, f"{ARN}/1")
    expect_failure(stub, "ConfigurationError", ANY)
    invoke(cp, sm, aws=aws)
    invoke(cp, sm, aws=aws)
    invoke(cp, sm, {**PARAMS, "model_package_group": "no-such-group"}, aws=aws)
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert JOB_ID in logged and f"{ARN}/1" in logged and KEPT_MODEL in logged and KEPT_TAG in logged
    assert all(JOB_ID in r.getMessage() for r in caplog.records if r.name.startswith("lambdas"))
    assert not any(secret in logged for secret in SECRETS)
