"""PromoteModel: the package a person approved becomes Approved (the next champion); a retry finds it
Approved; a package the gate or anyone rejected, another execution's or a missing one is never promoted."""
from __future__ import annotations

import logging

import boto3
import pytest
from botocore.stub import ANY
from moto import mock_aws
from moto.sagemaker.models import SageMakerModelBackend

from lambdas.job import run_job
from lambdas.promote import promote

from tests.lambdas.pipeline_stubs import JOB_ID, expect_failure
from tests.conftest import SECRETS, load_event

EXECUTION = "2d6b0c50-6f3a-4d8e-9f1a-1234567890ab"
GROUP = "mlops-models"
ARN = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-training:c0ffee0"
ACTION = "Approval/ApproveForProd"
PARAMS = {"model_package_arn": f"{ARN}/1", "execution_id": EXECUTION, "approved_by_action": ACTION}
GATE = {"ExecutionId": EXECUTION, "Decision": "APPROVED", "Rmse": "512.25", "DecisionReason": "RMSE 512.25 within 600"}
DESCRIPTION = (f"Approved for production by a person at the manual approval action {ACTION} of pipeline "
               f"execution {EXECUTION}")


@pytest.fixture
def sagemaker(monkeypatch):
    """moto SageMaker with the group, and the (operation, params) the worker sent.

    UpdateModelPackage in moto 5 replaces CustomerMetadataProperties with the request's (None when left
    out); SageMaker keeps the keys an update leaves out (CustomerMetadataPropertiesToRemove removes
    them), so the fixture gives moto that behaviour: a retry then sees the gate record as on AWS."""
    original = SageMakerModelBackend.update_model_package

    def keeping_metadata(self, model_package_arn, customer_metadata_properties=None, **rest):
        package = self.model_packages.get(self.model_package_name_mapping.get(model_package_arn, model_package_arn))
        if package is not None:
            customer_metadata_properties = {**(package.customer_metadata_properties or {}),
                                            **(customer_metadata_properties or {})}
        return original(self, model_package_arn=model_package_arn,
                        customer_metadata_properties=customer_metadata_properties, **rest)

    monkeypatch.setattr(SageMakerModelBackend, "update_model_package", keeping_metadata)
    with mock_aws():
        client = boto3.client("sagemaker", region_name="us-east-1")
        client.create_model_package_group(ModelPackageGroupName=GROUP)
        calls: list[tuple[str, dict]] = []
        client.meta.events.register("provide-client-params",
                                    lambda params, model, **_: calls.append((model.name, dict(params))))
        yield client, calls


def register(sm, status="PendingManualApproval", metadata=GATE):
    """A package as RegisterModel (or the evaluation monitor) leaves it."""
    extra = {"CustomerMetadataProperties": dict(metadata)} if metadata else {}
    return sm.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/models/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        **extra)["ModelPackageArn"]


def expect_success(stub, summary, arn=f"{ARN}/1"):
    stub.add_response("put_job_success_result", {}, {
        "jobId": JOB_ID, "executionDetails": {"summary": summary},
        "outputVariables": {"ModelPackageArn": arn, "ApprovalStatus": "Approved"}})


def invoke(codepipeline_client, sagemaker_client, params=PARAMS):
    return run_job(load_event(user_parameters=params), lambda job: promote(job, sagemaker=sagemaker_client),
                   codepipeline_client)


def approved_packages(sm):
    """What SubmitEvaluation's champion lookup sees: the group's Approved packages, newest first."""
    found = sm.list_model_packages(ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved",
                                   SortBy="CreationTime", SortOrder="Descending")
    return [summary["ModelPackageArn"] for summary in found["ModelPackageSummaryList"]]


def test_a_pending_package_becomes_approved_and_the_champion(codepipeline, sagemaker):
    cp, stub = codepipeline
    sm, calls = sagemaker
    champion = register(sm, "Approved", {**GATE, "ExecutionId": "an-earlier-execution"})
    arn = register(sm)
    assert approved_packages(sm) == [champion]  # the pending package is not the champion
    calls.clear()
    expect_success(stub, f"Approved model package {arn} (was PendingManualApproval) for execution {EXECUTION}", arn)
    result = invoke(cp, sm, {**PARAMS, "model_package_arn": arn})

    assert result["variables"] == {"ModelPackageArn": arn, "ApprovalStatus": "Approved"}
    assert calls == [("DescribeModelPackage", {"ModelPackageName": arn}),
                     ("UpdateModelPackage", {"ModelPackageArn": arn, "ModelApprovalStatus": "Approved",
                                             "ApprovalDescription": DESCRIPTION})]
    package = sm.describe_model_package(ModelPackageName=arn)
    assert (package["ModelApprovalStatus"], package["ApprovalDescription"]) == ("Approved", DESCRIPTION)
    assert package["CustomerMetadataProperties"] == GATE  # the gate's record stays beside the person's decision
    assert approved_packages(sm) == [arn, champion]


