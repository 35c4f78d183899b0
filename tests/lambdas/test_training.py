"""SubmitTraining / MonitorTraining: one training job per execution, every job state reported once."""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import ANY
from moto import mock_aws

from lambdas import training
from lambdas.job import parse_user_parameters, run_job
from lambdas.sagemaker_jobs import METRIC_DEFINITIONS, JobSecurity

from tests.lambdas.pipeline_stubs import JOB_ID, expect_failure, expect_success, now_minus, record_requests, without
from tests.conftest import SECRETS, load_event

EXECUTION = "2d6b0c50-6f3a-4d8e-9f1a-1234567890ab"
NAME = f"mlops-diamonds-train-{EXECUTION}"
ETL = f"s3://mlops-data/runs/{EXECUTION}/etl"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-diamonds-training:c0ffee0"
ROLE = "arn:aws:iam::123456789012:role/mlops-diamonds-sagemaker"
SUBMIT = {"execution_id": EXECUTION, "name_prefix": "mlops-diamonds", "image_uri": IMAGE, "role_arn": ROLE,
          "train_uri": f"{ETL}/train/", "validation_uri": f"{ETL}/validation/",
          "features_uri": f"{ETL}/features.json", "output_uri": f"s3://mlops-data/runs/{EXECUTION}/training/",
          "hyperparameters": {"epochs": 20, "learning_rate": 0.001, "hidden_units": [64, 32],
                              "optimizer": "adam", "early_stopping": True}}


def channel(name, uri):
    return {"ChannelName": name, "ContentType": "text/csv",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                            "S3DataDistributionType": "FullyReplicated"}}}


REQUEST = {
    "TrainingJobName": NAME,
    "AlgorithmSpecification": {
        "TrainingImage": IMAGE, "TrainingInputMode": "File",
        "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS]},
    "RoleArn": ROLE,
    "HyperParameters": {"epochs": "20", "learning_rate": "0.001", "hidden_units": "[64, 32]",
                        "optimizer": "adam", "early_stopping": "true"},
    "InputDataConfig": [channel("train", f"{ETL}/train/"), channel("validation", f"{ETL}/validation/"),
                        channel("features", f"{ETL}/features.json")],
    "OutputDataConfig": {"S3OutputPath": f"s3://mlops-data/runs/{EXECUTION}/training/"},
    "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    "EnableNetworkIsolation": True,
    "EnableManagedSpotTraining": False,
    "Tags": [{"Key": "PipelineExecutionId", "Value": EXECUTION}],
}
MODEL = f"s3://mlops-data/runs/{EXECUTION}/training/{NAME}/output/model.tar.gz"
LOGS = f"logs: CloudWatch log group /aws/sagemaker/TrainingJobs, streams {NAME}/*"
OLD = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
TOKEN = json.dumps({"training_job_name": NAME}, separators=(",", ":"))


@pytest.fixture
def sagemaker():
    with mock_aws():
        yield boto3.client("sagemaker", region_name="us-east-1")


def described(status, secondary=None, **extra):
    return {"TrainingJobName": NAME,
            "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{NAME}",
            "ModelArtifacts": {"S3ModelArtifacts": MODEL if status == "Completed" else ""},
            "TrainingJobStatus": status, "SecondaryStatus": secondary or status, "StoppingCondition": {},
            "CreationTime": OLD, **extra}


# -- submit ---------------------------------------------------------------------------------
def test_submit_creates_one_job_and_a_repeat_finds_it(sagemaker, codepipeline):
    client, stub = codepipeline
    sent = record_requests(sagemaker)
    variables = {"TrainingJobName": NAME}
    expect_success(stub, outputVariables=variables,
                   executionDetails={"summary": f"SageMaker training job {NAME} started"})
    expect_success(stub, outputVariables=variables, executionDetails={
        "summary": f"SageMaker training job {NAME} already exists for this execution (Completed)"})
    for _ in range(2):
        run_job(load_event(user_parameters=SUBMIT), lambda job: training.submit(job, sagemaker=sagemaker),
                client)

    assert [operation for operation, _ in sent] == ["DescribeTrainingJob", "CreateTrainingJob",
                                                    "DescribeTrainingJob"]
    assert sent[1][1] == REQUEST
    assert [j["TrainingJobName"] for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]] == [NAME]


