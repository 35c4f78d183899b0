"""SageMaker training and processing jobs through the stand-in: the image's programs run locally."""
from __future__ import annotations

import io
import json
import tarfile
import time

import pytest
from botocore.exceptions import ClientError

from lambdas import evaluation as evaluation_worker
from lambdas import training as training_worker
from mlops_local.gateway import Gateway, LocalAws
from tests.conftest import ROOT
from mlops_local.runtime import Runtime
from mlops_local.sagemaker.processing_jobs import ProcessingJobs
from mlops_local.sagemaker.training_jobs import TrainingJobs

from tests.lambdas.pipeline_stubs import invoke_worker as invoke
from tests.mlops_local.sagemaker_requests import (
    BUCKET, ETL, EXECUTION, IMAGE, ROLE, TINY, channel, splits, training_request)

MODEL_FILES = {"model.keras", "dense.npz", "model.json", "features.json"}
DONE = {"Completed", "Failed", "Stopped"}


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    with LocalAws(Gateway()) as aws:
        runtime = Runtime(aws=aws, workdir=tmp_path_factory.mktemp("sagemaker-runtime"), source_root=ROOT)
        runtime.images.add(IMAGE, ROOT / "src/training/Dockerfile")
        training, processing = TrainingJobs(runtime).register(), ProcessingJobs(runtime).register()
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for key, body in splits().items():
            s3.put_object(Bucket=BUCKET, Key=f"runs/{EXECUTION}/etl/{key}", Body=body)
        yield aws, runtime, training, processing
        training.close()
        processing.close()


def wait(runtime, describe, status_key: str, until=DONE, timeout: float = 120, **name) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        version = runtime.changes.version
        described = describe(**name)
        if described[status_key] in until or described.get("SecondaryStatus") in until:
            return described
        assert time.monotonic() < deadline, f"{name} still {described[status_key]}"
        runtime.changes.wait(version, timeout=1.0)


def drive(runtime, work, user_parameters: dict, timeout: float = 120) -> dict:
    """Re-invoke a monitor with its continuation token each time a job changes state, until it ends."""
    token, deadline = None, time.monotonic() + timeout
    while True:
        version = runtime.changes.version
        outcome = invoke(work, user_parameters, token)
        if outcome["result"] != "continue":
            return outcome
        token = outcome["state"]
        assert time.monotonic() < deadline, outcome
        runtime.changes.wait(version, timeout=2.0)


@pytest.fixture(scope="module")
def pipeline(stand_in):
    """SubmitTraining/MonitorTraining then SubmitEvaluation/MonitorEvaluation, the real workers."""
    aws, runtime, _, _ = stand_in
    sagemaker, s3 = aws.client("sagemaker"), aws.client("s3")
    submitted = invoke(lambda job: training_worker.submit(job, sagemaker=sagemaker), {
        "execution_id": EXECUTION, "name_prefix": "mlops", "image_uri": IMAGE, "role_arn": ROLE,
        "train_uri": f"{ETL}/train/", "validation_uri": f"{ETL}/validation/",
        "features_uri": f"{ETL}/features.json", "output_uri": f"s3://{BUCKET}/runs/{EXECUTION}/training/",
        "hyperparameters": {"epochs": 3, "batch_size": 64, "hidden_units": [8], "learning_rate": 0.01}})
    assert submitted["result"] == "success", submitted
    name = submitted["variables"]["TrainingJobName"]
    trained = drive(runtime, lambda job: training_worker.monitor(job, sagemaker=sagemaker),
                    {"training_job_name": name})
    assert trained["result"] == "success", trained

    evaluate = {"execution_id": EXECUTION, "name_prefix": "mlops", "image_uri": IMAGE, "role_arn": ROLE,
                "model_data_uri": trained["variables"]["ModelDataUrl"], "test_uri": f"{ETL}/test/",
                "output_uri": f"s3://{BUCKET}/runs/{EXECUTION}/evaluation/"}
    submitted_eval = invoke(lambda job: evaluation_worker.submit(job, sagemaker=sagemaker), evaluate)
    assert submitted_eval["result"] == "success", submitted_eval
    variables = submitted_eval["variables"]
    judged = drive(runtime, lambda job: evaluation_worker.monitor(job, sagemaker=sagemaker, s3=s3), {
        "processing_job_name": variables["ProcessingJobName"], "evaluation_uri": variables["EvaluationUri"],
        "threshold": 1e9, "model_package_group": "mlops-models", "image_uri": IMAGE,
        "model_data_uri": trained["variables"]["ModelDataUrl"], "execution_id": EXECUTION})
    return {"training": name, "trained": trained, "processing": variables["ProcessingJobName"],
            "judged": judged, "evaluation_uri": variables["EvaluationUri"]}


