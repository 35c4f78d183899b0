"""SubmitEvaluation / MonitorEvaluation: one processing job per execution, then APPROVED or REJECTED."""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import ANY
from moto import mock_aws

from lambdas import evaluation
from lambdas.job import run_job

from tests.lambdas.pipeline_stubs import JOB_ID, expect_failure, expect_success, now_minus, record_requests, without
from tests.conftest import SECRETS, load_event

EXECUTION = "2d6b0c50-6f3a-4d8e-9f1a-1234567890ab"
NAME = f"mlops-diamonds-evaluate-{EXECUTION}"
RUN = f"s3://mlops-data/runs/{EXECUTION}"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-diamonds-training:c0ffee0"
ROLE = "arn:aws:iam::123456789012:role/mlops-diamonds-sagemaker"
MODEL = f"{RUN}/training/mlops-diamonds-train-{EXECUTION}/output/model.tar.gz"
EVALUATION = f"{RUN}/evaluation/evaluation.json"
EVALUATION_KEY = f"runs/{EXECUTION}/evaluation/evaluation.json"
GROUP = "mlops-diamonds"
SUBMIT = {"execution_id": EXECUTION, "name_prefix": "mlops-diamonds", "image_uri": IMAGE, "role_arn": ROLE,
          "model_data_uri": MODEL, "test_uri": f"{RUN}/etl/test/", "output_uri": f"{RUN}/evaluation",
          "model_package_group": GROUP}
MONITOR = {"processing_job_name": NAME, "evaluation_uri": EVALUATION, "threshold": "600",
           "model_package_group": GROUP, "image_uri": IMAGE, "model_data_uri": MODEL,
           "execution_id": EXECUTION}


def processing_input(name, uri):
    return {"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": f"/opt/ml/processing/{name}",
                                           "S3DataType": "S3Prefix", "S3InputMode": "File",
                                           "S3DataDistributionType": "FullyReplicated"}}


def processing_output(uri):
    return {"Outputs": [{"OutputName": "evaluation", "S3Output": {
        "S3Uri": uri, "LocalPath": "/opt/ml/processing/evaluation", "S3UploadMode": "EndOfJob"}}]}


REQUEST = {
    "ProcessingJobName": NAME,
    "AppSpecification": {"ImageUri": IMAGE, "ContainerEntrypoint": ["python3", "-m", "training.evaluate"]},
    "RoleArn": ROLE,
    "ProcessingInputs": [processing_input("model", MODEL), processing_input("test", f"{RUN}/etl/test/")],
    "ProcessingOutputConfig": processing_output(f"{RUN}/evaluation"),
    "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                              "VolumeSizeInGB": 10}},
    "NetworkConfig": {"EnableNetworkIsolation": True},
    "Tags": [{"Key": "PipelineExecutionId", "Value": EXECUTION}],
}
SUBMITTED = {"ProcessingJobName": NAME, "EvaluationUri": EVALUATION}
STARTED = f"SageMaker processing job {NAME} started: scores the model with no champion (no Approved package)"
NO_CHAMPION = "there is no Approved champion so the threshold alone decides"
LOGS = f"logs: CloudWatch log group /aws/sagemaker/ProcessingJobs, streams {NAME}/*"
OLD = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
TOKEN = json.dumps({"processing_job_name": NAME}, separators=(",", ":"))


@pytest.fixture
def aws():
    """moto SageMaker with the stack's model package group, and the data bucket."""
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="mlops-data")
        yield sagemaker, s3


def described(status, **extra):
    return {"ProcessingJobName": NAME, "ProcessingJobStatus": status, "CreationTime": OLD,
            "ProcessingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{NAME}",
            "AppSpecification": {"ImageUri": IMAGE}, "ProcessingResources": REQUEST["ProcessingResources"],
            **extra}