def not_found(stub, code, message):
    stub.add_client_error("describe_training_job", code, message, expected_params={"TrainingJobName": NAME})


@pytest.mark.parametrize("setup, outcome", [
    (lambda stub: not_found(stub, "ValidationException", "Requested resource not found."), "created"),
    (lambda stub: not_found(stub, "ResourceNotFound", "Training job not found"), "created"),
    (lambda stub: stub.add_response("describe_training_job", described("InProgress", "Training")),
     ("success", f"SageMaker training job {NAME} already exists for this execution (InProgress)")),
    (lambda stub: (not_found(stub, "ValidationException", "Requested resource not found."),
                   stub.add_client_error("create_training_job", "ResourceInUse",
                                         "Training job names must be unique", expected_params=REQUEST),
                   stub.add_response("describe_training_job", described("InProgress", "Starting"))),
     ("success", f"SageMaker training job {NAME} already exists for this execution (InProgress)")),
    (lambda stub: stub.add_response("describe_training_job", described(
        "Failed", FailureReason="AlgorithmError: ValueError: no rows in train")),
     ("JobFailed", f"SageMaker training job {NAME} of this pipeline execution is already Failed: "
                   "AlgorithmError: ValueError: no rows in train; its name cannot be reused, so start a new "
                   f"pipeline execution (Release change); {LOGS}")),
    (lambda stub: stub.add_response("describe_training_job", described("Stopped")),
     ("JobFailed", f"SageMaker training job {NAME} of this pipeline execution is already Stopped; its name "
                   f"cannot be reused, so start a new pipeline execution (Release change); {LOGS}")),
    (lambda stub: stub.add_client_error("describe_training_job", "ValidationException", "1 validation error"),
     ("JobFailed", "DescribeTrainingJob failed: 1 validation error (ValidationException)")),
], ids=["new-validation-not-found", "new-resource-not-found", "running-reused", "created-concurrently-reused",
        "failed-not-replaced", "stopped-not-replaced", "other-error-not-taken-for-absent"])
def test_submit_states(stubbed_sagemaker, codepipeline, setup, outcome):
    sagemaker, sm_stub = stubbed_sagemaker
    client, stub = codepipeline
    setup(sm_stub)
    if outcome == "created":
        sm_stub.add_response("create_training_job", {"TrainingJobArn": "arn:x"}, REQUEST)
        outcome = ("success", f"SageMaker training job {NAME} started")
    kind, text = outcome
    if kind == "success":
        expect_success(stub, outputVariables={"TrainingJobName": NAME}, executionDetails={"summary": text})
    else:
        expect_failure(stub, kind, text)
    run_job(load_event(user_parameters=SUBMIT), lambda job: training.submit(job, sagemaker=sagemaker), client)


MAE = [{"Name": "validation:mae", "Regex": "val_mae=([0-9.]+)"}]


@pytest.mark.parametrize("params, changes", [
    ({"instance_type": "ml.g5.xlarge", "instance_count": 2, "volume_gb": 30, "max_runtime_seconds": 7200},
     {"ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30},
      "StoppingCondition": {"MaxRuntimeInSeconds": 7200}}),
    ({"hyperparameters": {}}, {"HyperParameters": {}}),
    ({"hyperparameters": {"epochs": 5},
      "default_hyperparameters": {"epochs": 60, "hidden_units": [128, 64], "activation": "relu"}},
     {"HyperParameters": {"epochs": "5", "hidden_units": "[128, 64]", "activation": "relu"}}),
    ({"metric_definitions": MAE},
     {"AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File",
                                 "MetricDefinitions": MAE}}),
], ids=["resources", "no-hyperparameters", "overrides-over-the-image-defaults", "own-metrics"])
def test_training_request_follows_the_parameters(params, changes):
    params = parse_user_parameters(json.dumps({**SUBMIT, **params}), training.SUBMIT_SCHEMA)
    request = training.training_request(params, JobSecurity())
    assert request == {**REQUEST, **changes}