def test_training_runs_the_image_and_uploads_model_tar_gz(stand_in, pipeline):
    aws, runtime, _, _ = stand_in
    sagemaker, s3 = aws.client("sagemaker"), aws.client("s3")
    described = sagemaker.describe_training_job(TrainingJobName=pipeline["training"])
    assert described["TrainingJobStatus"] == "Completed" and described["SecondaryStatus"] == "Completed"
    model = f"s3://{BUCKET}/runs/{EXECUTION}/training/{pipeline['training']}/output/model.tar.gz"
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == model
    assert pipeline["trained"]["variables"]["ModelDataUrl"] == model
    assert (described["CreationTime"] <= described["TrainingStartTime"] <= described["TrainingEndTime"]
            <= described["LastModifiedTime"])
    assert [t["Status"] for t in described["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]
    metrics = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert {"train:loss", "validation:loss", "validation:rmse"} <= set(metrics)

    body = s3.get_object(Bucket=BUCKET, Key=model.split(f"{BUCKET}/", 1)[1])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        assert MODEL_FILES <= set(archive.getnames())  # files at the archive root

    base = runtime.workdir / "sagemaker" / "training" / pipeline["training"]
    hps = json.loads((base / "input/config/hyperparameters.json").read_text())
    assert hps == {"epochs": "3", "batch_size": "64", "hidden_units": "[8]", "learning_rate": "0.01"}
    assert (base / "input/data/features/features.json").is_file()  # a single-object prefix
    assert (base / "input/data/train/part-00000.csv").is_file() and (base / "train.log").is_file()


def test_processing_runs_evaluate_and_uploads_evaluation_json(stand_in, pipeline):
    aws, runtime, _, _ = stand_in
    sagemaker, s3 = aws.client("sagemaker"), aws.client("s3")
    assert pipeline["judged"]["result"] == "success" and pipeline["judged"]["variables"]["Decision"] == "APPROVED"
    described = sagemaker.describe_processing_job(ProcessingJobName=pipeline["processing"])
    assert described["ProcessingJobStatus"] == "Completed" and "FailureReason" not in described
    assert described["ProcessingStartTime"] <= described["ProcessingEndTime"]
    key = pipeline["evaluation_uri"].split(f"{BUCKET}/", 1)[1]
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert report["regression_metrics"]["rmse"]["value"] > 0 and report["dataset"]["item_count"] == 64
    base = runtime.workdir / "sagemaker" / "processing" / pipeline["processing"]
    assert (base / "processing/model/model.tar.gz").is_file()  # the object lands as a file in the dir


def test_a_missing_channel_fails_with_the_failure_file(stand_in):
    aws, runtime, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    sagemaker.create_training_job(**training_request("no-validation", channels=("train", "features")))
    described = wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus",
                     TrainingJobName="no-validation")
    assert described["TrainingJobStatus"] == "Failed" and described["SecondaryStatus"] == "Failed"
    assert "the 'validation' channel is missing" in described["FailureReason"]
    assert len(described["FailureReason"]) <= 1024 and "ModelArtifacts" not in described


@pytest.mark.parametrize("request_, reason", [
    (training_request("unknown-image", image="123456789012.dkr.ecr.us-east-1.amazonaws.com/other:1"),
     "is not known locally"),
    ({**training_request("empty-channel"),
      "InputDataConfig": [channel("train", f"s3://{BUCKET}/nothing/here/")]}, "No S3 objects found under"),
], ids=["unknown-image", "empty-channel"])
def test_jobs_that_cannot_start_fail_with_a_reason(stand_in, request_, reason):
    aws, runtime, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    sagemaker.create_training_job(**request_)
    described = wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus",
                     TrainingJobName=request_["TrainingJobName"], timeout=20)
    assert described["TrainingJobStatus"] == "Failed" and reason in described["FailureReason"]