def metrics(rmse=512.25, mae=301.5, r2=0.975):
    return json.dumps({"regression_metrics": {
        "rmse": {"value": rmse, "standard_deviation": 4.1}, "mae": {"value": mae, "standard_deviation": 2.0},
        "r2": {"value": r2, "standard_deviation": 0.001},
        "mse": {"value": rmse * rmse, "standard_deviation": 9.0}}})


# -- submit ---------------------------------------------------------------------------------
def test_submit_creates_one_job_and_a_repeat_finds_it(aws, codepipeline):
    sagemaker, _ = aws
    client, stub = codepipeline
    sent = record_requests(sagemaker)
    expect_success(stub, outputVariables=SUBMITTED, executionDetails={"summary": STARTED})
    expect_success(stub, outputVariables=SUBMITTED, executionDetails={
        "summary": f"SageMaker processing job {NAME} already exists for this execution (Completed)"})
    for _ in range(2):
        run_job(load_event(user_parameters=SUBMIT), lambda job: evaluation.submit(job, sagemaker=sagemaker),
                client)

    assert [operation for operation, _ in sent] == ["DescribeProcessingJob", "ListModelPackages",
                                                    "CreateProcessingJob", "DescribeProcessingJob"]
    assert sent[1][1] == {"ModelPackageGroupName": GROUP, "ModelApprovalStatus": "Approved",
                          "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 1}
    assert sent[2][1] == REQUEST
    jobs = sagemaker.list_processing_jobs()["ProcessingJobSummaries"]
    assert [j["ProcessingJobName"] for j in jobs] == [NAME]


KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
VPC = {"JOB_SUBNET_IDS": "subnet-0a1b2c3d,subnet-4e5f6a7b", "JOB_SECURITY_GROUP_IDS": "sg-0123abcd, sg-4567ef01"}
SEALED = {"ProcessingOutputConfig": {**REQUEST["ProcessingOutputConfig"], "KmsKeyId": KEY},
          "ProcessingResources": {"ClusterConfig": {**REQUEST["ProcessingResources"]["ClusterConfig"],
                                                    "VolumeKmsKeyId": KEY}}}


@pytest.mark.parametrize("environment, changes", [
    ({}, {}),
    ({"JOB_KMS_KEY_ARN": KEY}, SEALED),
    ({"JOB_KMS_KEY_ARN": KEY, **VPC},
     {**SEALED, "NetworkConfig": {"EnableNetworkIsolation": True, "VpcConfig": {
         "SecurityGroupIds": ["sg-0123abcd", "sg-4567ef01"], "Subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"]}}}),
], ids=["isolated-only", "project-key", "project-key-and-vpc"])
def test_submit_seals_the_job_as_the_function_environment_says(aws, codepipeline, monkeypatch, environment, changes):
    """Network isolation always; the volume and outputs under the project key; the VPC when given. moto's
    client checks the request against CreateProcessingJob's model."""
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    sagemaker, _ = aws
    client, stub = codepipeline
    sent = record_requests(sagemaker)
    expect_success(stub, outputVariables=SUBMITTED, executionDetails={"summary": STARTED})
    run_job(load_event(user_parameters=SUBMIT), lambda job: evaluation.submit(job, sagemaker=sagemaker), client)
    assert sent[2] == ("CreateProcessingJob", {**REQUEST, **changes})


def test_a_half_vpc_is_a_configuration_error(stubbed_sagemaker, codepipeline, monkeypatch):
    monkeypatch.setenv("JOB_SUBNET_IDS", "subnet-0a1b2c3d")
    sagemaker, _ = stubbed_sagemaker  # no SageMaker call expected: the stubber fails on any
    client, stub = codepipeline
    expect_failure(stub, "ConfigurationError",
                   "JOB_SUBNET_IDS and JOB_SECURITY_GROUP_IDS go together (the stack's JobSubnetIds and "
                   "JobSecurityGroupIds): give both or neither")
    run_job(load_event(user_parameters=SUBMIT), lambda job: evaluation.submit(job, sagemaker=sagemaker), client)