def test_the_image_defaults_as_sent_train_as_the_defaults():
    """default_hyperparameters is the image's training.contract defaults as JSON: the strings the worker makes
    of them parse back to the same hyperparameters, so naming them changes nothing the job trains with."""
    contract = pytest.importorskip("training.contract")  # the test branch carries only src/lambdas
    defaults = json.loads(json.dumps(contract.Hyperparameters().to_dict()))  # as a variable carries them
    params = parse_user_parameters(json.dumps({**SUBMIT, "hyperparameters": {}, "default_hyperparameters": defaults}),
                                   training.SUBMIT_SCHEMA)
    sent = training.training_request(params, JobSecurity())["HyperParameters"]
    assert set(sent) == set(contract.HYPERPARAMETERS)
    assert contract.parse_hyperparameters(sent) == contract.Hyperparameters()


KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
VPC = {"JOB_SUBNET_IDS": "subnet-0a1b2c3d, subnet-4e5f6a7b", "JOB_SECURITY_GROUP_IDS": "sg-0123abcd"}


@pytest.mark.parametrize("environment, changes", [
    ({}, {}),
    ({"JOB_KMS_KEY_ARN": KEY},
     {"OutputDataConfig": {**REQUEST["OutputDataConfig"], "KmsKeyId": KEY},
      "ResourceConfig": {**REQUEST["ResourceConfig"], "VolumeKmsKeyId": KEY}}),
    ({"JOB_KMS_KEY_ARN": KEY, **VPC},
     {"OutputDataConfig": {**REQUEST["OutputDataConfig"], "KmsKeyId": KEY},
      "ResourceConfig": {**REQUEST["ResourceConfig"], "VolumeKmsKeyId": KEY},
      "VpcConfig": {"SecurityGroupIds": ["sg-0123abcd"], "Subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"]}}),
], ids=["isolated-only", "project-key", "project-key-and-vpc"])
def test_submit_seals_the_job_as_the_function_environment_says(sagemaker, codepipeline, monkeypatch,
                                                               environment, changes):
    """Network isolation always; the volume and model artifacts under the project key; the VPC when given.
    moto's client checks the request against CreateTrainingJob's model (VpcConfig needs both lists)."""
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    client, stub = codepipeline
    sent = record_requests(sagemaker)
    expect_success(stub, outputVariables={"TrainingJobName": NAME},
                   executionDetails={"summary": f"SageMaker training job {NAME} started"})
    run_job(load_event(user_parameters=SUBMIT), lambda job: training.submit(job, sagemaker=sagemaker), client)
    assert sent[1] == ("CreateTrainingJob", {**REQUEST, **changes})


@pytest.mark.parametrize("environment, message", [
    ({"JOB_SUBNET_IDS": "subnet-0a1b2c3d"}, "JOB_SUBNET_IDS and JOB_SECURITY_GROUP_IDS go together"),
    ({"JOB_SECURITY_GROUP_IDS": "sg-0123abcd"}, "JOB_SUBNET_IDS and JOB_SECURITY_GROUP_IDS go together"),
    ({**VPC, "JOB_SUBNET_IDS": "subnet-0a1b2c3d,vpc-0a1b2c3d"}, "JOB_SUBNET_IDS must be comma-separated IDs"),
    ({**VPC, "JOB_SECURITY_GROUP_IDS": ",".join(f"sg-0{n}" for n in range(6))},
     "at most 16 subnets and 5 security groups, got 2 and 6"),
], ids=["subnets-without-groups", "groups-without-subnets", "not-a-subnet-id", "six-security-groups"])
def test_a_half_or_bad_vpc_is_a_configuration_error(stubbed_sagemaker, codepipeline, monkeypatch,
                                                    environment, message):
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    sagemaker, _ = stubbed_sagemaker  # no SageMaker call expected: the stubber fails on any
    client, stub = codepipeline
    expect_failure(stub, "ConfigurationError", Containing(message))
    run_job(load_event(user_parameters=SUBMIT), lambda job: training.submit(job, sagemaker=sagemaker), client)


