"""Training: start the SageMaker training job of this pipeline execution, then watch it.

The job is named after the execution (`job_name(name_prefix, "train", execution_id)`), so a
repeated SubmitTraining finds the job it created instead of starting a second one. The job is
created with `lambdas.sagemaker_jobs.METRIC_DEFINITIONS` unless UserParameters names its own, and
sealed as `JobSecurity` says: network isolation (the training code makes no AWS or network call),
the project key on its volume and model artifacts, the user's VPC when one is configured.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from lambdas.errors import ConfigurationError, JobFailed
from lambdas.job import (
    AwsClient, Done, InProgress, JobEvent, Param, client, job_name, parse_s3_uri, parse_user_parameters, run_job)
from lambdas.sagemaker_jobs import METRIC_DEFINITIONS, JobSecurity, check_budget, describe, reuse

logger = logging.getLogger(__name__)

SUBMIT_SCHEMA = {
    "execution_id": Param(str),
    "name_prefix": Param(str),
    "image_uri": Param(str),
    "role_arn": Param(str),
    "train_uri": Param(str),
    "validation_uri": Param(str),
    "features_uri": Param(str),
    "output_uri": Param(str),
    "instance_type": Param(str, required=False, default="ml.m5.xlarge"),
    "instance_count": Param(int, required=False, default=1),
    "volume_gb": Param(int, required=False, default=10),
    "max_runtime_seconds": Param(int, required=False, default=3600),
    "hyperparameters": Param(dict, required=False, default={}),
    # The image's own defaults (training.contract.HYPERPARAMETERS of the commit built), under `hyperparameters`:
    # the request, and so DescribeTrainingJob, then names every value the job trains with.
    "default_hyperparameters": Param(dict, required=False, default={}),
    "metric_definitions": Param(list, required=False),
}
MONITOR_SCHEMA = {
    "training_job_name": Param(str),
    "max_seconds": Param((int, float), required=False),
}

CHANNELS = ("train", "validation", "features")
LOGS = "CloudWatch log group /aws/sagemaker/TrainingJobs, streams {name}/*"


def submit_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: submit(job))


def monitor_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return run_job(event, lambda job: monitor(job))


# -- submit ---------------------------------------------------------------------------------
def submit(job: JobEvent, *, sagemaker: AwsClient = None, security: JobSecurity | None = None) -> Done:
    params = parse_user_parameters(job.user_parameters, SUBMIT_SCHEMA)
    request = training_request(params, security or JobSecurity.from_environment())
    name = request["TrainingJobName"]
    sagemaker = sagemaker or client("sagemaker")

    existing = describe(sagemaker.describe_training_job, TrainingJobName=name)
    if existing is None:
        try:
            sagemaker.create_training_job(**request)
            logger.info("job %s: created SageMaker training job %s", job.job_id, name)
            return Done(f"SageMaker training job {name} started", {"TrainingJobName": name})
        except sagemaker.exceptions.ResourceInUse:  # a concurrent invocation created it first
            existing = sagemaker.describe_training_job(TrainingJobName=name)
    return reuse(job, "training", name, existing["TrainingJobStatus"], existing.get("FailureReason"),
                 LOGS.format(name=name), {"TrainingJobName": name})


def training_request(params: Mapping[str, Any], security: JobSecurity) -> dict[str, Any]:
    for key in ("train_uri", "validation_uri", "features_uri", "output_uri"):
        parse_s3_uri(params[key], f"UserParameters '{key}'")
    for key in ("instance_count", "volume_gb", "max_runtime_seconds"):
        if params[key] < 1:
            raise ConfigurationError(f"UserParameters '{key}' must be at least 1, got {params[key]}")
    request: dict[str, Any] = {
        "TrainingJobName": job_name(params["name_prefix"], "train", params["execution_id"]),
        "AlgorithmSpecification": {
            "TrainingImage": params["image_uri"],
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions(params["metric_definitions"]),
        },
        "RoleArn": params["role_arn"],
        "HyperParameters": hyperparameters({**params["default_hyperparameters"], **params["hyperparameters"]}),
        "InputDataConfig": [channel(name, params[f"{name}_uri"]) for name in CHANNELS],
        "OutputDataConfig": {"S3OutputPath": params["output_uri"]},
        "ResourceConfig": {"InstanceType": params["instance_type"], "InstanceCount": params["instance_count"],
                           "VolumeSizeInGB": params["volume_gb"]},
        "StoppingCondition": {"MaxRuntimeInSeconds": params["max_runtime_seconds"]},
        # The container reads its channels and writes /opt/ml/model; SageMaker stages both outside it.
        "EnableNetworkIsolation": True,
        "EnableManagedSpotTraining": False,
        "Tags": [{"Key": "PipelineExecutionId", "Value": params["execution_id"]}],
    }
    if security.kms_key:
        request["OutputDataConfig"]["KmsKeyId"] = security.kms_key
        request["ResourceConfig"]["VolumeKmsKeyId"] = security.kms_key
    vpc = security.vpc_config()
    if vpc:
        request["VpcConfig"] = vpc
    return request


def channel(name: str, uri: str) -> dict[str, Any]:
    return {"ChannelName": name, "ContentType": "text/csv",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                            "S3DataDistributionType": "FullyReplicated"}}}


def hyperparameters(values: Mapping[str, Any]) -> dict[str, str]:
    """SageMaker takes strings only; non-strings are written as JSON (3 -> "3", True -> "true")."""
    return {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def metric_definitions(values: list[Any] | None) -> list[dict[str, str]]:
    if values is None:
        return [dict(d) for d in METRIC_DEFINITIONS]
    for index, item in enumerate(values):
        if (not isinstance(item, dict) or set(item) != {"Name", "Regex"}
                or not all(isinstance(v, str) and v for v in item.values())):
            raise ConfigurationError(f"UserParameters 'metric_definitions'[{index}] must be "
                                     f'{{"Name": str, "Regex": str}}, got {item!r}')
    return values


# -- monitor --------------------------------------------------------------------------------
def monitor(job: JobEvent, *, sagemaker: AwsClient = None) -> Done | InProgress:
    params = parse_user_parameters(job.user_parameters, MONITOR_SCHEMA)
    name = (job.state() or {}).get("training_job_name", params["training_job_name"])
    sagemaker = sagemaker or client("sagemaker")

    described = sagemaker.describe_training_job(TrainingJobName=name)
    status, secondary = described["TrainingJobStatus"], described.get("SecondaryStatus", "")
    logger.info("job %s: SageMaker training job %s is %s (%s)", job.job_id, name, status, secondary,
                extra={"jobId": job.job_id, "trainingJob": name, "status": status})

    if status == "Completed":
        model = described["ModelArtifacts"]["S3ModelArtifacts"]
        metrics = " ".join(f"{m['MetricName']}={m['Value']:g}"
                           for m in described.get("FinalMetricDataList", []))
        summary = f"SageMaker training job {name} Completed: {model}" + (f" ({metrics})" if metrics else "")
        return Done(summary, {"ModelDataUrl": model, "TrainingJobName": name})
    if status in ("Failed", "Stopped"):
        raise JobFailed(f"SageMaker training job {name} {status} ({secondary}): "
                        f"{described.get('FailureReason') or 'SageMaker gave no reason'}; "
                        f"logs: {LOGS.format(name=name)}")

    started = described.get("TrainingStartTime") or described["CreationTime"]
    check_budget(job, "training", name, status, started, params["max_seconds"], LOGS.format(name=name),
                 lambda: sagemaker.stop_training_job(TrainingJobName=name))
    return InProgress(f"SageMaker training job {name} is {status}: {secondary}", {"training_job_name": name})