def test_without_the_action_name_the_description_still_names_the_execution(codepipeline, sagemaker):
    cp, stub = codepipeline
    sm, calls = sagemaker
    register(sm)
    expect_success(stub, ANY)
    invoke(cp, sm, {k: v for k, v in PARAMS.items() if k != "approved_by_action"})
    assert sm.describe_model_package(ModelPackageName=f"{ARN}/1")["ApprovalDescription"] == (
        f"Approved for production by a person at the manual approval of pipeline execution {EXECUTION}")


def test_a_retry_finds_the_package_approved_and_changes_nothing(codepipeline, sagemaker):
    cp, stub = codepipeline
    sm, calls = sagemaker
    register(sm)
    expect_success(stub, ANY)
    expect_success(stub, f"Model package {ARN}/1 was already Approved for execution {EXECUTION}")
    first = invoke(cp, sm)
    calls.clear()
    second = invoke(cp, sm)

    assert first["variables"] == second["variables"] == {"ModelPackageArn": f"{ARN}/1", "ApprovalStatus": "Approved"}
    assert [name for name, _ in calls] == ["DescribeModelPackage"]
    assert sm.describe_model_package(ModelPackageName=f"{ARN}/1")["ApprovalDescription"] == DESCRIPTION


STATE = f"model package {ARN}/1 is {{status}}, the evaluation gate's Decision is {{decision}}"
REFUSED = [
    ("rejected-in-the-registry", "Rejected", GATE,
     STATE.format(status="Rejected", decision="APPROVED") + ": a Rejected package is never promoted (someone "
     "rejected it in the model registry after it was registered); register a new candidate with a new pipeline run"),
    ("gate-rejected", "Rejected", {**GATE, "Decision": "REJECTED"},
     STATE.format(status="Rejected", decision="REJECTED") + ": only a candidate the gate APPROVED is promoted; the "
     "package's CustomerMetadataProperties hold the gate's record"),
    ("gate-record-missing", "PendingManualApproval", {"ExecutionId": EXECUTION},
     STATE.format(status="PendingManualApproval", decision="not recorded") + ": only a candidate the gate APPROVED "
     "is promoted; the package's CustomerMetadataProperties hold the gate's record"),
    ("approved-without-gate-record", "Approved", None,
     STATE.format(status="Approved", decision="not recorded") + ": only a candidate the gate APPROVED is promoted; "
     "the package's CustomerMetadataProperties hold the gate's record"),
    ("another-executions-package", "PendingManualApproval", {**GATE, "ExecutionId": "an-earlier-execution"},
     STATE.format(status="PendingManualApproval", decision="APPROVED") + ", but it was registered by pipeline "
     f"execution an-earlier-execution, not {EXECUTION}: the person approved this execution's candidate, so pass "
     "this execution's #{Registry.ModelPackageArn}"),
]