class Containing(str):
    """A stubber expectation: any string that contains this one."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and str.__contains__(other, str(self))

    __hash__ = str.__hash__


def test_job_security_reads_empty_variables_as_none():
    """The template sets a VPC variable only in a VPC; an empty one (a cleared parameter) means none too."""
    security = JobSecurity.from_environment({"JOB_KMS_KEY_ARN": "", "JOB_SUBNET_IDS": " ",
                                             "JOB_SECURITY_GROUP_IDS": ""})
    assert security == JobSecurity() and security.vpc_config() is None


# What the trainer prints (training.contract), by the metric each printed number must become.
EPOCH_METRICS = {"train_loss": "train:loss", "val_loss": "validation:loss", "val_rmse": "validation:rmse",
                 "val_mae": "validation:mae"}
FINAL_METRICS = {"validation_rmse": "final:validation:rmse", "validation_mae": "final:validation:mae",
                 "validation_r2": "final:validation:r2"}
COUNTERS = {"epoch", "best_epoch"}  # printed to anchor the line, not metrics


def printed(line: str) -> dict[str, float]:
    """The trainer's own reading of a line it printed: each key=value pair."""
    pairs = line.split()[1:] if line.startswith("final ") else line.split()
    return {key: float(value) for key, value in (pair.split("=", 1) for pair in pairs)}


def scraped(definitions, line: str) -> dict[str, float]:
    """What SageMaker records for a log line: each definition's first group, where its regex matches."""
    return {d["Name"]: float(m.group(1)) for d in definitions if (m := re.search(d["Regex"], line))}


@pytest.mark.parametrize("line, expected", [
    pytest.param(("epoch", 12, 1.5e-05, 0.25, 612.25, 300.5),
                 {"train:loss": 1.5e-05, "validation:loss": 0.25, "validation:rmse": 612.25,
                  "validation:mae": 300.5}, id="epoch-line"),
    pytest.param(("epoch", 3, 0.0123, 1234567.0, 0.5, 1e-05),
                 {"train:loss": 0.0123, "validation:loss": 1.23457e+06, "validation:rmse": 0.5,
                  "validation:mae": 0.0}, id="epoch-line-exponent-and-zero"),
    pytest.param(("final", 9, 530.0, 270.5, -0.125),
                 {"final:validation:rmse": 530.0, "final:validation:mae": 270.5, "final:validation:r2": -0.125},
                 id="final-line-negative-r2"),
    pytest.param(("final", 41, 612.3456, 301.25, 0.987654),
                 {"final:validation:rmse": 612.3456, "final:validation:mae": 301.25, "final:validation:r2": 0.987654},
                 id="final-line"),
])
def test_every_metric_the_trainer_prints_is_scraped_by_the_jobs_definitions(line, expected):
    """The training job is created with definitions that read every number the trainer prints, exactly."""
    contract = pytest.importorskip("training.contract")  # the test branch carries only src/lambdas
    kind, *values = line
    text = (contract.format_epoch_line if kind == "epoch" else contract.format_final_line)(*values)
    params = parse_user_parameters(json.dumps(SUBMIT), training.SUBMIT_SCHEMA)
    definitions = training.training_request(params, JobSecurity())["AlgorithmSpecification"]["MetricDefinitions"]
    names = EPOCH_METRICS if kind == "epoch" else FINAL_METRICS

    numbers = printed(text)
    assert set(numbers) - COUNTERS == set(names), text  # a new printed metric needs a definition here
    assert scraped(definitions, text) == pytest.approx({names[key]: value for key, value in numbers.items()
                                                        if key not in COUNTERS}), text
    assert scraped(definitions, text) == pytest.approx(expected)
    assert {d["Name"] for d in definitions} == set(EPOCH_METRICS.values()) | set(FINAL_METRICS.values())