def not_found(stub):
    stub.add_client_error("describe_processing_job", "ValidationException",
                          f"Could not find requested job with name {NAME}",
                          expected_params={"ProcessingJobName": NAME})
    stub.add_response("list_model_packages", {"ModelPackageSummaryList": []})


@pytest.mark.parametrize("setup, outcome", [
    (not_found, "created"),
    (lambda stub: stub.add_response("describe_processing_job", described("InProgress")),
     ("success", f"SageMaker processing job {NAME} already exists for this execution (InProgress)")),
    (lambda stub: (not_found(stub),
                   stub.add_client_error("create_processing_job", "ResourceInUse", "name in use",
                                         expected_params=REQUEST),
                   stub.add_response("describe_processing_job", described("InProgress"))),
     ("success", f"SageMaker processing job {NAME} already exists for this execution (InProgress)")),
    (lambda stub: stub.add_response("describe_processing_job", described(
        "Failed", FailureReason="AlgorithmError: no model.tar.gz under /opt/ml/processing/model")),
     ("JobFailed", f"SageMaker processing job {NAME} of this pipeline execution is already Failed: "
                   "AlgorithmError: no model.tar.gz under /opt/ml/processing/model; its name cannot be "
                   f"reused, so start a new pipeline execution (Release change); {LOGS}")),
    (lambda stub: stub.add_response("describe_processing_job", described("Stopping")),
     ("JobFailed", f"SageMaker processing job {NAME} of this pipeline execution is already Stopping; its "
                   f"name cannot be reused, so start a new pipeline execution (Release change); {LOGS}")),
], ids=["new", "running-reused", "created-concurrently-reused", "failed-not-replaced",
        "stopping-not-replaced"])
def test_submit_states(stubbed_sagemaker, codepipeline, setup, outcome):
    sagemaker, sm_stub = stubbed_sagemaker
    client, stub = codepipeline
    setup(sm_stub)
    if outcome == "created":
        sm_stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:x"}, REQUEST)
        outcome = ("success", STARTED)
    kind, text = outcome
    if kind == "success":
        expect_success(stub, outputVariables=SUBMITTED, executionDetails={"summary": text})
    else:
        expect_failure(stub, kind, text)
    run_job(load_event(user_parameters=SUBMIT), lambda job: evaluation.submit(job, sagemaker=sagemaker),
            client)


def test_submit_output_uri_with_a_trailing_slash_gives_the_same_evaluation_uri(stubbed_sagemaker, codepipeline):
    sagemaker, sm_stub = stubbed_sagemaker
    client, stub = codepipeline
    not_found(sm_stub)
    request = {**REQUEST, "ProcessingOutputConfig": processing_output(f"{RUN}/evaluation/"),
               "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.c5.xlarge",
                                                         "VolumeSizeInGB": 10}}}
    sm_stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:x"}, request)
    expect_success(stub, outputVariables=SUBMITTED, executionDetails={"summary": STARTED})
    params = {**SUBMIT, "output_uri": f"{RUN}/evaluation/", "instance_type": "ml.c5.xlarge"}
    run_job(load_event(user_parameters=params), lambda job: evaluation.submit(job, sagemaker=sagemaker),
            client)


