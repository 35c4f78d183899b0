"""Training: start the SageMaker training job of this pipeline execution, then watch it.

The job is named after the execution (`job_name(name_prefix, "train", execution_id)`), so a
repeated SubmitTraining finds the job it created instead of starting a second one. The small
SageMaker helpers at the bottom are shared with `lambdas.evaluation`.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Mapping

from lambdas.errors import ConfigurationError, JobFailed, TimeBudgetExceeded
from lambdas.job import (
    Done, InProgress, JobEvent, Param, client, job_name, parse_s3_uri, parse_user_parameters, run_job)

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
    "metric_definitions": Param(list, required=False),
}
MONITOR_SCHEMA = {
    "training_job_name": Param(str),
    "max_seconds": Param((int, float), required=False),
}

NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
# The training script logs one line per epoch: `epoch=3 train_loss=0.0123 val_loss=0.0145 val_rmse=612.3`
METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": f"train_loss={NUMBER}"},
    {"Name": "validation:loss", "Regex": f"val_loss={NUMBER}"},
    {"Name": "validation:rmse", "Regex": f"val_rmse={NUMBER}"},
]
CHANNELS = ("train", "validation", "features")
LOGS = "CloudWatch log group /aws/sagemaker/TrainingJobs, streams {name}/*"


def submit_handler(event, context):
    return run_job(event, lambda job: submit(job))


def monitor_handler(event, context):
    return run_job(event, lambda job: monitor(job))


# -- submit ---------------------------------------------------------------------------------
def submit(job: JobEvent, *, sagemaker=None) -> Done:
    params = parse_user_parameters(job.user_parameters, SUBMIT_SCHEMA)
    request = training_request(params)
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


def training_request(params: Mapping[str, Any]) -> dict[str, Any]:
    for key in ("train_uri", "validation_uri", "features_uri", "output_uri"):
        parse_s3_uri(params[key], f"UserParameters '{key}'")
    for key in ("instance_count", "volume_gb", "max_runtime_seconds"):
        if params[key] < 1:
            raise ConfigurationError(f"UserParameters '{key}' must be at least 1, got {params[key]}")
    return {
        "TrainingJobName": job_name(params["name_prefix"], "train", params["execution_id"]),
        "AlgorithmSpecification": {
            "TrainingImage": params["image_uri"],
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions(params["metric_definitions"]),
        },
        "RoleArn": params["role_arn"],
        "HyperParameters": hyperparameters(params["hyperparameters"]),
        "InputDataConfig": [channel(name, params[f"{name}_uri"]) for name in CHANNELS],
        "OutputDataConfig": {"S3OutputPath": params["output_uri"]},
        "ResourceConfig": {"InstanceType": params["instance_type"], "InstanceCount": params["instance_count"],
                           "VolumeSizeInGB": params["volume_gb"]},
        "StoppingCondition": {"MaxRuntimeInSeconds": params["max_runtime_seconds"]},
        "EnableManagedSpotTraining": False,
        "Tags": [{"Key": "PipelineExecutionId", "Value": params["execution_id"]}],
    }


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
def monitor(job: JobEvent, *, sagemaker=None) -> Done | InProgress:
    params = parse_user_parameters(job.user_parameters, MONITOR_SCHEMA)
    name = (job.state() or {}).get("training_job_name", params["training_job_name"])
    sagemaker = sagemaker or client("sagemaker")

    described = sagemaker.describe_training_job(TrainingJobName=name)
    status, secondary = described["TrainingJobStatus"], described.get("SecondaryStatus", "")
    logger.info("job %s: SageMaker training job %s is %s (%s)", job.job_id, name, status, secondary)

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


# -- shared with lambdas.evaluation ---------------------------------------------------------
def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(operation, **kwargs) -> dict[str, Any] | None:
    """A SageMaker Describe* answer, or None when the job does not exist."""
    from botocore.exceptions import ClientError

    try:
        return operation(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = error.get("Message", "")
        if error.get("Code") in ("ResourceNotFound", "ResourceNotFoundException") or (
                error.get("Code") == "ValidationException"
                and ("not found" in message.lower() or "could not find" in message.lower())):
            return None
        raise


def reuse(job: JobEvent, kind: str, name: str, status: str, reason: str | None, logs: str,
          variables: Mapping[str, str]) -> Done:
    """A job of this execution already exists: continue with it, unless it can only end in failure."""
    if status in ("InProgress", "Completed"):
        logger.info("job %s: SageMaker %s job %s already exists (%s); not starting another",
                    job.job_id, kind, name, status)
        return Done(f"SageMaker {kind} job {name} already exists for this execution ({status})", variables)
    # SageMaker keeps job names forever: a failed job of this execution cannot be replaced.
    raise JobFailed(f"SageMaker {kind} job {name} of this pipeline execution is already {status}"
                    f"{f': {reason}' if reason else ''}; its name cannot be reused, so start a new pipeline "
                    f"execution (Release change); logs: {logs}")


def check_budget(job: JobEvent, kind: str, name: str, status: str, started, budget: float | None, logs: str,
                 stop) -> None:
    """Stop a job that has run longer than the action's max_seconds, measured from its own start."""
    seconds = time.time() - started.timestamp()
    if budget is None or seconds <= budget or status != "InProgress":
        return
    stop()
    logger.warning("job %s: SageMaker %s job %s ran %.0fs, over max_seconds %g; stop requested",
                   job.job_id, kind, name, seconds, budget)
    raise TimeBudgetExceeded(f"SageMaker {kind} job {name} ran past the action's max_seconds {budget:g} "
                             f"(started {iso(started)}); stopped it; logs: {logs}")