@pytest.mark.parametrize("action, params, message", [
    ("submit", without(SUBMIT, "image_uri"), "UserParameters is missing required key 'image_uri'"),
    ("submit", {**SUBMIT, "epochs": 3},
     "UserParameters has unknown key(s) ['epochs']; allowed: ['default_hyperparameters', 'execution_id', "
     "'features_uri', 'hyperparameters', 'image_uri', 'instance_count', 'instance_type', 'max_runtime_seconds', "
     "'metric_definitions', 'name_prefix', 'output_uri', 'role_arn', 'train_uri', 'validation_uri', "
     "'volume_gb']"),
    ("submit", {**SUBMIT, "instance_count": "two"}, "UserParameters 'instance_count' must be a number, got 'two'"),
    ("submit", {**SUBMIT, "hyperparameters": [1]}, "UserParameters 'hyperparameters' must be dict, got list"),
    ("submit", {**SUBMIT, "image_uri": "#{BuildTraining.ImageUri}"},
     "UserParameters 'image_uri' holds an unresolved variable #{BuildTraining.ImageUri}; check the namespace "
     "and variable name"),
    ("submit", {**SUBMIT, "volume_gb": 0}, "UserParameters 'volume_gb' must be at least 1, got 0"),
    ("submit", {**SUBMIT, "train_uri": "/data/train"}, "UserParameters 'train_uri' must be an s3:// URI, got "
                                                       "'/data/train'"),
    ("submit", {**SUBMIT, "metric_definitions": [{"Name": "rmse"}]},
     "UserParameters 'metric_definitions'[0] must be {\"Name\": str, \"Regex\": str}, got {'Name': 'rmse'}"),
    ("monitor", {}, "UserParameters is missing required key 'training_job_name'"),
    ("monitor", {"training_job_name": NAME, "max_runtime": 1},
     "UserParameters has unknown key(s) ['max_runtime']; allowed: ['max_seconds', 'training_job_name']"),
    ("monitor", {"training_job_name": NAME, "max_seconds": [1]},
     "UserParameters 'max_seconds' must be int or float, got list"),
    ("monitor", {"training_job_name": "#{Training.TrainingJobName}"},
     "UserParameters 'training_job_name' holds an unresolved variable #{Training.TrainingJobName}; check the "
     "namespace and variable name"),
], ids=["submit-missing", "submit-unknown", "submit-wrong-type", "submit-hyperparameters-not-object",
        "submit-unresolved", "submit-zero-volume", "submit-not-s3", "submit-bad-metric", "monitor-missing",
        "monitor-unknown", "monitor-wrong-type", "monitor-unresolved"])
def test_bad_user_parameters_are_configuration_errors(stubbed_sagemaker, codepipeline, action, params, message):
    sagemaker, _ = stubbed_sagemaker  # no request may reach SageMaker
    client, stub = codepipeline
    expect_failure(stub, "ConfigurationError", message)
    work = getattr(training, action)
    run_job(load_event(user_parameters=params), lambda job: work(job, sagemaker=sagemaker), client)


# -- monitor --------------------------------------------------------------------------------
def test_monitor_exports_the_model_of_a_completed_job(sagemaker, codepipeline):
    client, stub = codepipeline
    sagemaker.create_training_job(**REQUEST)  # moto: Completed at once
    model = f"s3://mlops-data/runs/{EXECUTION}/training/{NAME}/output/model.tar.gz"
    # the metric is moto's canned one
    expect_success(stub, outputVariables={"ModelDataUrl": model, "TrainingJobName": NAME},
                   executionDetails={"summary": f"SageMaker training job {NAME} Completed: {model} "
                                                "(train:progress=100)"})
    run_job(load_event(user_parameters={"training_job_name": NAME}),
            lambda job: training.monitor(job, sagemaker=sagemaker), client)