@pytest.mark.parametrize("action, params, message", [
    ("submit", without(SUBMIT, "test_uri"), "UserParameters is missing required key 'test_uri'"),
    ("submit", {**SUBMIT, "instance_count": 2},
     "UserParameters has unknown key(s) ['instance_count']; allowed: ['execution_id', 'image_uri', "
     "'instance_type', 'model_data_uri', 'model_package_group', 'name_prefix', 'output_uri', 'role_arn', "
     "'test_uri']"),
    ("submit", {**SUBMIT, "role_arn": None}, "UserParameters 'role_arn' must be str, got NoneType"),
    ("submit", {**SUBMIT, "model_data_uri": "#{Training.ModelDataUrl}"},
     "UserParameters 'model_data_uri' holds an unresolved variable #{Training.ModelDataUrl}; check the "
     "namespace and variable name"),
    ("monitor", without(MONITOR, "model_package_group"),
     "UserParameters is missing required key 'model_package_group'"),
    ("monitor", {**MONITOR, "decision": "x"},
     "UserParameters has unknown key(s) ['decision']; allowed: ['evaluation_uri', 'execution_id', "
     "'image_uri', 'max_seconds', 'model_data_uri', 'model_package_group', 'processing_job_name', "
     "'threshold', 'tolerance_percent']"),
    ("monitor", {**MONITOR, "threshold": "high"}, "UserParameters 'threshold' must be a number, got 'high'"),
    ("monitor", {**MONITOR, "threshold": "nan"},
     "UserParameters 'threshold' must be a finite number, got nan"),
    ("monitor", {**MONITOR, "threshold": "#{variables.QualityThreshold}"},
     "UserParameters 'threshold' holds an unresolved variable #{variables.QualityThreshold}; check the "
     "namespace and variable name"),
    ("monitor", {**MONITOR, "tolerance_percent": "-1"},
     "UserParameters 'tolerance_percent' (the ChallengerTolerancePercent variable) must be a finite number >= 0, "
     "got -1.0"),
    ("monitor", {**MONITOR, "evaluation_uri": "evaluation.json"},
     "UserParameters 'evaluation_uri' must be an s3:// URI, got 'evaluation.json'"),
], ids=["submit-missing", "submit-unknown", "submit-wrong-type", "submit-unresolved", "monitor-missing",
        "monitor-unknown", "monitor-threshold-not-number", "monitor-threshold-nan", "monitor-unresolved",
        "monitor-negative-tolerance",
        "monitor-not-s3"])
def test_bad_user_parameters_are_configuration_errors(stubbed_sagemaker, codepipeline, action, params, message):
    sagemaker, _ = stubbed_sagemaker  # no request may reach SageMaker
    client, stub = codepipeline
    expect_failure(stub, "ConfigurationError", message)
    work = getattr(evaluation, action)
    run_job(load_event(user_parameters=params), lambda job: work(job, sagemaker=sagemaker), client)


# -- monitor: the decision ------------------------------------------------------------------
def completed_job(aws, body):
    sagemaker, s3 = aws
    sagemaker.create_processing_job(**REQUEST)  # moto: Completed at once
    if body is not None:
        s3.put_object(Bucket="mlops-data", Key=EVALUATION_KEY, Body=body)


def monitor_with(aws, client, params=MONITOR):
    sagemaker, s3 = aws
    return run_job(load_event(user_parameters=params),
                   lambda job: evaluation.monitor(job, sagemaker=sagemaker, s3=s3), client)


ABOVE = f"RMSE 700.46 is above threshold 600; {NO_CHAMPION}"


def gate_variables(threshold, reason, tolerance="0", champion="none", champion_rmse="none"):
    return {"Threshold": threshold, "TolerancePercent": tolerance, "ChampionModelPackageArn": champion,
            "ChampionRmse": champion_rmse, "Reason": reason.replace(";", "")}