@pytest.mark.parametrize("status, metadata, message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refuses_what_may_not_be_promoted(codepipeline, sagemaker, status, metadata, message):
    cp, stub = codepipeline
    sm, calls = sagemaker
    register(sm, status, metadata)
    calls.clear()
    expect_failure(stub, "JobFailed", message)
    invoke(cp, sm)
    assert [name for name, _ in calls] == ["DescribeModelPackage"]  # nothing changed
    assert sm.describe_model_package(ModelPackageName=f"{ARN}/1")["ModelApprovalStatus"] == status


def test_a_missing_package_fails_the_action(codepipeline, sagemaker):
    cp, stub = codepipeline
    sm, calls = sagemaker
    expect_failure(stub, "JobFailed", f"model package {ARN}/1 does not exist (Model package {ARN}/1 not found); "
                                      "RegisterModel of this execution registers it, so check its output variable "
                                      "ModelPackageArn and whether someone deleted the package")
    invoke(cp, sm)
    assert [name for name, _ in calls] == ["DescribeModelPackage"]


@pytest.mark.parametrize("state", ["Failed", "Deleting"])
def test_a_package_sagemaker_did_not_complete_is_not_promoted(codepipeline, stubbed_sagemaker, state):
    cp, stub = codepipeline
    sm, sm_stub = stubbed_sagemaker
    sm_stub.add_response("describe_model_package", {
        "ModelPackageName": GROUP, "ModelPackageArn": f"{ARN}/1", "CreationTime": 0, "ModelPackageStatus": state,
        "ModelApprovalStatus": "PendingManualApproval", "CustomerMetadataProperties": GATE,
        "ModelPackageStatusDetails": {"ValidationStatuses": []}}, {"ModelPackageName": f"{ARN}/1"})
    expect_failure(stub, "JobFailed", STATE.format(status="PendingManualApproval", decision="APPROVED")
                   + f", but its ModelPackageStatus is {state}, not Completed; a package SageMaker did not "
                   "complete is not promoted")
    invoke(cp, sm)


def test_aws_errors_are_mapped_at_the_boundary(codepipeline, stubbed_sagemaker):
    cp, stub = codepipeline
    sm, sm_stub = stubbed_sagemaker
    sm_stub.add_response("describe_model_package", {
        "ModelPackageName": GROUP, "ModelPackageArn": f"{ARN}/1", "CreationTime": 0,
        "ModelPackageStatus": "Completed", "ModelApprovalStatus": "PendingManualApproval",
        "CustomerMetadataProperties": GATE, "ModelPackageStatusDetails": {"ValidationStatuses": []}},
        {"ModelPackageName": f"{ARN}/1"})
    sm_stub.add_client_error("update_model_package", "AccessDeniedException", "not authorized",
                             expected_params={"ModelPackageArn": f"{ARN}/1", "ModelApprovalStatus": "Approved",
                                              "ApprovalDescription": DESCRIPTION})
    expect_failure(stub, "PermissionError", "UpdateModelPackage was denied: not authorized "
                                            "(AccessDeniedException); check the function's role")
    invoke(cp, sm)


BAD_ARN = ("UserParameters 'model_package_arn' {!r} is not a model package ARN "
           "(arn:<partition>:sagemaker:<region>:<account>:model-package/<group>/<version>); "
           "pass #{{Registry.ModelPackageArn}}")
ACTION_RULE = "must be one line of 1-200 characters, e.g. \"Approval/ApproveForProd\""
BAD_PARAMETERS = [
    ("missing-arn", {k: v for k, v in PARAMS.items() if k != "model_package_arn"},
     "UserParameters is missing required key 'model_package_arn'"),
    ("missing-execution", {k: v for k, v in PARAMS.items() if k != "execution_id"},
     "UserParameters is missing required key 'execution_id'"),
    ("unknown-key", {**PARAMS, "status": "Approved"},
     "UserParameters has unknown key(s) ['status']; allowed: ['approved_by_action', 'execution_id', "
     "'model_package_arn']"),
    ("unresolved-arn", {**PARAMS, "model_package_arn": "#{Registry.ModelPackageArn}"},
     "UserParameters 'model_package_arn' holds an unresolved variable #{Registry.ModelPackageArn}; "
     "check the namespace and variable name"),
    ("group-name-not-arn", {**PARAMS, "model_package_arn": GROUP}, BAD_ARN.format(GROUP)),
    ("group-arn-not-package", {**PARAMS, "model_package_arn": ARN.replace("model-package/", "model-package-group/")},
     BAD_ARN.format(ARN.replace("model-package/", "model-package-group/"))),
    ("arn-not-text", {**PARAMS, "model_package_arn": 1}, "UserParameters 'model_package_arn' must be str, got int"),
    ("execution-empty", {**PARAMS, "execution_id": " "},
     "UserParameters 'execution_id' is empty; pass #{codepipeline.PipelineExecutionId}"),
    ("action-two-lines", {**PARAMS, "approved_by_action": "Approval/\nApproveForProd"},
     f"UserParameters 'approved_by_action' 'Approval/\\nApproveForProd' {ACTION_RULE}"),
    ("action-empty", {**PARAMS, "approved_by_action": ""}, f"UserParameters 'approved_by_action' '' {ACTION_RULE}"),
    ("action-too-long", {**PARAMS, "approved_by_action": "A" * 201},
     f"UserParameters 'approved_by_action' {'A' * 100!r} {ACTION_RULE}"),
    ("execution-too-long", {**PARAMS, "execution_id": "e" * 1000},
     f"UserParameters 'execution_id' {'e' * 100!r} makes an ApprovalDescription SageMaker refuses (one line, "
     "at most 1024 characters)"),
]


@pytest.mark.parametrize("params, message", [c[1:] for c in BAD_PARAMETERS], ids=[c[0] for c in BAD_PARAMETERS])
def test_bad_user_parameters_fail_before_any_aws_call(codepipeline, stubbed_sagemaker, params, message):
    cp, stub = codepipeline
    sm, _ = stubbed_sagemaker  # no responses queued: any SageMaker call would fail the action differently
    expect_failure(stub, "ConfigurationError", message)
    invoke(cp, sm, params)


def test_logs_name_the_job_and_never_the_credentials(codepipeline, sagemaker, caplog):
    cp, stub = codepipeline
    sm, _ = sagemaker
    register(sm)
    caplog.set_level(logging.DEBUG)
    expect_success(stub, ANY)
    expect_success(stub, ANY)
    invoke(cp, sm)
    invoke(cp, sm)
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert JOB_ID in logged and f"{ARN}/1" in logged and DESCRIPTION in logged
    assert all(JOB_ID in r.getMessage() for r in caplog.records if r.name.startswith("lambdas"))
    assert not any(secret in logged for secret in SECRETS)