def test_stop_training_job_ends_the_process(stand_in):
    aws, runtime, training, _ = stand_in
    sagemaker = aws.client("sagemaker")
    sagemaker.create_training_job(**training_request("long-run", hyperparameters={**TINY, "epochs": "5000"}))
    wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus", until=DONE | {"Training"},
         TrainingJobName="long-run")
    sagemaker.stop_training_job(TrainingJobName="long-run")
    status = sagemaker.describe_training_job(TrainingJobName="long-run")["TrainingJobStatus"]
    assert status in ("Stopping", "Stopped")
    described = wait(runtime, sagemaker.describe_training_job, "TrainingJobStatus", TrainingJobName="long-run")
    assert described["TrainingJobStatus"] == "Stopped" and described["SecondaryStatus"] == "Stopped"
    assert training.jobs["long-run"].process.returncode is not None
    with pytest.raises(ClientError) as caught:
        sagemaker.stop_training_job(TrainingJobName="long-run")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_a_failing_processing_job_reports_the_message_file(stand_in):
    aws, runtime, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    inputs = [{"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": f"/opt/ml/processing/{name}",
                                              "S3DataType": "S3Prefix", "S3InputMode": "File"}}
              for name, uri in (("model", f"{ETL}/validation/"), ("test", f"{ETL}/test/"))]
    sagemaker.create_processing_job(
        ProcessingJobName="bad-model", RoleArn=ROLE, ProcessingInputs=inputs,
        AppSpecification={"ImageUri": IMAGE, "ContainerEntrypoint": ["python3", "-m", "training.evaluate"]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                               "VolumeSizeInGB": 10}})
    described = wait(runtime, sagemaker.describe_processing_job, "ProcessingJobStatus",
                     ProcessingJobName="bad-model", timeout=60)
    assert described["ProcessingJobStatus"] == "Failed"
    assert "no model at" in described["ExitMessage"] and "exit code: 2" in described["FailureReason"]


def test_list_jobs(stand_in, pipeline):
    aws, _, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    names = [j["TrainingJobName"] for j in sagemaker.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]]
    assert pipeline["training"] in names
    completed = sagemaker.list_training_jobs(StatusEquals="Completed", SortOrder="Descending")
    assert {j["TrainingJobStatus"] for j in completed["TrainingJobSummaries"]} == {"Completed"}
    processing = sagemaker.list_processing_jobs(NameContains="evaluate")["ProcessingJobSummaries"]
    assert [j["ProcessingJobName"] for j in processing] == [pipeline["processing"]]


@pytest.mark.parametrize("call, code, message", [
    (lambda sm: sm.describe_training_job(TrainingJobName="nope"), "ValidationException",
     "Requested resource not found."),
    (lambda sm: sm.stop_training_job(TrainingJobName="nope"), "ValidationException",
     "Requested resource not found."),
    (lambda sm: sm.describe_processing_job(ProcessingJobName="nope"), "ValidationException",
     "Requested resource not found."),
    (lambda sm: sm.create_training_job(**training_request("duplicate")), "ResourceInUse", "already exists"),
    (lambda sm: sm.create_training_job(**{**training_request("bad_name!")}), "ValidationException",
     "regular expression"),
    (lambda sm: sm.create_training_job(**{**training_request("no-image"),
                                          "AlgorithmSpecification": {"TrainingInputMode": "File"}}),
     "ValidationException", "TrainingImage"),
    (lambda sm: sm.create_training_job(**{**training_request("local-output"),
                                          "OutputDataConfig": {"S3OutputPath": "/tmp/out"}}),
     "ValidationException", "Value '/tmp/out' at 'outputDataConfig.s3OutputPath' failed to satisfy constraint"),
    (lambda sm: sm.create_processing_job(
        ProcessingJobName="outside", RoleArn=ROLE,
        AppSpecification={"ImageUri": IMAGE, "ContainerEntrypoint": ["python3"]},
        ProcessingInputs=[{"InputName": "x", "S3Input": {"S3Uri": f"{ETL}/test/", "LocalPath": "/tmp/x",
                                                         "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                               "VolumeSizeInGB": 10}}),
     "ValidationException", "/opt/ml/processing"),
], ids=["describe-unknown", "stop-unknown", "describe-unknown-processing", "duplicate-name", "bad-name",
        "no-image", "local-output-path", "processing-path-outside"])
def test_errors_in_sagemaker_terms(stand_in, call, code, message):
    aws, _, _, _ = stand_in
    sagemaker = aws.client("sagemaker")
    if code == "ResourceInUse":  # this test's own first job (it fails at once: an empty channel)
        sagemaker.create_training_job(**{**training_request("duplicate"),
                                         "InputDataConfig": [channel("train", f"s3://{BUCKET}/nothing/")]})
    with pytest.raises(ClientError) as caught:
        call(sagemaker)
    assert caught.value.response["Error"]["Code"] == code
    assert message in caught.value.response["Error"]["Message"]