def packages(sagemaker):
    summaries = sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    return [sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"]) for s in summaries]


@pytest.mark.parametrize("threshold, rmse", [("600", 512.25), ("512.25", 512.25), (600, 512.25)],
                         ids=["below", "equal", "number-not-string"])
def test_monitor_approves_at_or_below_the_threshold(aws, codepipeline, threshold, rmse):
    client, stub = codepipeline
    completed_job(aws, metrics(rmse=rmse))
    reason = f"RMSE 512.25 is within threshold {float(threshold):g}; {NO_CHAMPION}"
    approved = {"Decision": "APPROVED", "Rmse": "512.25", "Mae": "301.5", "R2": "0.975",
                **gate_variables(f"{float(threshold):g}", reason)}
    expect_success(stub, outputVariables=approved, executionDetails={"summary": f"Model APPROVED: {reason}"})
    monitor_with(aws, client, {**MONITOR, "threshold": threshold})
    assert packages(aws[0]) == []  # the RegisterModel action registers approved models


def test_monitor_exports_a_null_r2_of_a_constant_test_target(aws, codepipeline):
    client, stub = codepipeline
    completed_job(aws, metrics(r2=None))
    reason = f"RMSE 512.25 is within threshold 600; {NO_CHAMPION}"
    expect_success(stub, outputVariables={"Decision": "APPROVED", "Rmse": "512.25", "Mae": "301.5",
                                          "R2": "null", **gate_variables("600", reason)},
                   executionDetails={"summary": f"Model APPROVED: {reason}"})
    monitor_with(aws, client)


def test_monitor_rejects_records_the_candidate_once_and_fails(aws, codepipeline):
    sagemaker, _ = aws
    client, stub = codepipeline
    completed_job(aws, metrics(rmse=700.456))
    for _ in range(2):
        expect_failure(stub, "JobFailed", f"Model REJECTED: {ABOVE}")
    sent = record_requests(sagemaker)
    monitor_with(aws, client)
    monitor_with(aws, client)  # a repeated invocation records nothing new

    assert [op for op, _ in sent].count("CreateModelPackage") == 1
    [package] = packages(sagemaker)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["InferenceSpecification"] == {
        "Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL}],
        "SupportedContentTypes": ["text/csv", "application/json"],
        "SupportedResponseMIMETypes": ["text/csv", "application/json"]}
    assert package["ModelMetrics"] == {"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                                       "S3Uri": EVALUATION}}}
    assert package["CustomerMetadataProperties"] == {
        "ExecutionId": EXECUTION, "Decision": "REJECTED", "Rmse": "700.456", "Threshold": "600",
        "TolerancePercent": "0", "ChampionModelPackageArn": "none", "ChampionRmse": "none",
        "DecisionReason": f"RMSE 700.46 is above threshold 600 {NO_CHAMPION}"}  # no ';' in metadata
    assert package["ModelPackageDescription"] == (
        f"Rejected by pipeline execution {EXECUTION}: RMSE 700.46 is above threshold 600 {NO_CHAMPION}")


def test_monitor_rejection_ignores_another_executions_record(aws, codepipeline):
    sagemaker, _ = aws
    client, stub = codepipeline
    completed_job(aws, metrics(rmse=700.456))
    evaluation.record_rejected(sagemaker, {**MONITOR, "execution_id": "other"}, OLD,
                               {"Decision": "REJECTED", "DecisionReason": "RMSE 800 is above threshold 600"})
    expect_failure(stub, "JobFailed", f"Model REJECTED: {ABOVE}")
    monitor_with(aws, client)
    recorded = sorted(p["CustomerMetadataProperties"]["ExecutionId"] for p in packages(sagemaker))
    assert recorded == [EXECUTION, "other"]


def test_monitor_rejection_stands_when_the_registry_refuses(aws, codepipeline):
    client, stub = codepipeline
    completed_job(aws, metrics(rmse=700.456))
    expect_failure(stub, "JobFailed",
                   f"Model REJECTED: {ABOVE}; it could not be recorded in model package "
                   "group missing-group: CreateModelPackage failed: An error ocurred (ValidationException) "
                   "when calling the CreateModelPackage operation: Model Package Group does not exist. "
                   "(ValidationException)")  # moto's wording of the AWS error
    monitor_with(aws, client, {**MONITOR, "model_package_group": "missing-group"})


@pytest.mark.parametrize("body, message", [
    (None, f"SageMaker processing job {NAME} Completed but wrote no evaluation.json at {EVALUATION}; {LOGS}"),
    ("not json", f"{EVALUATION} (from processing job {NAME}) is not SageMaker ModelMetrics JSON with "
                 "'regression_metrics'"),
    (json.dumps({"regression_metrics": {"rmse": {"value": 1.0}, "r2": {"value": 0.9}}}),
     f"{EVALUATION} (from processing job {NAME}) has no regression_metrics.mae.value"),
    (json.dumps({"regression_metrics": {"rmse": {"value": "1.0"}}}),
     f"{EVALUATION} (from processing job {NAME}): regression_metrics.rmse.value is not a number ('1.0')"),
    (metrics(rmse=float("nan")), f"{EVALUATION} (from processing job {NAME}) reports a non-finite RMSE "
                                 f"(nan); the model cannot be judged; {LOGS}"),
    (metrics(rmse=float("inf")), f"{EVALUATION} (from processing job {NAME}) reports a non-finite RMSE "
                                 f"(inf); the model cannot be judged; {LOGS}"),
], ids=["missing", "not-json", "missing-metric", "metric-not-number", "nan-rmse", "infinite-rmse"])
def test_monitor_fails_without_a_usable_evaluation(aws, codepipeline, body, message):
    client, stub = codepipeline
    completed_job(aws, body)
    expect_failure(stub, "JobFailed", message)
    monitor_with(aws, client)
    assert packages(aws[0]) == []


# -- monitor: the job's states --------------------------------------------------------------
@pytest.mark.parametrize("response, params, outcome", [
    (described("InProgress"), {}, ("continue", f"SageMaker processing job {NAME} is InProgress")),
    (described("InProgress", ProcessingStartTime=now_minus(60)), {"max_seconds": 3600},
     ("continue", f"SageMaker processing job {NAME} is InProgress")),
    (described("Stopping"), {"max_seconds": 60},
     ("continue", f"SageMaker processing job {NAME} is Stopping")),
    (described("Failed", FailureReason="ClientError: test split is empty"), {},
     ("JobFailed", f"SageMaker processing job {NAME} Failed: ClientError: test split is empty; {LOGS}")),
    (described("Stopped"), {},
     ("JobFailed", f"SageMaker processing job {NAME} Stopped: SageMaker gave no reason; {LOGS}")),
    (described("InProgress", ProcessingStartTime=OLD), {"max_seconds": 900},
     ("JobFailed", f"SageMaker processing job {NAME} ran past the action's max_seconds 900 "
                   f"(started 2024-05-01T10:00:00Z); stopped it; {LOGS}")),
], ids=["in-progress", "in-progress-within-budget", "stopping-over-budget-not-stopped-twice", "failed",
        "stopped", "timed-out"])
def test_monitor_reports_every_job_state(stubbed_sagemaker, codepipeline, response, params, outcome):
    sagemaker, sm_stub = stubbed_sagemaker
    client, stub = codepipeline
    sm_stub.add_response("describe_processing_job", response, {"ProcessingJobName": NAME})
    kind, text = outcome
    if kind == "continue":
        expect_success(stub, continuationToken=TOKEN, executionDetails={"summary": text})
    else:
        if "max_seconds" in text:
            sm_stub.add_response("stop_processing_job", {}, {"ProcessingJobName": NAME})
        expect_failure(stub, kind, text)
    run_job(load_event(user_parameters={**MONITOR, **params}),
            lambda job: evaluation.monitor(job, sagemaker=sagemaker, s3=object()), client)


def test_logs_name_the_job_and_never_the_credentials(aws, codepipeline, caplog):
    sagemaker, s3 = aws
    client, stub = codepipeline
    caplog.set_level(logging.DEBUG)
    expect_success(stub, outputVariables=ANY, executionDetails=ANY)
    run_job(load_event(user_parameters=SUBMIT), lambda job: evaluation.submit(job, sagemaker=sagemaker),
            client)
    s3.put_object(Bucket="mlops-data", Key=EVALUATION_KEY, Body=metrics(rmse=900))
    expect_failure(stub, "JobFailed", ANY)
    monitor_with(aws, client)

    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert not any(secret in logged for secret in SECRETS)
    ours = [r.getMessage() for r in caplog.records if r.name == "lambdas.evaluation"]
    assert len(ours) >= 3 and all(JOB_ID in line and NAME in line for line in ours)
    assert any("REJECTED" in line for line in ours)
    assert JOB_ID in logged


def test_handler_builds_its_client_only_when_called(monkeypatch, stubbed_sagemaker, codepipeline):
    sagemaker, sm_stub = stubbed_sagemaker
    client, stub = codepipeline
    built = []
    monkeypatch.setattr(evaluation, "client", lambda service: built.append(service) or sagemaker)
    monkeypatch.setattr(evaluation, "run_job", lambda event, work: run_job(event, work, client))
    assert built == []
    sm_stub.add_response("describe_processing_job", described("InProgress"), {"ProcessingJobName": NAME})
    expect_success(stub, outputVariables=SUBMITTED, executionDetails={
        "summary": f"SageMaker processing job {NAME} already exists for this execution (InProgress)"})
    evaluation.submit_handler(load_event(user_parameters=SUBMIT), None)
    assert built == ["sagemaker"]


# -- the champion/challenger gate -----------------------------------------------------------
CHAMPION_MODEL = "s3://mlops-data/models/mlops-diamonds/1f2e3d4c/model.tar.gz"


def register(sagemaker, status, model_data=CHAMPION_MODEL):
    return sagemaker.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": model_data}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
    )["ModelPackageArn"]


def test_submit_scores_the_newest_approved_package_as_the_champion(aws, codepipeline):
    sagemaker, _ = aws
    client, stub = codepipeline
    register(sagemaker, "Approved", model_data="s3://mlops-data/models/mlops-diamonds/old/model.tar.gz")
    champion = register(sagemaker, "Approved")
    register(sagemaker, "Rejected", model_data="s3://mlops-data/runs/x/model.tar.gz")  # newer, but Rejected
    sent = record_requests(sagemaker)
    expect_success(stub, outputVariables=SUBMITTED, executionDetails={
        "summary": f"SageMaker processing job {NAME} started: scores the model against champion {champion}"})
    run_job(load_event(user_parameters=SUBMIT), lambda job: evaluation.submit(job, sagemaker=sagemaker), client)

    created = dict(sent)["CreateProcessingJob"]
    assert created["ProcessingInputs"] == [*REQUEST["ProcessingInputs"], processing_input("champion", CHAMPION_MODEL)]
    assert created["AppSpecification"]["ContainerArguments"] == ["--champion-package", champion]


def test_submit_fails_on_a_champion_without_model_data(stubbed_sagemaker, codepipeline):
    sagemaker, sm_stub = stubbed_sagemaker
    client, stub = codepipeline
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-diamonds/4"
    sm_stub.add_client_error("describe_processing_job", "ValidationException", f"Could not find requested job "
                             f"with name {NAME}", expected_params={"ProcessingJobName": NAME})
    sm_stub.add_response("list_model_packages", {"ModelPackageSummaryList": [{
        "ModelPackageArn": arn, "ModelPackageStatus": "Completed", "CreationTime": OLD}]})
    sm_stub.add_response("describe_model_package", {
        "ModelPackageName": "mlops-diamonds", "ModelPackageArn": arn, "CreationTime": OLD,
        "ModelPackageStatus": "Completed", "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "InferenceSpecification": {"Containers": [{"Image": IMAGE}], "SupportedContentTypes": ["text/csv"],
                                   "SupportedResponseMIMETypes": ["text/csv"]}}, {"ModelPackageName": arn})
    expect_failure(stub, "JobFailed", f"the champion, model package {arn} (the newest Approved one in group "
                   f"'{GROUP}'), has no s3:// ModelDataUrl to score on the test split; set its status to Rejected "
                   "or Approve a package that has one")
    run_job(load_event(user_parameters=SUBMIT), lambda job: evaluation.submit(job, sagemaker=sagemaker), client)