@pytest.mark.parametrize("response, params, outcome", [
    (described("InProgress", "Starting"), {},
     ("continue", f"SageMaker training job {NAME} is InProgress: Starting")),
    (described("InProgress", "Training", TrainingStartTime=now_minus(60)), {"max_seconds": 3600},
     ("continue", f"SageMaker training job {NAME} is InProgress: Training")),
    (described("Stopping"), {"max_seconds": 60},
     ("continue", f"SageMaker training job {NAME} is Stopping: Stopping")),
    (described("Completed", FinalMetricDataList=[{"MetricName": "validation:rmse", "Value": 612.3,
                                                  "Timestamp": OLD}]), {},
     ("success", f"SageMaker training job {NAME} Completed: {MODEL} (validation:rmse=612.3)")),
    (described("Failed", FailureReason="AlgorithmError: ValueError: could not convert string to float"), {},
     ("JobFailed", f"SageMaker training job {NAME} Failed (Failed): AlgorithmError: ValueError: could not "
                   f"convert string to float; {LOGS}")),
    (described("Stopped", "MaxRuntimeExceeded"), {},
     ("JobFailed", f"SageMaker training job {NAME} Stopped (MaxRuntimeExceeded): SageMaker gave no reason; "
                   f"{LOGS}")),
    (described("InProgress", "Training", TrainingStartTime=OLD), {"max_seconds": "3600"},
     ("JobFailed", f"SageMaker training job {NAME} ran past the action's max_seconds 3600 "
                   f"(started 2024-05-01T10:00:00Z); stopped it; {LOGS}")),
    (described("InProgress", "Starting", CreationTime=OLD), {"max_seconds": 1800},
     ("JobFailed", f"SageMaker training job {NAME} ran past the action's max_seconds 1800 "
                   f"(started 2024-05-01T10:00:00Z); stopped it; {LOGS}")),
], ids=["starting", "training-within-budget", "stopping-over-budget-not-stopped-twice", "completed", "failed",
        "stopped", "timed-out-from-training-start", "timed-out-from-creation"])
def test_monitor_reports_every_job_state(stubbed_sagemaker, codepipeline, response, params, outcome):
    sagemaker, sm_stub = stubbed_sagemaker
    client, stub = codepipeline
    sm_stub.add_response("describe_training_job", response, {"TrainingJobName": NAME})
    kind, text = outcome
    if kind == "continue":
        expect_success(stub, continuationToken=TOKEN, executionDetails={"summary": text})
    elif kind == "success":
        expect_success(stub, outputVariables={"ModelDataUrl": MODEL, "TrainingJobName": NAME},
                       executionDetails={"summary": text})
    else:
        if "max_seconds" in text:
            sm_stub.add_response("stop_training_job", {}, {"TrainingJobName": NAME})
        expect_failure(stub, kind, text)
    run_job(load_event(user_parameters={"training_job_name": NAME, **params}),
            lambda job: training.monitor(job, sagemaker=sagemaker), client)


def test_logs_name_the_job_and_never_the_credentials(sagemaker, codepipeline, caplog):
    client, stub = codepipeline
    caplog.set_level(logging.DEBUG)
    expect_success(stub, outputVariables=ANY, executionDetails=ANY)
    run_job(load_event(user_parameters=SUBMIT), lambda job: training.submit(job, sagemaker=sagemaker), client)
    expect_success(stub, outputVariables=ANY, executionDetails=ANY)
    run_job(load_event(user_parameters={"training_job_name": NAME}),
            lambda job: training.monitor(job, sagemaker=sagemaker), client)
    expect_failure(stub, "JobFailed", ANY)
    run_job(load_event(user_parameters={"training_job_name": "missing"}),
            lambda job: training.monitor(job, sagemaker=sagemaker), client)

    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert not any(secret in logged for secret in SECRETS)
    ours = [r.getMessage() for r in caplog.records if r.name == "lambdas.training"]
    assert len(ours) >= 2 and all(JOB_ID in line and NAME in line for line in ours)
    assert JOB_ID in logged


def test_handler_builds_its_client_only_when_called(monkeypatch, stubbed_sagemaker, codepipeline):
    sagemaker, sm_stub = stubbed_sagemaker
    client, stub = codepipeline
    built = []
    monkeypatch.setattr(training, "client", lambda service: built.append(service) or sagemaker)
    monkeypatch.setattr(training, "run_job", lambda event, work: run_job(event, work, client))
    assert built == []
    sm_stub.add_response("describe_training_job", described("InProgress", "Training"),
                         {"TrainingJobName": NAME})
    expect_success(stub, continuationToken=TOKEN,
                   executionDetails={"summary": f"SageMaker training job {NAME} is InProgress: Training"})
    training.monitor_handler(load_event(user_parameters={"training_job_name": NAME}), None)
    assert built == ["sagemaker"]
