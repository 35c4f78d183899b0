"""Evaluation: run the evaluation processing job, then judge the model by its test RMSE.

SubmitEvaluation starts one SageMaker processing job per execution. MonitorEvaluation watches it
and reads evaluation.json (SageMaker ModelMetrics regression format): RMSE <= threshold exports
Decision=APPROVED (the RegisterModel action registers approved models); otherwise the candidate is
recorded in the Model Registry as Rejected and the action fails, which stops the execution.
The job is sealed as `JobSecurity` says: network isolation (training.evaluate makes no AWS or network
call), the project key on its volume and outputs, the user's VPC when one is configured.
"""
from __future__ import annotations

import json
import logging
import math
from datetime import datetime
from typing import Any, Mapping

from lambdas.errors import ConfigurationError, JobFailed
from lambdas.job import (
    AwsClient, Done, InProgress, JobEvent, Param, client, job_name, parse_s3_uri, parse_user_parameters, run_job)
from lambdas.sagemaker_jobs import (
    CONTENT_TYPES, DECISION_KEY, EXECUTION_KEY, JobSecurity, check_budget, describe, reuse)

logger = logging.getLogger(__name__)

SUBMIT_SCHEMA = {
    "execution_id": Param(str),
    "name_prefix": Param(str),
    "image_uri": Param(str),
    "role_arn": Param(str),
    "model_data_uri": Param(str),
    "test_uri": Param(str),
    "output_uri": Param(str),
    "instance_type": Param(str, required=False, default="ml.m5.large"),
}
MONITOR_SCHEMA = {
    "processing_job_name": Param(str),
    "evaluation_uri": Param(str),
    "threshold": Param((int, float)),
    "model_package_group": Param(str),
    "image_uri": Param(str),
    "model_data_uri": Param(str),
    "execution_id": Param(str),
    "max_seconds": Param((int, float), required=False),
}

ENTRYPOINT = ["python3", "-m", "training.evaluate"]
BASE = "/opt/ml/processing"
VOLUME_GB = 10
EVALUATION_FILE = "evaluation.json"
APPROVED, REJECTED = "APPROVED", "REJECTED"
NULLABLE = {"r2"}  # training.evaluate writes r2 = null when the test target is constant
LOGS = "CloudWatch log group /aws/sagemaker/ProcessingJobs, streams {name}/*"


def submit_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: submit(job))


def monitor_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: monitor(job))


# -- submit ---------------------------------------------------------------------------------
def submit(job: JobEvent, *, sagemaker: AwsClient = None, security: JobSecurity | None = None) -> Done:
    params = parse_user_parameters(job.user_parameters, SUBMIT_SCHEMA)
    request = processing_request(params, security or JobSecurity.from_environment())
    name = request["ProcessingJobName"]
    variables = {"ProcessingJobName": name, "EvaluationUri": evaluation_uri(params["output_uri"])}
    sagemaker = sagemaker or client("sagemaker")

    existing = describe(sagemaker.describe_processing_job, ProcessingJobName=name)
    if existing is None:
        try:
            sagemaker.create_processing_job(**request)
            logger.info("job %s: created SageMaker processing job %s", job.job_id, name)
            return Done(f"SageMaker processing job {name} started", variables)
        except sagemaker.exceptions.ResourceInUse:  # a concurrent invocation created it first
            existing = sagemaker.describe_processing_job(ProcessingJobName=name)
    return reuse(job, "processing", name, existing["ProcessingJobStatus"], existing.get("FailureReason"),
                 LOGS.format(name=name), variables)