CHAMPION_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-diamonds/3"


def with_champion(rmse=700.0, champion_rmse=650.0, error=None):
    report = json.loads(metrics(rmse=rmse))
    champion = json.loads(metrics(rmse=champion_rmse))
    report["champion"] = {"model_package_arn": CHAMPION_ARN, **({"error": error} if error else champion)}
    return json.dumps(report)


def against(champion_rmse, tolerance, limit):
    return (f"champion {CHAMPION_ARN} RMSE {champion_rmse} plus tolerance {tolerance} percent allows at most "
            f"{limit}")


@pytest.mark.parametrize("rmse, champion_rmse, tolerance, decision, reason", [
    (640.0, 650.0, "0", "APPROVED",
     f"RMSE 640.00 is within threshold 800; {against('650.00', '0', '650.00')}"),
    (650.0, 650.0, "0", "APPROVED",
     f"RMSE 650.00 is within threshold 800; {against('650.00', '0', '650.00')}"),
    (660.0, 650.0, "2", "APPROVED",
     f"RMSE 660.00 is within threshold 800; {against('650.00', '2', '663.00')}"),
    (670.0, 650.0, "2", "REJECTED",
     f"RMSE 670.00 is worse than the champion: {against('650.00', '2', '663.00')}"),
    (650.5, 650.0, "0", "REJECTED",
     f"RMSE 650.50 is worse than the champion: {against('650.00', '0', '650.00')}"),
    (820.0, 900.0, "0", "REJECTED",
     f"RMSE 820.00 is above threshold 800; {against('900.00', '0', '900.00')}"),
], ids=["challenger-better", "equal-at-zero-tolerance", "worse-within-tolerance", "worse-beyond-tolerance",
        "worse-by-a-little-at-zero-tolerance", "better-than-champion-but-above-threshold"])
def test_the_gate_compares_the_challenger_with_the_champion(aws, codepipeline, rmse, champion_rmse, tolerance,
                                                            decision, reason):
    sagemaker, _ = aws
    client, stub = codepipeline
    completed_job(aws, with_champion(rmse, champion_rmse))
    params = {**MONITOR, "threshold": "800", "tolerance_percent": tolerance}
    variables = {"Decision": decision, "Rmse": repr(rmse), "Mae": "301.5", "R2": "0.975",
                 **gate_variables("800", reason, tolerance, CHAMPION_ARN, repr(champion_rmse))}
    if decision == "APPROVED":
        expect_success(stub, outputVariables=variables, executionDetails={"summary": f"Model APPROVED: {reason}"})
    else:
        expect_failure(stub, "JobFailed", f"Model REJECTED: {reason}")
    monitor_with(aws, client, params)

    recorded = packages(sagemaker)
    if decision == "APPROVED":
        assert recorded == []  # RegisterModel records it, from the exported variables
        return
    [package] = recorded
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["CustomerMetadataProperties"] == {
        "ExecutionId": EXECUTION, "Decision": "REJECTED", "Rmse": repr(rmse), "Threshold": "800",
        "TolerancePercent": tolerance, "ChampionModelPackageArn": CHAMPION_ARN, "ChampionRmse": repr(champion_rmse),
        "DecisionReason": variables["Reason"]}


def test_a_champion_that_could_not_be_scored_leaves_the_threshold_to_decide(aws, codepipeline):
    client, stub = codepipeline
    error = "the model archive cannot be extracted"
    completed_job(aws, with_champion(rmse=512.25, error=error))
    reason = (f"RMSE 512.25 is within threshold 600; champion {CHAMPION_ARN} could not be scored on this test "
              f"split so the threshold alone decides: {error}")
    expect_success(stub, outputVariables={"Decision": "APPROVED", "Rmse": "512.25", "Mae": "301.5", "R2": "0.975",
                                          **gate_variables("600", reason, champion=CHAMPION_ARN)},
                   executionDetails={"summary": f"Model APPROVED: {reason}"})
    monitor_with(aws, client)


def test_gate_reason_fits_model_package_metadata():
    champion = evaluation.ChampionScore(CHAMPION_ARN, None, "x" * 400 + " <bad> (chars) 100%")
    record = evaluation.gate_record(evaluation.judge(1.0, 2.0, 0, champion), 1.0, 2.0, 0, champion)
    assert all(1 <= len(value) <= 256 and re.fullmatch(r"[\w .:/=+\-@]+", value) for value in record.values())