def processing_request(params: Mapping[str, Any], security: JobSecurity) -> dict[str, Any]:
    for key in ("model_data_uri", "test_uri", "output_uri"):
        parse_s3_uri(params[key], f"UserParameters '{key}'")
    request: dict[str, Any] = {
        "ProcessingJobName": job_name(params["name_prefix"], "evaluate", params["execution_id"]),
        "AppSpecification": {"ImageUri": params["image_uri"], "ContainerEntrypoint": ENTRYPOINT},
        "RoleArn": params["role_arn"],
        "ProcessingInputs": [
            # a single object key as S3Prefix lands as /opt/ml/processing/model/model.tar.gz
            processing_input("model", params["model_data_uri"]),
            processing_input("test", params["test_uri"]),
        ],
        "ProcessingOutputConfig": {"Outputs": [{
            "OutputName": "evaluation",
            "S3Output": {"S3Uri": params["output_uri"], "LocalPath": f"{BASE}/evaluation",
                         "S3UploadMode": "EndOfJob"},
        }]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": params["instance_type"],
                                                  "VolumeSizeInGB": VOLUME_GB}},
        # The container reads its inputs and writes its outputs; SageMaker stages both outside it.
        "NetworkConfig": {"EnableNetworkIsolation": True},
        "Tags": [{"Key": "PipelineExecutionId", "Value": params["execution_id"]}],
    }
    if security.kms_key:
        request["ProcessingOutputConfig"]["KmsKeyId"] = security.kms_key
        request["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] = security.kms_key
    vpc = security.vpc_config()
    if vpc:
        request["NetworkConfig"]["VpcConfig"] = vpc
    return request


def processing_input(name: str, uri: str) -> dict[str, Any]:
    return {"InputName": name,
            "S3Input": {"S3Uri": uri, "LocalPath": f"{BASE}/{name}", "S3DataType": "S3Prefix",
                        "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}


def evaluation_uri(output_uri: str) -> str:
    return f"{output_uri.rstrip('/')}/{EVALUATION_FILE}"


# -- monitor --------------------------------------------------------------------------------
def monitor(job: JobEvent, *, sagemaker: AwsClient = None, s3: AwsClient = None) -> Done | InProgress:
    params = parse_user_parameters(job.user_parameters, MONITOR_SCHEMA)
    parse_s3_uri(params["evaluation_uri"], "UserParameters 'evaluation_uri'")
    threshold = params["threshold"]
    if not math.isfinite(threshold):
        raise ConfigurationError(f"UserParameters 'threshold' must be a finite number, got {threshold!r}")
    name = (job.state() or {}).get("processing_job_name", params["processing_job_name"])
    logs = LOGS.format(name=name)
    sagemaker = sagemaker or client("sagemaker")

    described = sagemaker.describe_processing_job(ProcessingJobName=name)
    status = described["ProcessingJobStatus"]
    logger.info("job %s: SageMaker processing job %s is %s", job.job_id, name, status,
                extra={"jobId": job.job_id, "processingJob": name, "status": status})

    if status in ("Failed", "Stopped"):
        raise JobFailed(f"SageMaker processing job {name} {status}: "
                        f"{described.get('FailureReason') or 'SageMaker gave no reason'}; logs: {logs}")
    if status != "Completed":
        started = described.get("ProcessingStartTime") or described["CreationTime"]
        check_budget(job, "processing", name, status, started, params["max_seconds"], logs,
                     lambda: sagemaker.stop_processing_job(ProcessingJobName=name))
        return InProgress(f"SageMaker processing job {name} is {status}", {"processing_job_name": name})

    metrics = read_metrics(s3 or client("s3"), name, params["evaluation_uri"], logs)
    rmse = metrics["rmse"]
    assert rmse is not None  # read_metrics checked it is a finite number
    variables = {variable: "null" if value is None else repr(value)
                 for variable, value in (("Rmse", rmse), ("Mae", metrics["mae"]), ("R2", metrics["r2"]))}
    if rmse <= threshold:
        summary = f"Model {APPROVED}: RMSE {rmse:.2f} <= threshold {threshold:g}"
        logger.info("job %s: processing job %s: %s", job.job_id, name, summary)
        return Done(summary, {"Decision": APPROVED, **variables})

    verdict = f"Model {REJECTED}: RMSE {rmse:.2f} > threshold {threshold:g}"
    logger.info("job %s: processing job %s: %s", job.job_id, name, verdict)
    from botocore.exceptions import ClientError

    try:
        arn = record_rejected(sagemaker, params, described["CreationTime"], rmse)
    except ClientError as exc:  # the verdict stands; say that the registry record is missing
        error = exc.response.get("Error", {})
        logger.exception("job %s: processing job %s: could not record the rejected model in %s",
                         job.job_id, name, params["model_package_group"])
        raise JobFailed(f"{verdict}; it could not be recorded in model package group "
                        f"{params['model_package_group']}: {exc.operation_name} failed: "
                        f"{error.get('Message', '')} ({error.get('Code', 'Unknown')})") from None
    logger.info("job %s: processing job %s: rejected model recorded as %s", job.job_id, name, arn)
    raise JobFailed(verdict)


def read_metrics(s3: AwsClient, name: str, uri: str, logs: str) -> dict[str, float | None]:
    bucket, key = parse_s3_uri(uri, "UserParameters 'evaluation_uri'")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (s3.exceptions.NoSuchKey, s3.exceptions.NoSuchBucket):
        raise JobFailed(f"SageMaker processing job {name} Completed but wrote no {EVALUATION_FILE} at {uri}; "
                        f"logs: {logs}") from None
    try:
        regression = json.loads(body)["regression_metrics"]
    except (ValueError, TypeError, KeyError):
        raise JobFailed(f"{uri} (from processing job {name}) is not SageMaker ModelMetrics JSON with "
                        "'regression_metrics'") from None
    metrics: dict[str, float | None] = {}
    for metric in ("rmse", "mae", "r2"):
        entry = regression.get(metric) if isinstance(regression, dict) else None
        if not isinstance(entry, dict) or "value" not in entry:
            raise JobFailed(f"{uri} (from processing job {name}) has no regression_metrics.{metric}.value")
        value = entry["value"]
        if value is None and metric in NULLABLE:
            metrics[metric] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JobFailed(f"{uri} (from processing job {name}): regression_metrics.{metric}.value is not a "
                            f"number ({value!r})")
        metrics[metric] = float(value)
    rmse = metrics["rmse"]  # not NULLABLE: a float here
    if rmse is None or not math.isfinite(rmse):
        raise JobFailed(f"{uri} (from processing job {name}) reports a non-finite RMSE ({metrics['rmse']}); "
                        f"the model cannot be judged; logs: {logs}")
    return metrics


def record_rejected(sagemaker: AwsClient, params: Mapping[str, Any], since: datetime, rmse: float) -> str:
    """Record the candidate as a Rejected model package, once per pipeline execution."""
    group, execution_id = params["model_package_group"], params["execution_id"]
    pages = sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, ModelApprovalStatus="Rejected", CreationTimeAfter=since)
    for page in pages:  # only packages created since this execution's evaluation job began
        for summary in page["ModelPackageSummaryList"]:
            arn: str = summary["ModelPackageArn"]
            found = sagemaker.describe_model_package(ModelPackageName=arn)
            if found.get("CustomerMetadataProperties", {}).get(EXECUTION_KEY) == execution_id:
                return arn
    created = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"Rejected by pipeline execution {execution_id}: RMSE {rmse:.2f} > "
                                f"threshold {params['threshold']:g}",
        ModelApprovalStatus="Rejected",
        InferenceSpecification={
            "Containers": [{"Image": params["image_uri"], "ModelDataUrl": params["model_data_uri"]}],
            "SupportedContentTypes": list(CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(CONTENT_TYPES),
        },
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                      "S3Uri": params["evaluation_uri"]}}},
        CustomerMetadataProperties={EXECUTION_KEY: execution_id, DECISION_KEY: REJECTED,
                                    "Rmse": repr(rmse), "Threshold": f"{params['threshold']:g}"},
    )
    created_arn: str = created["ModelPackageArn"]
    return created_arn
